"""What a cache key must see besides data and config: the project code a component runs, and the environment.

TFX keys a component's cache on its inputs, its parameters and its executor's
class *name*. This pipeline names its own executors and its ML functions by
module path (no per-run wheel of the user code, whose hash TFX would have
keyed on), so an edit to that code would be a cache hit and the old result
would be served. Each component therefore gets a parameter holding the hash of
the project code it runs: the modules it names and every project module they
import, at any depth, lazy imports inside functions included.

The code is hashed as Python parses it (the AST, docstrings included): an edit
that Python itself discards, a comment or a re-wrapped line, changes nothing a
component computes, so it re-runs nothing.

The environment (the interpreter and every installed distribution's version)
keys every component too: TensorFlow, TFX, Beam or NumPy upgraded compute
other numbers, or fail, and a cached result would hide that.

Imports nothing heavy: the "nothing changed" check (up_to_date) uses it too.
"""
from __future__ import annotations

import ast
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Every project module a component of the pipeline can run: the pipeline and the components it builds, the
# functions it names by module path (models.preprocessing.preprocessing_fn, models.model.run_fn), and the
# in-process patches local_runner installs into Beam and tf.Transform. tests/unit/test_cache_keys.py checks
# that each component's code is inside it.
PIPELINE_CODE = ("pipeline.pipeline", "models.preprocessing", "models.model", "pipeline.local_beam",
                 "pipeline.local_tft")

DISTRIBUTION_SUFFIXES = (".dist-info", ".egg-info")


def hash_file(digest: hashlib._Hash, path: Path) -> None:
    """A file's name and contents into the digest, a block at a time."""
    digest.update(str(path).encode())
    for block in _blocks(path):
        digest.update(block)


def split_fingerprint(split: str, files: Sequence[str]) -> str:
    """ExampleGen's input fingerprint of one input split, as this project's driver records it on the Examples
    (pipeline/components/batched_csv_example_gen.py): the files' names and contents, in the order given."""
    digest = hashlib.sha256()
    for path in files:
        hash_file(digest, Path(path))
    return f"split:{split},num_files:{len(files)},sha256:{digest.hexdigest()}"


def _blocks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from iter(lambda: handle.read(1 << 20), b"")


# A file whose mtime or ctime is this close to the moment it is hashed may still change within the same
# timestamp tick (file times come from a coarse clock): its hash is not kept, so the next check reads it again.
SETTLED_NS = 2_000_000_000


def _stamp(stat: os.stat_result) -> list[int]:
    """What changes whenever a file's bytes do: ctime cannot be set back from user space, unlike mtime."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


class FileHashes:
    """Files' SHA-256, read again only when a file's stat changed: git's index, for the "nothing changed" check,
    which otherwise reads every data file on every run and every trigger tick (seconds a gigabyte).

    `known` maps an absolute path to its stamp and hash as an earlier check took them; `kept` is what this one
    took, for the next (files gone since are dropped). A hash is kept only for a file untouched for SETTLED_NS
    before it was read, and unchanged while it was: a write landing in the same clock tick as the read would
    otherwise leave the stamp as it was.
    """

    def __init__(self, known: Mapping[str, list] | None = None) -> None:
        self.known = dict(known or {})
        self.kept: dict[str, list] = {}

    def sha256(self, path: Path) -> str:
        key = os.path.abspath(path)
        stamp = _stamp(os.stat(path))
        entry = self.known.get(key)
        if isinstance(entry, list) and entry[:-1] == stamp:
            self.kept[key] = entry
            return entry[-1]
        digest = hashlib.sha256()
        for block in _blocks(path):
            digest.update(block)
        settled = time.time_ns() - SETTLED_NS
        if _stamp(os.stat(path)) == stamp and max(stamp[1], stamp[2]) < settled:
            self.kept[key] = [*stamp, digest.hexdigest()]
        return digest.hexdigest()


def files_digest(files: Mapping[str, str], read: Callable[[str], bytes]) -> str:
    """The hash of a folder's files, given as {path relative to the folder: path}, names and contents."""
    digest = hashlib.sha256()
    for relpath in sorted(files):
        digest.update(relpath.encode() + b"\0" + hashlib.sha256(read(files[relpath])).digest())
    return digest.hexdigest()


def folder_digest(root: str) -> str | None:
    """files_digest of a local folder and everything in it; None if it is not there."""
    if not os.path.isdir(root):
        return None
    files = {os.path.relpath(os.path.join(folder, name), root): os.path.join(folder, name)
             for folder, _, names in os.walk(root) for name in names}
    return files_digest(files, lambda path: Path(path).read_bytes())


