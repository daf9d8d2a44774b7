"""What a local, in-process Beam run needs that TFX and Beam do not set up for it.

Two costs measured with py-spy on a cold `make run` (Beam 2.59, TFX 1.16):

- TFX's Beam executors, when the Beam args name no dependency flag, copy the
  whole installed `tfx` package to a temp folder and run `setup.py sdist` on it,
  once per Beam component (ExampleGen, StatisticsGen, Transform, Evaluator), so
  that remote workers could install it. A local runner has no remote workers;
  naming this project's setup.py (what Dataflow workers need anyway) skips it.
- Beam's in-memory worker weighs every side input it caches with objsize, and
  objsize rebuilds its set of module globals to exclude (one entry per module
  in sys.modules, thousands once TensorFlow is loaded) on every call. Transform
  reads dozens of analyzer results as side inputs: about 11 s of a 35 s
  Transform went there. `install_side_input_sizing()` keeps that set between
  calls and rebuilds it only when the set of loaded modules changes; the sizes
  it computes are the same.
"""
from __future__ import annotations

import sys
from pathlib import Path

SETUP_PY = Path(__file__).resolve().parent.parent / "setup.py"

# Any of these tells TFX the Beam workers already have their Python dependencies.
DEPENDENCY_FLAGS = ("--extra_package", "--extra_packages", "--setup_file", "--requirements_file",
                    "--worker_harness_container_image", "--sdk_container_image")


def with_dependency_flag(beam_args: tuple[str, ...]) -> tuple[str, ...]:
    """The args plus --setup_file=<project>/setup.py, unless they already name a dependency."""
    if any(arg.split("=", 1)[0] in DEPENDENCY_FLAGS for arg in beam_args):
        return beam_args
    return (*beam_args, f"--setup_file={SETUP_PY}")


class _ModuleGlobals:
    """ids of every loaded module's globals dict, rebuilt only when sys.modules changes size."""

    def __init__(self) -> None:
        self._count = -1
        self._ids: frozenset[int] = frozenset()

    def ids(self) -> frozenset[int]:
        if len(sys.modules) != self._count:
            modules = list(sys.modules.values())
            self._ids = frozenset(id(vars(m)) for m in modules if hasattr(m, "__dict__"))
            self._count = len(modules)
        return self._ids


def install_side_input_sizing() -> None:
    """Replace Beam's state-cache sizing with the same measure minus the per-call module scan."""
    import objsize
    from apache_beam.runners.worker import statecache

    if getattr(statecache.get_deep_size, "_cached_module_globals", False):
        return
    module_globals = _ModuleGlobals()
    settings = objsize.ObjSizeSettings(
        get_size_func=statecache._size_func,
        get_referents_func=statecache._get_referents_func,
        filter_func=statecache._filter_func,
        exclude_modules_globals=False,
    )

    def get_deep_size(*objs: object) -> int:
        context = objsize.TraversalContext(settings)
        context.exclude_set.update(module_globals.ids())
        return context.get_deep_size(*objs)

    get_deep_size._cached_module_globals = True  # type: ignore[attr-defined]
    statecache.get_deep_size = get_deep_size
