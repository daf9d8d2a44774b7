"""Before a local run: outputs of past runs that are gone or changed since are made again, not trusted.

TFX reuses a cached execution while its output artifacts are LIVE in MLMD and
their own folders exist. A Pusher's real output is the version folder it
pushed to (or found the model identical to) in serving_model/; deleted or
edited by hand, the cached Pusher went on reporting the model as pushed, and
served nothing or a damaged copy. forget_lost_pushes marks such a push's
artifact DELETED, so TFX does not reuse it and the Pusher runs again.

MLMD numbers executions, and so the output folders under pipeline_root/, from
1: with metadata.sqlite deleted, the next run wrote into the old run's folders
and failed ("file already exists"). set_aside_orphaned_outputs moves those
outputs aside; the run then starts a new history.

MLMD records every output by its absolute path: an output folder moved or
copied elsewhere holds a store whose outputs are in the old place (moved_from).
"""
from __future__ import annotations

import os
import time

from pipeline.configs import PipelineConfig

NOT_PUSHED_PREFIX = "identical to "  # dedup_pusher's not_pushed_reason, before it recorded identical_to


def forget_lost_pushes(metadata_path: str) -> list[str]:
    """Marks DELETED every LIVE push whose version folder is gone or no longer holds what was pushed (its
    served_digest, where recorded); returns those folders."""
    if not os.path.isfile(metadata_path) or os.path.getsize(metadata_path) == 0:
        return []
    from ml_metadata.proto import metadata_store_pb2

    from pipeline.components.dedup_pusher import SERVED_DIGEST, served_digest
    from pipeline.mlmd_store import open_for_update

    store = open_for_update(metadata_path)
    current: dict[str, str | None] = {}  # folder -> hash of its files now (None: gone)
    lost, forgotten = set(), []
    for artifact in store.get_artifacts_by_type("PushedModel"):
        folder = _served_folder(artifact.custom_properties)
        if artifact.state != metadata_store_pb2.Artifact.LIVE or folder is None:
            continue
        if folder not in current:
            complete = os.path.isfile(os.path.join(folder, "saved_model.pb"))
            current[folder] = served_digest(folder) if complete else None
        recorded = artifact.custom_properties[SERVED_DIGEST].string_value or None
        if current[folder] is None or recorded not in (None, current[folder]):
            artifact.state = metadata_store_pb2.Artifact.DELETED
            forgotten.append(artifact)
            lost.add(folder)
    if forgotten:
        store.put_artifacts(forgotten)
    return sorted(lost)


def _served_folder(properties) -> str | None:  # noqa: ANN001 - a protobuf map of MLMD Values
    """The version folder serving a push's model: where it was pushed, or the one it was found identical to."""
    from pipeline.components.dedup_pusher import IDENTICAL_TO, PUSHED_DESTINATION

    if properties["pushed"].int_value:
        return properties[PUSHED_DESTINATION].string_value or None
    if properties[IDENTICAL_TO].string_value:
        return properties[IDENTICAL_TO].string_value
    reason = properties["not_pushed_reason"].string_value
    return reason[len(NOT_PUSHED_PREFIX):] if reason.startswith(NOT_PUSHED_PREFIX) else None


def set_aside_orphaned_outputs(config: PipelineConfig) -> str | None:
    """Moves pipeline_root/ to pipeline_root.orphaned-<time>/ when it holds component outputs but the MLMD
    store that recorded them is gone; returns where it went."""
    root = config.pipeline_root
    if not config.metadata_path or os.path.exists(config.metadata_path) or not os.path.isdir(root):
        return None
    if not any(entry.is_dir() for entry in os.scandir(root)):
        return None
    target = f"{root}.orphaned-{time.strftime('%Y%m%d-%H%M%S')}"
    os.rename(root, target)
    return target


def moved_refusal(config: PipelineConfig) -> str | None:
    """Why a run must not start in this output folder because it was moved or copied (moved_from), or None."""
    original = moved_from(config)
    if not original:
        return None
    output = os.path.dirname(config.pipeline_root)
    copy = os.path.isdir(original)
    consequence = "read and build on that folder's" if copy else "fail on outputs that are gone"
    remedy = f"run with --output {original}" if copy else f"move it back to {original}"
    return (f"{output} {'is a copy of' if copy else 'was moved from'} {original}: its metadata.sqlite records the "
            f"outputs of past runs by their paths there, so a run here would {consequence}; {remedy}, or start a new "
            "output folder")


def moved_from(config: PipelineConfig) -> str | None:
    """The output folder this one's MLMD store recorded its outputs under, when that is another folder: the
    output folder was moved (a run fails reading outputs that are gone) or copied (a run would read and build on
    the original's outputs, and break when that is deleted)."""
    if not config.metadata_path or not os.path.isfile(config.metadata_path) or not os.path.getsize(config.metadata_path):
        return None
    from pipeline.mlmd_store import StoreError, open_readonly

    try:
        store = open_readonly(config.metadata_path)
    except StoreError:
        return None  # the run reports a damaged store itself
    here = os.path.realpath(os.path.dirname(config.pipeline_root))
    # A component's output: <output>/pipeline_root/<node id>/<output key>/<execution id>
    marker = os.sep + os.path.basename(config.pipeline_root) + os.sep
    recorded = {a.uri.rpartition(marker)[0] for a in store.get_artifacts() if marker in a.uri}
    elsewhere = sorted(folder for folder in recorded if os.path.realpath(folder) != here)
    return elsewhere[-1] if elsewhere else None
