"""Files written whole or not at all.

A reader (TF Serving polling models.config, a browser on a report, the next
run reading its state) never sees half a file, a failed or interrupted write
leaves the previous file as it was, and no temporary file stays behind. The
temporary file is this process's own, beside the target (a rename within one
file system), and gets the umask's permissions like any file the user writes.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from pathlib import Path

_serial = itertools.count()


def _temporary(path: Path, data: str | bytes) -> Path:
    """`data` written to a hidden name of this process's own beside `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_serial)}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def replace_whole(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path`, replacing any file there in one rename. A symlink is written
    through, as `>` does: the rename replaces the file it points to, which every reader of the link then sees
    (renaming onto the link would replace the link itself with a file its other readers never see)."""
    path = Path(path)
    target = Path(os.path.realpath(path))
    tmp = _temporary(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def create_new(candidates: Iterable[str | os.PathLike], data: str | bytes) -> Path:
    """Write `data` whole under the first of `candidates` that does not exist yet, and return that path.

    The file is hard-linked into place, which never replaces a file: two
    processes writing at once get two names, and neither overwrites the other.
    Every candidate must be in one folder.
    """
    names = iter(Path(c) for c in candidates)
    first = next(names)
    tmp = _temporary(first, data)
    try:
        for path in itertools.chain([first], names):
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                continue
        raise FileExistsError(f"every candidate name beside {first} is taken")
    finally:
        tmp.unlink(missing_ok=True)
