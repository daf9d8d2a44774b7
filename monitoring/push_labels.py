"""Labels for what a pipeline run pushed: the new version becomes the canary once the server has loaded it.

local_runner calls this after a completed run (and on the "nothing changed" path,
for a push an interrupted run never labelled); `taxi canary` and friends move labels
by hand (cli/monitoring.py). The moves themselves are monitoring/labels.py's.
"""
from __future__ import annotations

import dataclasses
import sys

DEFAULT_SERVING_URL = "http://127.0.0.1:8501"


@dataclasses.dataclass(frozen=True)
class Serving:
    """The model server whose load of a new push the canary label waits for."""

    url: str = DEFAULT_SERVING_URL
    label_wait_s: float = 120.0


def label_unlabelled_push(output: str, model_name: str, serving: Serving) -> None:
    """Labels the newest pushed version, as a push is labelled, when models.config and the label history
    never named it, or when the stable label names a version no longer on disk (it becomes stable then).

    A run killed after the Pusher copied a model (before MLMD recorded the push)
    or before its labels were written leaves such a version; the re-run finds
    the model identical to it and pushes nothing, so it is labelled here. A
    stable version deleted by hand is replaced the same way.
    """
    from monitoring.labels import STABLE, Deployment, LabelError, dangling

    deployment = Deployment.for_output(output, model_name)
    pushed = deployment.pushed()
    if not pushed:
        return
    try:
        gone = dangling(deployment).get(STABLE)
        spec = deployment.read()[1]
    except LabelError as error:  # the run stands; a config it cannot read is the user's to mend, so it is said
        print(f"warning: labels not checked: {error}", file=sys.stderr)
        return
    newest = pushed[-1]
    if gone is not None:
        print(f"labels: stable version {gone} is no longer in {deployment.push_dir}; "
              f"the newest pushed version, {newest}, is labelled as a push is")
    else:
        named = set(spec.labels.values()) | set(spec.policy.versions) if spec else set()
        for entry in deployment.history():
            named |= set(entry["before"].values()) | set(entry["after"].values())
        if newest in named:
            return
        print(f"labels: version {newest} was pushed but never labelled (a run stopped before its labels); "
              "it is labelled as a push is")
    label_push(output, model_name, newest, serving)


def label_push(output: str, model_name: str, version: int, serving: Serving) -> None:
    """A new push becomes the `canary` in serving_model/models.config; stable stays (monitoring/labels.py)."""
    from monitoring.canary import ModelServer
    from monitoring.labels import Deployment, LabelError, label_after_push

    deployment = Deployment.for_output(output, model_name)

    def announce(target: int) -> None:
        print(f"labels: version {target} pinned; the label moves to it once the server at {serving.url} "
              f"has loaded it (waiting up to {serving.label_wait_s:.0f} s)")

    server = ModelServer(serving.url, model_name, serving.label_wait_s, absent_ok=True, announce=announce)
    try:
        labels = label_after_push(deployment, version, server=server)
    except (LabelError, OSError) as error:  # the push stands; labels can be set with `taxi canary`
        print(f"warning: version {version} pushed but not labelled: {error}", file=sys.stderr)
        return
    print("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items())) + f" ({deployment.config_path})")
