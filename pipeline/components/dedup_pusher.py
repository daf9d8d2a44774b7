"""A Pusher that does not push a model identical to the latest pushed version.

After the first blessed run, TFX's Resolver hands the Evaluator that same
model as baseline, so the next run re-validates the model against itself,
blesses it and the stock Pusher writes a second, identical version. Serving
would reload and nothing would be gained; this executor compares content first.
"""
from __future__ import annotations

import hashlib
import os

from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils


def tree_digest(root: str) -> str:
    digest = hashlib.sha256()
    for directory, _, files in sorted(fileio.walk(root)):
        for name in sorted(files):
            path = os.path.join(directory, name)
            digest.update(os.path.relpath(path, root).encode())
            digest.update(io_utils.read_bytes_file(path))
    return digest.hexdigest()


def latest_version_dir(base: str) -> str | None:
    if not fileio.isdir(base):
        return None
    versions = [v.rstrip("/") for v in fileio.listdir(base) if v.rstrip("/").isdigit()]
    complete = [v for v in versions if fileio.exists(os.path.join(base, v, "saved_model.pb"))]
    return os.path.join(base, max(complete, key=int)) if complete else None


class Executor(pusher_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: ANN001, N802 - TFX executor API
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        latest = latest_version_dir(destination.filesystem.base_directory) if destination.HasField("filesystem") else None
        if latest and self.CheckBlessing(input_dict):
            if tree_digest(self.GetModelPath(input_dict)) == tree_digest(latest):
                model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
                self._MarkNotPushed(model_push)
                model_push.set_string_custom_property("not_pushed_reason", f"identical to {latest}")
                return
        super().Do(input_dict, output_dict, exec_properties)
