"""Compile, submit and schedule the pipeline on Vertex AI Pipelines.

    python vertex_runner.py compile  --project P --region R --bucket gs://B [--output build/vertex_pipeline.json]
    python vertex_runner.py submit   --project P --region R [--template ...] [--param data-root=gs://...] [--wait]
    python vertex_runner.py schedule create --cron 'TZ=America/Chicago 0 3 * * *' [--replace]
    python vertex_runner.py schedule list|pause|resume|delete [NAME]

Settings come from flags, VERTEX_<NAME> environment variables and an optional
YAML file (--config or VERTEX_CONFIG), flags winning; see the README section "Run on Vertex AI".
Exit codes: 0 ok, 1 Vertex refused or the run failed, 2 bad flags or config.
Only argparse and the settings module load before a command runs: TFX,
aiplatform and kfp are imported by the command that needs them.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn

from pipeline.configs import ConfigError
from pipeline.vertex import checks
from pipeline.vertex import settings as vs

EXIT_CONFIG = 2
EXIT_CLOUD = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one 'error: ...' line and exit 2 like every config error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)

    def parse_args(self, args: list[str] | None = None, namespace: argparse.Namespace | None = None,
                   ) -> argparse.Namespace:
        """Leftover arguments are reported by the top parser: the help named is the subcommand's, if one was given."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            where = getattr(parsed, "help_prog", self.prog)
            print(f"error: unrecognized arguments: {' '.join(extras)} (see '{where} --help')", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG)
        return parsed


