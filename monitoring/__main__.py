"""`python -m monitoring monitor|trigger|canary|promote|rollback|labels ...`: the same commands as `taxi ...`."""
from __future__ import annotations

import os
import sys

from cli.main import main

COMMANDS = ("monitor", "trigger", "canary", "promote", "rollback", "labels")

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        print(f"error: unknown command {argv[0]!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        code = 2
    elif not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m monitoring {" + ",".join(COMMANDS) + "} [--help] ...")
        code = 0
    else:
        code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # like `taxi`: skip TensorFlow's noisy interpreter teardown
