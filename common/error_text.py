"""The one line of an error that a console line or a report quotes."""
from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of the error's text; "" when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
