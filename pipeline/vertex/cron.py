"""Cron checking for Vertex schedules, so a typo fails here instead of in the API.

Vertex takes standard 5-field cron with an optional "TZ=Area/City " or
"CRON_TZ=Area/City " prefix (IANA names). No third-party cron library is in the
lock file; the grammar is small enough to check directly.
"""
from __future__ import annotations

import re
import zoneinfo

from pipeline.configs import ConfigError

_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    ),
    # 7 is Sunday too in Vertex's (and most) cron dialects.
    ("day of week", 0, 7, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}),
)
_TZ_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=(\S+) (.*)$")
# ASCII digits only: str.isdigit() also says yes to '³' (which int() then refuses) and to '٣' (which it reads as 3).
_NUMBER = re.compile(r"[0-9]+")


def normalized(expression: str) -> str:
    """The expression as checked and as sent to Vertex: fields split on any run of spaces or tabs, one space between."""
    return " ".join(expression.split())


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not _NUMBER.fullmatch(text):
        raise ConfigError(f"cron {name} field: {text!r} is not a number")
    number = int(text)
    if not low <= number <= high:
        raise ConfigError(f"cron {name} field: {number} is outside {low}-{high}")
    return number


def _check_field(field: str, name: str, low: int, high: int, names: dict[str, int]) -> None:
    for part in field.split(","):
        base, slash, step = part.partition("/")
        if slash and (not _NUMBER.fullmatch(step) or int(step) == 0):
            raise ConfigError(f"cron {name} field: step {step!r} must be a positive number")
        if base == "*":
            continue
        start, dash, end = base.partition("-")
        first = _value(start, name, low, high, names)
        if dash and _value(end, name, low, high, names) < first:
            raise ConfigError(f"cron {name} field: range {base!r} runs backwards")


def check_cron(expression: str) -> tuple[str | None, str]:
    """(time zone or None, the 5 fields) or ConfigError naming the bad part."""
    text = normalized(expression)
    time_zone = None
    match = _TZ_PREFIX.match(text)
    if match:
        time_zone, text = match.group(1), match.group(2)
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"cron time zone {time_zone!r} is not an IANA name such as America/Chicago"
            ) from None
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise ConfigError(
            f"cron {expression!r} needs 5 fields (minute hour day-of-month month day-of-week), "
            f"optionally after 'TZ=Area/City', e.g. 'TZ=America/Chicago 0 3 * * *'; got {len(fields)}"
        )
    for field, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        _check_field(field, name, low, high, names)
    return time_zone, text