class CodeIndex:
    """The project's modules under `root`, each parsed once: their imports and the hash of their code.

    `known` maps a file's sha256 to what parsing it gave ([code hash, imports]), and grows as files are
    parsed: the "nothing changed" check keeps it, so that unchanged files are not parsed again (parsing
    is most of its time).
    """

    def __init__(self, root: Path = PROJECT_ROOT, known: dict[str, list] | None = None) -> None:
        self.root = Path(root)
        self.known = dict(known or {})
        self._parsed: dict[Path, list] = {}

    def file_of(self, module: str) -> Path | None:
        """The project file that defines `module` (a package's __init__.py), or None if it is not the project's."""
        base = self.root.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def closure(self, modules: Iterable[str]) -> list[Path]:
        """The files of `modules` and of every project module they import, with the packages' __init__.py."""
        found: set[Path] = set()
        pending = [name for module in modules for name in _with_packages(module)]
        while pending:
            path = self.file_of(pending.pop())
            if path is None or path in found:
                continue
            found.add(path)
            package = self._package_of(path)
            for imported in self._parse(path)[1]:
                pending.extend(_with_packages(_absolute(imported, package)))
        return sorted(found)

    def digest(self, modules: Iterable[str]) -> str:
        """The hash of the code in closure(modules), comments and layout aside."""
        digest = hashlib.sha256()
        for path in self.closure(modules):
            digest.update(path.relative_to(self.root).as_posix().encode() + b"\0")
            digest.update(self._parse(path)[0].encode())
        return digest.hexdigest()

    def _package_of(self, path: Path) -> str:
        parts = path.relative_to(self.root).with_suffix("").parts
        return ".".join(parts[:-1])  # for a package's __init__ that is the package itself

    def _parse(self, path: Path) -> list:
        """[the hash of the AST, the modules its import statements name, `from x import y` as x and x.y]."""
        if path not in self._parsed:
            source = path.read_bytes()
            key = hashlib.sha256(source).hexdigest()
            if key not in self.known:
                self.known[key] = _parse_source(source, path)
            self._parsed[path] = self.known[key]
        return self._parsed[path]


def _parse_source(source: bytes, path: Path) -> list:
    tree = ast.parse(source, filename=str(path))  # bytes: a coding cookie is honoured
    imports = []
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            imports += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            imports.append(base)
            imports += [f"{base}.{alias.name}" if node.module else base + alias.name for alias in node.names]
    return [hashlib.sha256(ast.dump(tree).encode()).hexdigest(), imports]


# The fields that hold blocks of statements (a def's body, an if's else, a try's handlers, a match's cases).
BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


def _statements(block: list) -> Iterator[ast.AST]:
    """Every statement in a block and in the blocks inside it, at any depth: an import is a statement, so
    this finds each one (lazy imports in functions included) without visiting every expression."""
    for node in block:
        yield node
        for field in BLOCKS:
            yield from _statements(getattr(node, field, None) or [])


def _absolute(name: str, package: str) -> str:
    """An import's module name, a relative one (`.x`, `..x`) resolved against the importing package."""
    level = len(name) - len(name.lstrip("."))
    if not level:
        return name
    parts = package.split(".") if package else []
    base = parts[: len(parts) - (level - 1)]
    rest = name[level:]
    return ".".join(base + ([rest] if rest else []))


def _with_packages(module: str) -> list[str]:
    """`a.b.c` and the packages importing it runs first: a, a.b."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _inside_package(folder: str, root: str) -> bool:
    """Whether `folder` lies in a package (a folder with __init__.py) directly under `root`."""
    if not folder.startswith(root + os.sep):
        return False
    top = folder[len(root) + 1:].split(os.sep, 1)[0]
    return os.path.isfile(os.path.join(root, top, "__init__.py"))


def environment() -> str:
    """The interpreter and the name and version of every installed distribution, as one hash.

    Read from the names of the *.dist-info / *.egg-info folders on sys.path
    (`tensorflow-2.16.2.dist-info`), which carry both: a directory listing,
    not the metadata files (importlib.metadata reads every one, ~0.1 s).

    Folders inside an installed package are left out: packages add them when
    imported (setuptools/_vendor, with vendored *.dist-info, once TFDV is
    loaded), and the same install gave another hash after `taxi monitor` had
    imported TFDV, so its `--retrain` took the last run for another environment.
    """
    digest = hashlib.sha256(f"{sys.implementation.name} {sys.version}".encode())
    names = set()
    folders = [os.path.abspath(entry or ".") for entry in sys.path]
    for entry in folders:
        if any(_inside_package(entry, other) for other in folders):
            continue
        try:
            listing = os.listdir(entry)
        except OSError:  # a zip, or a folder that does not exist
            continue
        names.update(name for name in listing if name.endswith(DISTRIBUTION_SUFFIXES))
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
    return digest.hexdigest()[:16]
