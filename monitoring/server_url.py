"""A model server URL checked before anything is written, without importing an HTTP client.

local_runner.py checks its --serving-url before every run, the quarter-second
"nothing changed" one included; importing httpx (monitoring/canary.py) takes
0.2 s of that, so the URL is parsed with urllib here.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

# A host as httpx takes it: a name or IPv4 address, or an IPv6 address (urlsplit drops its brackets).
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")


def check_url(url: str) -> str:
    """A model server URL, or ValueError saying what is wrong with it."""
    try:
        parsed = urlsplit(url)
    except ValueError as error:  # e.g. an unclosed IPv6 bracket
        raise ValueError(f"{url!r} is not a URL: {error}") from None
    try:
        port = parsed.port
    except ValueError as error:
        if "out of range" in str(error):
            raise ValueError(f"{url!r} has port {parsed.netloc.rpartition(':')[2]}, outside 1-65535") from None
        raise ValueError(f"{url!r} is not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not _HOST.fullmatch(parsed.hostname):
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    if port is not None and not 1 <= port <= 65535:  # else: "no server there", never waited for
        raise ValueError(f"{url!r} has port {port}, outside 1-65535")
    return url