def _bool_flag(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(f"--{name}", dest=name.replace("-", "_"), action=argparse.BooleanOptionalAction, help=help_text)


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("target")
    g.add_argument("--config", dest="config_file", help="YAML file of settings (env VERTEX_CONFIG)")
    g.add_argument("--project", help="GCP project id (env VERTEX_PROJECT, GOOGLE_CLOUD_PROJECT)")
    g.add_argument("--region", help="Vertex region, e.g. us-central1 (env VERTEX_REGION, GOOGLE_CLOUD_REGION)")
    g.add_argument("--pipeline-name", help="Vertex pipeline name [a-z][a-z0-9-]{0,112} (default taxi-pipeline)")
    g.add_argument("--service-account", help="run-as service account email for pipeline runs")
    g.add_argument("--template", help="compiled pipeline JSON (default build/vertex_pipeline.json)")


def _run_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--pipeline-root", help="gs:// root for this run's artifacts (default: as compiled)")
    g.add_argument("--param", dest="parameters", action="append", metavar="NAME=VALUE",
                   help="runtime parameter, e.g. data-root=gs://B/data/2024-06 (repeatable)")
    g.add_argument("--label", dest="labels", action="append", metavar="KEY=VALUE", help="run label (repeatable)")
    _bool_flag(g, "enable-caching", "override the compiled caching setting for this run")


def build_parser(prog: str = "vertex_runner.py") -> argparse.ArgumentParser:
    """The flags; prog is how errors name the command ('taxi vertex' under the CLI)."""
    parser = _Parser(prog=prog, description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    comp = sub.add_parser("compile", help="write the Vertex pipeline JSON")
    _common(comp)
    comp.add_argument("--output", help="where to write the JSON (default: --template)")
    g = comp.add_argument_group("pipeline")
    g.add_argument("--bucket", help="gs://NAME holding pipeline_root/, data/, serving_model/, tmp/")
    for name in ("pipeline-root", "data-root", "serving-model-dir", "temp-location", "schema-path"):
        g.add_argument(f"--{name}", help=f"override the default {name.replace('-', ' ')}")
    g.add_argument("--image", help="pipeline image (default REGION-docker.pkg.dev/PROJECT/tfx/PIPELINE:latest)")
    g.add_argument("--model-name")
    g.add_argument("--train-steps", type=int)
    _bool_flag(g, "enable-cache", "compile with TFX caching on (default) or off")
    d = comp.add_argument_group("dataflow")
    d.add_argument("--beam-code", choices=("image", "setup-file"),
                   help="ship code to Dataflow as the pipeline image (default) or by --setup_file")
    d.add_argument("--dataflow-machine-type")
    d.add_argument("--dataflow-max-workers", type=int)
    d.add_argument("--dataflow-service-account")
    d.add_argument("--beam-arg", dest="beam_args", action="append", metavar="--FLAG=VALUE",
                   help="extra Beam flag; replaces a generated flag of the same name (repeatable)")
    v = comp.add_argument_group("vertex training and serving")
    _bool_flag(v, "vertex-training", "train as a Vertex custom job")
    v.add_argument("--training-machine-type")
    _bool_flag(v, "vertex-serving", "push to Model Registry and deploy to an Endpoint instead of GCS")
    v.add_argument("--endpoint-name")
    v.add_argument("--serving-machine-type")
    v.add_argument("--serving-image")

    subm = sub.add_parser("submit", help="start a run of the compiled JSON")
    _common(subm)
    _run_flags(subm)
    subm.add_argument("--wait", action="store_true", help="follow the run; exit 1 unless it succeeds")

    sched = sub.add_parser("schedule", help="create, list, pause, resume or delete schedules")
    ssub = sched.add_subparsers(dest="action", required=True, parser_class=_Parser)
    create = ssub.add_parser("create", help="schedule the compiled JSON")
    _common(create)
    _run_flags(create)
    create.add_argument("--cron", help="e.g. 'TZ=America/Chicago 0 3 * * *'")
    create.add_argument("--schedule-name", help="display name (default PIPELINE-schedule)")
    create.add_argument("--max-concurrent-runs", type=int,
                        help="runs in progress at once (default 1); a run due beyond that is skipped")
    create.add_argument("--max-run-count", type=int)
    create.add_argument("--start-time", help="ISO 8601 with offset, e.g. 2025-01-01T00:00:00Z")
    create.add_argument("--end-time")
    create.add_argument("--replace", action="store_true",
                        help="after creating, delete older schedules with the same display name")
    lst = ssub.add_parser("list", help="list schedules")
    _common(lst)
    for action in ("pause", "resume", "delete"):
        p = ssub.add_parser(action, help=f"{action} one schedule")
        _common(p)
        p.add_argument("name", nargs="?", default="", help="display name, id or resource name (default PIPELINE-schedule)")
    for command in (comp, subm, create, lst, *(ssub.choices[a] for a in ("pause", "resume", "delete"))):
        command.set_defaults(help_prog=command.prog)
    return parser


_NOT_SETTINGS = {"command", "action", "config_file", "output", "wait", "replace", "name", "help_prog"}


def settings_from(args: argparse.Namespace) -> vs.VertexSettings:
    flags = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS}
    return vs.load_settings(flags, config_file=args.config_file)


def run(argv: list[str] | None = None, prog: str = "vertex_runner.py") -> int:
    args = build_parser(prog).parse_args(argv)
    s = settings_from(args)
    if args.command == "compile":
        checks.check_compile(s)
        from common.console import silenced
        from pipeline.vertex.compile import compile_pipeline

        output = s.template if args.output is None else args.output
        try:
            # TensorFlow's and Google's import-time lines (CUDA, this Python's support) are not results
            with silenced():
                compiled = compile_pipeline(s, output)
        except KeyboardInterrupt:
            print(f"interrupted: compile stopped; {output} was not written (a pipeline JSON already there is "
                  "unchanged)", file=sys.stderr)
            return EXIT_CLOUD
        print(compiled)
        return 0

    # Everything below talks to Vertex: validate fully first, then import the SDK.
    by_action = {"create": checks.check_schedule_create, None: checks.check_submit}
    by_action.get(getattr(args, "action", None), checks.check_target)(s)
    from pipeline.vertex import jobs

    try:
        if args.command == "submit":
            print(jobs.submit(s, wait=args.wait))
        elif args.action == "create":
            print(jobs.create_schedule(s, replace=args.replace))
        elif args.action == "list":
            for row in jobs.list_schedules(s):
                print(json.dumps(row))
        else:
            print(jobs.change_schedule(s, args.name, args.action))
    except jobs.VertexError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CLOUD
    except jobs.Interrupted as stop:
        print(f"interrupted: {stop}", file=sys.stderr)
        return EXIT_CLOUD
    except KeyboardInterrupt:
        what = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        print(f"interrupted: {what} stopped before Vertex answered; whether the request took effect is not known: "
              "look with 'schedule list' or in the console (Vertex AI > Pipelines) before trying again",
              file=sys.stderr)
        return EXIT_CLOUD
    return 0


def main(argv: list[str] | None = None, prog: str = "vertex_runner.py") -> int:
    try:
        return run(argv, prog)
    except SystemExit as exit:  # argparse: --help (0) or a usage error already printed (2)
        return exit.code if isinstance(exit.code, int) else EXIT_CONFIG
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
