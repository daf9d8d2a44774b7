"""A Pusher that does not push a model identical to the latest pushed version, and pushes whole versions.

After the first blessed run, TFX's Resolver hands the Evaluator that same
model as baseline, so the next run re-validates the model against itself,
blesses it and the stock Pusher writes a second, identical version. Serving
would reload and nothing would be gained; this executor compares content first.

"Identical" is what the model computes: every file byte for byte, except
fingerprint.pb (hashes of the others) and the graph's names of functions and
captured tensors, which carry counters global to the process that exported
them (see `_canonical_graph`). So a `--no-cache` run of unchanged data, which trains
the same weights, pushes nothing either.

A pushed version appears whole or not at all (copy_version), and its number
is higher than every earlier push even when the clock is behind (next_version).

Either way the PushedModel records the version folder that serves the model
(`pushed_destination`, or `identical_to`) and the hash of its files
(`served_digest`): before a run, pipeline/lost_outputs.py forgets a push whose
folder is gone or changed, so that the Pusher runs again instead of being a
cache hit that serves nothing.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from collections import defaultdict

from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from pipeline.fingerprints import files_digest

# At a SavedModel's root: its graph, and a file of hashes of the graph and the variables.
GRAPH_FILE = "saved_model.pb"
DERIVED_FILES = {"fingerprint.pb"}
STAGING_PREFIX = ".pushing-"  # a version folder being copied (see copy_version)
_TRACE_UID = re.compile(r"^(.*)_(\d+)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
# A captured tensor's argument is named after the eager tensor's id, another process-wide counter.
_CAPTURE_NAME = re.compile(r'(key: "_user_specified_name"\s*value \{\s*s: ")(\d+)(")')
# PushedModel properties besides TFX's: the version folder a model found identical serves from, and the hash
# of the files of the folder that serves the model (pushed or identical).
IDENTICAL_TO, SERVED_DIGEST = "identical_to", "served_digest"
PUSHED_DESTINATION = "pushed_destination"  # TFX's own, set when it pushes


def _files(root: str) -> dict[str, str]:
    return {os.path.relpath(os.path.join(directory, name), root): os.path.join(directory, name)
            for directory, _, files in fileio.walk(root) for name in files}


def served_digest(folder: str) -> str:
    """The hash of a version folder's files (fingerprints.files_digest), on any file system TFX reads."""
    return files_digest(_files(folder), io_utils.read_bytes_file)


def _canonical_graph(path: str) -> str:
    """saved_model.pb as text, with names from TensorFlow's process-wide counters replaced by their order.

    TensorFlow names each traced function with a counter global to the process
    (`__inference__predict_raw_13149`): the same model exported after more or
    fewer traces elsewhere in the process gets other names, and its function
    library is written in name order. Each name becomes its stem and its rank
    among the functions of that stem (`__inference__predict_raw_#0`). Ranks
    keep the trace order, so the renaming is one-to-one: two graphs equal after
    it differ in names only. The arguments that hold captured tensors (the
    variables) are named by the tensors' ids, another such counter; they are
    ranked the same way.
    """
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel.FromString(io_utils.read_bytes_file(path))
    by_stem = defaultdict(list)
    for meta_graph in model.meta_graphs:
        for function in meta_graph.graph_def.library.function:
            match = _TRACE_UID.match(function.signature.name)
            if match:
                by_stem[match.group(1)].append((int(match.group(2)), function.signature.name))
    renamed = {name: f"{stem}_#{rank}" for stem, traced in by_stem.items()
               for rank, (_, name) in enumerate(sorted(traced))}
    for meta_graph in model.meta_graphs:
        library = meta_graph.graph_def.library
        functions = sorted(library.function, key=lambda f: renamed.get(f.signature.name, f.signature.name))
        del library.function[:]
        library.function.extend(functions)
    text = _QUOTED.sub(lambda m: f'"{renamed.get(m.group(1), m.group(1))}"', text_format.MessageToString(model))
    ids = sorted({int(m.group(2)) for m in _CAPTURE_NAME.finditer(text)})
    rank = {str(tensor_id): f"#{i}" for i, tensor_id in enumerate(ids)}
    return _CAPTURE_NAME.sub(lambda m: m.group(1) + rank[m.group(2)] + m.group(3), text)


