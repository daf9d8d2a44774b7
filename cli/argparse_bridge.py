"""Expose an existing argparse entry point as a click command without copying its flags.

local_runner.py, `python -m serving` and vertex_runner.py each own their flag
set. The CLI builds its options from those parsers at the moment the command
is loaded and hands the delegate an argv, so a flag added to a runner shows
up in `taxi ... --help` and works at once; the two can never drift.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Delegate = Callable[[list[str]], int]


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    try:
        return action.help % {**vars(action), "prog": parser.prog}
    except (KeyError, TypeError, ValueError):
        return action.help


def _click_type(action: argparse.Action) -> click.ParamType | type:
    if action.choices:
        return click.Choice([str(c) for c in action.choices])
    if action.type in (int, float):
        return action.type
    if action.type is Path:
        return click.Path(path_type=str)
    return str


def _param(parser: argparse.ArgumentParser, action: argparse.Action) -> click.Parameter:
    """One argparse action as a click parameter with the same spelling, default and help."""
    help_text = _help(parser, action)
    if not action.option_strings:
        return click.Argument([action.dest], required=action.nargs not in ("?", "*"), default=action.default,
                              type=_click_type(action))
    names = [*action.option_strings, action.dest]
    if isinstance(action, argparse._StoreTrueAction):
        return click.Option(names, is_flag=True, default=False, help=help_text)
    if isinstance(action, argparse.BooleanOptionalAction):
        positive = [o for o in action.option_strings if not o.startswith("--no-")]
        flags = "/".join((positive[0], positive[0].replace("--", "--no-", 1)))
        return click.Option([flags, action.dest], default=None, help=help_text)
    if isinstance(action, argparse._AppendAction):
        return click.Option(names, multiple=True, type=_click_type(action), metavar=action.metavar, help=help_text)
    if isinstance(action, argparse._StoreAction) and action.nargs in (None, "?"):
        return click.Option(names, type=_click_type(action), default=action.default, show_default=False,
                            metavar=action.metavar, help=help_text)
    raise TypeError(f"{parser.prog}: {type(action).__name__} for {action.option_strings} is not bridged yet")


def _argv(parser: argparse.ArgumentParser, values: dict[str, Any]) -> list[str]:
    """Back to the delegate's own command line: only what differs from its defaults."""
    argv: list[str] = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.dest not in values:
            continue
        value = values[action.dest]
        if not action.option_strings:
            if value is not None:
                argv.append(str(value))
        elif isinstance(action, argparse._StoreTrueAction):
            argv += [action.option_strings[0]] if value else []
        elif isinstance(action, argparse.BooleanOptionalAction):
            positive = [o for o in action.option_strings if not o.startswith("--no-")][0]
            argv += [] if value is None else [positive if value else positive.replace("--", "--no-", 1)]
        elif isinstance(action, argparse._AppendAction):
            argv += [f"{action.option_strings[0]}={item}" for item in value or ()]
        elif value is not None and value != action.default:
            # --flag=value: argparse would take a value starting with '-' (Beam args) for a flag
            argv.append(f"{action.option_strings[0]}={value}")
    return argv


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def bridge(name: str, parser: argparse.ArgumentParser, delegate: Delegate, help_text: str,
           prefix: tuple[str, ...] = (), extra: Callable[[click.Context, list[str]], list[str]] | None = None,
           ) -> click.Command:
    """A click command (or group, for sub-parsers) whose callback calls delegate(argv)."""
    subs = _subparsers(parser)
    if subs is not None:
        group = click.Group(name, help=help_text, no_args_is_help=True)
        helps = {a.dest: a.help for a in subs._choices_actions}
        for sub_name, sub_parser in subs.choices.items():
            group.add_command(bridge(sub_name, sub_parser, delegate, helps.get(sub_name) or sub_parser.description or "",
                                     (*prefix, sub_name), extra))
        return group

    @click.pass_context
    def callback(ctx: click.Context, **values: Any) -> int:
        argv = [*prefix, *_argv(parser, values)]
        if extra is not None:
            argv = extra(ctx, argv)
        return delegate(argv)

    params = [_param(parser, a) for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    return click.Command(name, params=params, callback=callback, help=help_text, epilog=parser.epilog)
