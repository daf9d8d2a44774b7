"""Canary and stable labels in models.config: label after push, promote, rollback.

The labels live in the TF Serving ModelServerConfig that both TF Serving and the
local server read, so a label change is a file change the server polls. Every
change is checked first (the target is pushed, blessed and, when a server URL
is given, loaded), written atomically under a lock, and appended to a history
file, which is how `rollback` knows the previous stable version (a version
rolled back from is never a rollback's target). The version a rollback would
return to stays pinned in the version policy, so a rollback is instant. Labels
other than stable and canary are carried over untouched.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from common.atomic_files import replace_whole
from monitoring.label_lock import (
    LabelError,
    LabelsBusy,  # noqa: F401 - the package's label errors are imported from here
    Lock,
    locked,
    moves_now,
    moving,
    unwritable,
)
from serving.config import ConfigError, ModelSpec, VersionPolicy, load_model_config, render_model_config
from serving.deployment import pushed_versions

STABLE, CANARY = "stable", "canary"
HEADER = "# Labels written by the monitoring package (promote / rollback / canary after push).\n"


class NothingToPromoteYet(LabelError):
    """Not a refusal: no canary is under test, or it has not served enough requests to be judged. A job that
    promotes every few minutes meets this most of the time; nothing was written."""


@dataclasses.dataclass
class Deployment:
    """Where one model's versions and labels live."""

    push_dir: Path  # <output>/serving_model/<model>
    config_path: Path
    model_name: str = "taxi"

    def __post_init__(self) -> None:
        # A symlinked models.config (TF Serving reads it at a deploy path): its label history and lock live beside
        # the file itself, and writes go to that file, so every path to it sees one config and one history.
        self.config_path = Path(os.path.realpath(self.config_path))

    @classmethod
    def for_output(cls, output: str | Path, model_name: str = "taxi", config: str | Path | None = None) -> Deployment:
        base = Path(output) / "serving_model"
        return cls(base / model_name, Path(config) if config else base / "models.config", model_name)

    @property
    def history_path(self) -> Path:
        return self.config_path.with_name(self.config_path.name + ".history.jsonl")

    def pushed(self) -> list[int]:
        """Complete versions on disk (the Pusher copies saved_model.pb last)."""
        return pushed_versions(self.push_dir)

    def read(self) -> tuple[list[ModelSpec], ModelSpec | None]:
        """All specs in the file and this model's spec (None when the file or the model is absent)."""
        if not self.config_path.exists():
            return [], None
        try:
            specs = load_model_config(self.config_path)
        except ConfigError as error:
            raise LabelError(str(error)) from None
        return specs, next((s for s in specs if s.name == self.model_name), None)

    def labels(self) -> dict[str, int]:
        return dict(self.read()[1].labels) if self.read()[1] else {}

    def history(self) -> list[dict]:
        """Label changes, oldest first; a damaged line (not JSON, or not a change record) is skipped, not fatal."""
        if not self.history_path.is_file():
            return []
        out = []
        for line in self.history_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and all(_label_map(entry.get(side)) for side in ("before", "after")):
                out.append(entry)
        return out


def _label_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values())


def dangling(deployment: Deployment) -> dict[str, int]:
    """Labels that point at versions no longer on disk."""
    on_disk = set(deployment.pushed())
    return {k: v for k, v in deployment.labels().items() if v not in on_disk}


def stable_stack(history: list[dict]) -> list[int]:
    """The stable versions a run of rollbacks walks back through, oldest first, replayed from the history.

    A change of stable pushes the new version (moving it to the top if it was stable before); a rollback pops
    back to its target, so the version rolled back from is never a later rollback's target.
    """
    stack: list[int] = []
    for entry in history:
        before, after = entry["before"].get(STABLE), entry["after"].get(STABLE)
        if after is None or after == before:
            continue
        if entry.get("action") == "rollback":
            if after in stack:
                del stack[stack.index(after) + 1:]
            else:  # rolled back to a version given by hand: it replaces the one rolled back from
                stack[-1:] = [after]
            continue
        if before is not None and not stack:
            stack.append(before)
        # A version stable once more moves to the top: each version once, where it last became stable (cut at its
        # first place, A -> B -> C -> A lost B and C, and a rollback from A had nowhere to go).
        stack = [version for version in stack if version != after] + [after]
    return stack


