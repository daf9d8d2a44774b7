"""Local Beam setup: no per-component TFX sdist, and Beam's side-input sizing unchanged but cheap."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from pipeline import configs, local_beam


def test_local_runs_name_the_project_setup_file() -> None:
    config = configs.local_config("data", "out")
    assert f"--setup_file={local_beam.SETUP_PY}" in config.beam_pipeline_args
    assert local_beam.SETUP_PY.is_file()
    assert config.beam_pipeline_args[: len(configs.DEFAULT_LOCAL_BEAM_ARGS)] == configs.DEFAULT_LOCAL_BEAM_ARGS


@pytest.mark.parametrize("flag", ["--extra_package=/tmp/x.tar.gz", "--requirements_file=req.txt",
                                  "--setup_file=/elsewhere/setup.py", "--sdk_container_image=img"])
def test_a_dependency_flag_the_user_gave_is_kept_alone(flag: str) -> None:
    args = ("--direct_num_workers=2", flag)
    assert local_beam.with_dependency_flag(args) == args


def test_user_beam_args_without_a_dependency_flag_get_one() -> None:
    args = configs.local_config("data", "out", beam_pipeline_args=("--direct_num_workers=2",)).beam_pipeline_args
    assert args == ("--direct_num_workers=2", f"--setup_file={local_beam.SETUP_PY}")


@pytest.fixture
def beam_sizing():
    from apache_beam.runners.worker import statecache

    original = statecache.get_deep_size
    local_beam.install_side_input_sizing()
    yield original, statecache.get_deep_size
    statecache.get_deep_size = original


def test_side_input_sizes_are_what_beam_computes(beam_sizing) -> None:
    original, installed = beam_sizing
    assert installed is not original
    values = [np.arange(1000), [1, 2.5, "three"], {"a": np.zeros((3, 4)), "b": b"x" * 500}, (None, 7)]
    for value in values:
        assert installed(value) == original(value)
    assert installed(*values) == original(*values)


def test_module_globals_stay_excluded_as_modules_come_and_go(beam_sizing) -> None:
    original, installed = beam_sizing
    module = types.ModuleType("late_module_for_sizing_test")
    module.big = list(range(10_000))
    holder = [vars(module)]
    before = installed(holder)  # not yet a module: its dict is counted
    sys.modules[module.__name__] = module
    try:
        assert installed(holder) == original(holder) < before
    finally:
        del sys.modules[module.__name__]
    assert installed(holder) == before


def test_installing_twice_keeps_one_wrapper(beam_sizing) -> None:
    from apache_beam.runners.worker import statecache

    _, installed = beam_sizing
    local_beam.install_side_input_sizing()
    assert statecache.get_deep_size is installed