def same_model(candidate: str, pushed: str) -> bool:
    """Whether two SavedModel folders hold the same model (see the module docstring)."""
    ours, theirs = _files(candidate), _files(pushed)
    if ours.keys() != theirs.keys():
        return False
    for relpath in ours.keys() - DERIVED_FILES - {GRAPH_FILE}:
        if io_utils.read_bytes_file(ours[relpath]) != io_utils.read_bytes_file(theirs[relpath]):
            return False
    if GRAPH_FILE not in ours:
        return True
    if io_utils.read_bytes_file(ours[GRAPH_FILE]) == io_utils.read_bytes_file(theirs[GRAPH_FILE]):
        return True
    return _canonical_graph(ours[GRAPH_FILE]) == _canonical_graph(theirs[GRAPH_FILE])


def _version_names(base: str) -> list[str]:
    """The version folders' names in `base` (numbers; a staging folder or any other entry is not one)."""
    if not fileio.isdir(base):
        return []
    return [v.rstrip("/") for v in fileio.listdir(base) if v.rstrip("/").isdigit()]


def latest_version_dir(base: str) -> str | None:
    complete = [v for v in _version_names(base) if fileio.exists(os.path.join(base, v, GRAPH_FILE))]
    return os.path.join(base, max(complete, key=int)) if complete else None


def next_version(base: str, now: float | None = None) -> int:
    """The Unix time in seconds (TFX's version), or one past the highest version in `base` when that is not
    below it (a clock set back, two pushes in one second): each push gets a higher number than every earlier
    one, which is what TF Serving's `latest` policy and the identical-model check take for the newest."""
    highest = max(map(int, _version_names(base)), default=0)
    return max(int(time.time() if now is None else now), highest + 1)


def clear_staging(base: str) -> None:
    """Removes what a push killed mid-copy left in a local `base` (see copy_version); the run lock keeps any
    other push out meanwhile."""
    if "://" in base or not os.path.isdir(base):
        return
    for name in os.listdir(base):
        if name.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def copy_version(model_path: str, base: str, version: int) -> str:
    """Copies a SavedModel into `<base>/<version>/` so that a server never sees part of it.

    Locally into `<base>/.pushing-<version>/` (a name no server takes for a version) and then renamed: a run
    killed mid-copy leaves only that, which the next Pusher run removes (clear_staging); TFX's copy into the version folder itself
    left a folder without saved_model.pb that a `latest` policy would try to serve. On an object store
    (gs://), where a folder cannot be renamed, TFX's order: saved_model.pb last, the file TF Serving waits for.
    """
    serving_path = os.path.join(base, str(version))
    if "://" in base:
        io_utils.copy_dir(model_path, serving_path, deny_regex_patterns=[re.escape(GRAPH_FILE)])
        io_utils.copy_file(os.path.join(model_path, GRAPH_FILE), os.path.join(serving_path, GRAPH_FILE))
        return serving_path
    os.makedirs(base, exist_ok=True)
    clear_staging(base)
    staging = os.path.join(base, f"{STAGING_PREFIX}{version}")
    io_utils.copy_dir(model_path, staging)
    os.rename(staging, serving_path)
    return serving_path


class Executor(pusher_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: ANN001, N802 - TFX executor API
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if not destination.HasField("filesystem"):
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)  # as TFX's Do, which a filesystem push skips
        base = destination.filesystem.base_directory
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        clear_staging(base)  # also when nothing is pushed: a killed push's copy is not left for the next push
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        latest = latest_version_dir(base)
        if latest and same_model(model_path, latest):
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property("not_pushed_reason", f"identical to {latest}")
            model_push.set_string_custom_property(IDENTICAL_TO, latest)
            model_push.set_string_custom_property(SERVED_DIGEST, served_digest(latest))
            return
        version = next_version(base)
        serving_path = copy_version(model_path, base, version)
        io_utils.copy_dir(model_path, model_push.uri)  # TFX's archive copy of what was pushed
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
        model_push.set_string_custom_property(SERVED_DIGEST, served_digest(serving_path))