def previous_stable(deployment: Deployment, current: int | None, history: list[dict] | None = None) -> int | None:
    """The version a rollback returns to: the stable one before `current`, from the history, still on disk."""
    on_disk = set(deployment.pushed())
    stack = stable_stack(deployment.history() if history is None else history)
    if current in stack:
        stack = stack[:stack.index(current)]
    return next((v for v in reversed(stack) if v in on_disk and v != current), None)


def _write(deployment: Deployment, labels: dict[str, int], action: str, reason: str,
           before: dict[str, int], pins: tuple[int, ...] = ()) -> dict[str, int]:
    """Atomic replace of the config; the version a rollback would return to stays pinned, so it needs no load."""
    on_disk = set(deployment.pushed())
    missing = {k: v for k, v in labels.items() if v not in on_disk}
    if missing:
        label, version = next(iter(missing.items()))
        raise LabelError(f"label '{label}' would point at version {version}, which is not in {deployment.push_dir}")
    specs, spec = deployment.read()
    entry = {"ts": time.time(), "action": action, "reason": reason, "before": before, "after": labels}
    keep = set(labels.values()) | set(pins) | (moves_now(deployment.config_path, deployment.model_name)[1] & on_disk)  # still loading
    fallback = previous_stable(deployment, labels.get(STABLE), deployment.history() + [entry])
    if fallback is not None:
        keep.add(fallback)
    base_path = spec.base_path if spec else str(deployment.push_dir.resolve())
    new_spec = ModelSpec(deployment.model_name, base_path, VersionPolicy("specific", versions=tuple(sorted(keep))),
                         dict(labels))
    specs = [new_spec if s.name == deployment.model_name else s for s in specs] or [new_spec]
    if spec is None and new_spec not in specs:
        specs.append(new_spec)
    text = HEADER + render_model_config(specs)
    # Both or neither: a change missing from the history is one a later rollback does not know to walk back.
    # The history goes first, since cutting it back to its old length needs no space on a full disk.
    history_size = deployment.history_path.stat().st_size if deployment.history_path.is_file() else None
    try:
        with deployment.history_path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
    except OSError as error:
        _restore_history(deployment.history_path, history_size)
        raise LabelError(unwritable(deployment.history_path, error)) from None
    try:  # the config is replaced whole or not at all
        replace_whole(deployment.config_path, text)
    except OSError as error:
        _restore_history(deployment.history_path, history_size)
        raise LabelError(unwritable(deployment.config_path, error)) from None
    return labels


def _restore_history(path: Path, size: int | None) -> None:
    """The history as it was before a label change that did not happen: cut back to `size`, or gone if it was."""
    with contextlib.suppress(OSError):
        if size is None:
            path.unlink()
        else:
            os.truncate(path, size)


class Server(Protocol):
    """The model server that applies the config (monitoring.canary.ModelServer)."""

    def present(self) -> bool: ...  # False: no server applies the config now
    def holds(self, version: int) -> bool: ...  # loaded or loading now
    def loaded(self, version: int) -> bool: ...  # available now
    def failed(self, version: int) -> bool: ...  # its load failed (or cannot be told): a wait may be for a retry
    def wait_loaded(self, version: int, failed_before: bool) -> bool: ...  # False: not loaded within the wait
    def label_version(self, label: str) -> int | None: ...  # the version the server's label resolves to


