"""The one wording for a text file an editor saved in another encoding."""
from __future__ import annotations


def not_utf8(what: str, path: object, error: UnicodeDecodeError) -> str:
    """`<what> <path> is not UTF-8 text: byte 0xe9 at offset 3; save it as UTF-8` (where the first bad byte is)."""
    return f"{what} {path} is not UTF-8 text: byte {error.object[error.start]:#04x} at offset {error.start}; save it as UTF-8"