def _moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Labels that exist before and point at another version after: TF Serving moves one only to a loaded version."""
    return {k: v for k, v in after.items() if before.get(k) not in (None, v)}


def _write_in_steps(deployment: Deployment, after: dict[str, int], action: str, reason: str, before: dict[str, int],
                    server: Server | None, lock: Lock) -> dict[str, int]:
    """Moves labels the way TF Serving takes them from a polled config (serving_config.md, version labels).

    A label moved to a version the server has not loaded makes it refuse the
    whole config, again at every poll, so the version would never load. So the
    target is first pinned, with only the labels on versions the server has
    loaded or is loading (a config it takes even when an earlier one was
    refused and its labels differ from the file's: a label on a version it
    never aspired to is dropped); once it has loaded the target, the labels
    move. A new label waits for its version the same way: TF Serving takes one on a
    version still loading only with --allow_version_labels_for_unavailable_models, and
    answers no request on it until the load ends (never, if the load fails).

    The label lock is let go while the server loads (minutes, for a large
    model): a rollback in an incident is not held up behind a canary. Changes
    made meanwhile keep the target pinned (label_lock.moving) and stand: the
    move is made on the labels as they are then, and given up only when
    another change moved the same label elsewhere.
    """
    present = server is not None and server.present()  # asked first: an unreachable server is refused before
    if not present:  # anything is written, a new label too (it was written, then the wait failed)
        return _write(deployment, after, action, reason, before)
    # The server's own labels count as much as the file's: it may not have polled the last change yet (a label
    # the file dropped is one it still has), or have refused it (a label moved in one write by a run whose
    # --serving-url was not this server); a label it has elsewhere moves in steps too, unless to a loaded version.
    applied = {k: v for k in after if (v := server.label_version(k)) not in (None, after[k])
               and not server.loaded(after[k])}
    fresh = {k: v for k, v in after.items() if k not in before and k not in applied and not server.loaded(v)}
    moved = {**_moved(before, after), **{k: after[k] for k in applied}, **fresh}
    if not moved:
        return _write(deployment, after, action, reason, before)
    on_disk = set(deployment.pushed())
    kept = {k: v for k, v in {**before, **applied}.items() if v in on_disk and server.holds(v)}
    targets = tuple(sorted(set(moved.values())))
    failed_before = {v for v in targets if server.failed(v)}  # asked before the pin: a failure after it is its own
    _write(deployment, kept, "pin", f"load {list(targets)} before labels move to it", before, pins=targets)
    with moving(deployment.config_path, deployment.model_name, moved, targets), lock.released():
        loaded = {version: server.wait_loaded(version, version in failed_before) for version in targets}
    now = deployment.labels()
    for label, version in sorted(moved.items()):
        later = f"`taxi {'canary' if label == CANARY else 'promote'} --version {version}`"
        if now.get(label) not in (kept.get(label), None, version):
            change = (deployment.history() or [{}])[-1]
            raise LabelError(f"another label change moved '{label}' to version {now[label]} while the server loaded "
                             f"version {version} ({change.get('action')}: {change.get('reason')}"
                             f"); it stands: {later} to move it again")
        if not loaded[version]:
            state = f"stays at {now[label]}" if label in now else "is unset"
            raise LabelError(f"version {version} is pinned, but the server has not loaded it yet, so label "
                             f"'{label}' {state} (a label moved to a version still loading is refused); "
                             f"move it later with {later}")
    final = {**now, **moved}
    if final.get(CANARY) is not None and final.get(CANARY) == final.get(STABLE):
        raise LabelError(f"version {final[STABLE]} was made stable while the server loaded it: no canary to move")
    if final == now:  # another move made this one meanwhile
        return now
    return _write(deployment, final, action, reason, now if now != kept else before)


def _others(labels: dict[str, int], on_disk: list[int]) -> dict[str, int]:
    """Labels this package does not own (e.g. a hand-made `shadow`): carried over while their version exists."""
    return {k: v for k, v in labels.items() if k not in (STABLE, CANARY) and v in on_disk}


# (version) -> None, raising LabelError when the version must not carry a label.
Check = Callable[[int], None]


def label_after_push(deployment: Deployment, version: int, check: Check | None = None,
                     server: Server | None = None) -> dict[str, int]:
    """A new push becomes the canary; the first push ever becomes stable (nothing to compare with).

    When a label moves to the version (a canary under test is replaced), it
    moves once `server` has loaded it; without a server the labels are
    written at once, for one that reads them only at its next start.
    """
    with locked(deployment.config_path) as lock:
        before = deployment.labels()
        if check:
            check(version)
        stable = before.get(STABLE)
        others = _others(before, deployment.pushed())
        if stable is None or stable not in deployment.pushed():
            return _write_in_steps(deployment, {**others, STABLE: version}, "first-push", f"version {version} pushed",
                                   before, server, lock)
        if stable == version:
            return before
        return _write_in_steps(deployment, {**others, STABLE: stable, CANARY: version}, "canary",
                               f"version {version} pushed", before, server, lock)


def canary(deployment: Deployment, check: Check, version: int | None = None,
           server: Server | None = None) -> dict[str, int]:
    """canary := a version (default: the newest push) beside stable; `server` as in label_after_push."""
    with locked(deployment.config_path) as lock:
        before, pushed = deployment.labels(), deployment.pushed()
        target = version if version is not None else (pushed[-1] if pushed else None)
        if target is None:
            raise LabelError(f"no version pushed in {deployment.push_dir} to make the canary")
        if target not in pushed:
            raise LabelError(f"cannot make version {target} the canary: it is not in {deployment.push_dir} "
                             f"(pushed: {pushed[-5:] or 'none'})")
        stable = before.get(STABLE)
        if stable is None or stable not in pushed:
            raise LabelError("there is no stable version to compare a canary with; `taxi promote --version V` first")
        if target == stable:
            raise LabelError(f"version {target} is stable; the canary must be another version")
        moved_from = before.get(CANARY)
        if moved_from == target:
            # Moved again only on the server's word that it still has the canary elsewhere (it refused the move):
            # another server at --url, or one that does not answer, is no evidence.
            moved_from = server.label_version(CANARY) if server is not None and server.present() else None
            if moved_from in (None, target):
                raise LabelError(f"version {target} is already the canary")
        check(target)
        after = {**_others(before, pushed), STABLE: stable, CANARY: target}
        return _write_in_steps(deployment, after, "canary", f"canary {moved_from} -> {target}", before, server, lock)


def promote(deployment: Deployment, check: Check, version: int | None = None) -> dict[str, int]:
    """stable := the canary (or a given version); the canary label is dropped when it was the one promoted."""
    with locked(deployment.config_path):
        before = deployment.labels()
        target = version if version is not None else before.get(CANARY)
        replacing = moves_now(deployment.config_path, deployment.model_name)[0].get(CANARY)
        if version is None and replacing is not None:  # the canary under test is on its way out
            raise NothingToPromoteYet(f"canary {target} is being replaced by version {replacing}, which the server "
                                      "is loading: nothing to promote until it is under test")
        if target is None:
            raise NothingToPromoteYet(f"no canary label in {deployment.config_path}: nothing to promote")
        if target not in deployment.pushed():
            raise LabelError(f"cannot promote version {target}: it is not in {deployment.push_dir} "
                             f"(pushed: {deployment.pushed()[-5:] or 'none'})")
        if before.get(STABLE) == target:
            raise LabelError(f"version {target} is already stable")
        check(target)
        after = {**_others(before, deployment.pushed()), STABLE: target}
        canary = before.get(CANARY)
        if canary is not None and canary != target and canary in deployment.pushed():
            after[CANARY] = canary  # promoting another version leaves the canary under test
        return _write(deployment, after, "promote", f"stable {before.get(STABLE)} -> {target}", before)


def rollback(deployment: Deployment, check: Check, version: int | None = None) -> dict[str, int]:
    """stable := the previous stable version (or a given one); a canary of the rolled-back version is dropped."""
    with locked(deployment.config_path):
        before, history, pushed = deployment.labels(), deployment.history(), deployment.pushed()
        current = before.get(STABLE)
        target = version if version is not None else previous_stable(deployment, current, history)
        if target is None:  # no earlier stable in the history still on disk: the newest older push not rolled back from
            skip = {e["before"][STABLE] for e in history if e.get("action") == "rollback" and STABLE in e["before"]}
            older = [v for v in pushed if (current is None or v < current) and v not in skip]
            target = older[-1] if older else None
        if target is None:
            raise LabelError(f"no earlier version to roll back to (stable is {current or 'unset'}; "
                             f"pushed: {pushed[-5:] or 'none'})")
        if target not in pushed:
            raise LabelError(f"cannot roll back to version {target}: it is not in {deployment.push_dir}")
        if target == current:
            raise LabelError(f"version {target} is already stable")
        check(target)
        after = {**_others(before, pushed), STABLE: target}
        canary = before.get(CANARY)
        if canary is not None and canary not in (current, target) and canary in pushed:
            after[CANARY] = canary
        return _write(deployment, after, "rollback", f"stable {current} -> {target}", before)
