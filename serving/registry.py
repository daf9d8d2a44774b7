"""Versions on disk -> loaded servables, the way TF Serving's manager does it.

A new version is loaded and warmed up before it is published, and older ones
are dropped only after that, so requests never see a gap. A version dir is a
candidate only once saved_model.pb exists (the Pusher copies it last); one that
fails to load is remembered with its error and retried only when its files
change, while the versions already loaded keep serving.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.error_text import first_line
from serving.config import ModelSpec, local_folder
from serving.errors import ServingError, invalid, not_found
from serving.servable import Servable

log = logging.getLogger("serving")

@dataclass
class VersionState:
    """One row of the model status endpoint."""

    version: int
    state: str  # LOADING | AVAILABLE | UNLOADING | END
    error_code: str = "OK"
    error_message: str = ""


def _fingerprint(path: Path) -> tuple[int, int, int]:
    """Changes whenever a file under the version dir is rewritten."""
    count = size = newest = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return count, size, newest


class ModelManager:
    """All versions of one model: polling, loading, policy, labels, status."""

    def __init__(self, spec: ModelSpec, on_event: Callable[[str, str, int, str], None] | None = None) -> None:
        self.spec = spec
        self.retired = False  # removed from the config: nothing loaded, requests answered NOT_FOUND
        self._available: dict[int, Servable] = {}
        self._states: dict[int, VersionState] = {}
        self._failed: dict[int, tuple[tuple[int, int, int], str]] = {}
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Thread] = {}
        self._start_lock = threading.Lock()
        self._on_event = on_event or (lambda *a: None)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def base(self) -> Path:
        """The versions' folder: a local path, or a file:// URI as TF Serving also takes."""
        return local_folder(self.spec.base_path, f"model '{self.spec.name}': base_path")

    def update_spec(self, spec: ModelSpec) -> None:
        self.spec, self.retired = spec, False

    def retire(self) -> None:
        """The model left the config: unload every version, as TF Serving tears it down."""
        self.retired = True
        for version in sorted(self._available):
            self._unload(version)

    def _on_disk(self) -> list[int]:
        base = self.base
        try:
            entries = list(base.iterdir())
        except OSError:
            return []
        return sorted(
            int(p.name) for p in entries if p.name.isdigit() and int(p.name) > 0 and (p / "saved_model.pb").is_file()
        )

    def poll(self, wait: bool = False) -> None:
        """One reconcile step: load what the policy wants, then drop the rest.

        Only the version policy decides what is loaded, as in TF Serving: a
        label on a version outside the policy does not load it. A load runs
        on its own thread, one at a time and the newest wanted version first,
        as TF Serving's manager loads apart from its config poll: a config
        re-read (a rollback's labels) is not held up for the minutes a large
        version takes, and a burst of pushes loads no version already
        superseded. `wait`: until every wanted version is loaded or failed.
        """
        while not self.retired:
            on_disk = self._on_disk()
            base = self.base
            for v, (fp, _msg) in list(self._failed.items()):
                if v not in on_disk or _fingerprint(base / str(v)) != fp:
                    del self._failed[v]  # rewritten or removed: worth another try
                    self._states.pop(v, None)
            loadable = [v for v in on_disk if v not in self._failed]
            wanted = self.spec.policy.select(loadable)
            self._start_next_load(wanted, base)
            self._unload_unwanted(wanted, bool(loadable))
            if not wait or not self._loading:
                return
            for thread in list(self._loading.values()):
                thread.join()

    def _start_next_load(self, wanted: set[int], base: Path) -> None:
        """The newest wanted version not loaded yet, unless a load is under way (it starts the next one)."""
        with self._start_lock:
            pending = sorted(wanted - set(self._available) - set(self._loading), reverse=True)
            if self.retired or not pending or self._loading:
                return
            version = pending[0]
            self._states[version] = VersionState(version, "LOADING")
            self._loading[version] = thread = threading.Thread(
                target=self._load, args=(version, base), name=f"load-{self.name}-{version}", daemon=True)
            thread.start()

    def _unload_unwanted(self, wanted: set[int], loadable: bool) -> None:
        available = set(self._available)
        if not wanted & available and available and loadable:
            keep = {max(available)}  # nothing wanted is up yet: the newest of the rest serves meanwhile
        else:
            keep = wanted
        for version in sorted(available - keep):
            self._unload(version)

    def _load(self, version: int, base: Path) -> None:
        try:
            self._load_now(version, base)
        finally:
            with self._start_lock:
                self._loading.pop(version, None)
        # At once, as TF Serving's manager: the version this one replaces goes, and the next wanted one starts
        # loading without waiting for a poll.
        with contextlib.suppress(OSError, ValueError):
            wanted = self.spec.policy.select([v for v in self._on_disk() if v not in self._failed])
            self._unload_unwanted(wanted, True)
            self._start_next_load(wanted, self.base)

    def _load_now(self, version: int, base: Path) -> None:
        path = base / str(version)
        start = time.monotonic()
        try:
            servable = Servable(self.name, version, path)
            servable.warm_up()
        except Exception as exc:  # any load failure must leave the server up
            msg = f"failed to load {path}: {type(exc).__name__}: {first_line(exc)[:300]}"
            self._failed[version] = (_fingerprint(path), msg)
            self._states[version] = VersionState(version, "END", "UNKNOWN", msg)
            log.error("%s", msg)
            self._on_event(self.name, "load_failed", version, msg)
            return
        with self._lock:
            if self.retired or self._base_or_none() != base:  # left the config, or came back with other files
                self._states[version] = VersionState(version, "END")
                return
            self._available = {**self._available, version: servable}
            self._states[version] = VersionState(version, "AVAILABLE")
        log.info("model %s version %d available (%.1fs)", self.name, version, time.monotonic() - start)
        self._on_event(self.name, "loaded", version, "")

    def _base_or_none(self) -> Path | None:
        try:
            return self.base
        except ValueError:
            return None

    def _unload(self, version: int) -> None:
        with self._lock:
            if version not in self._available:  # the poller and a finished load may both drop it
                return
            self._available = {k: v for k, v in self._available.items() if k != version}
            self._states[version] = VersionState(version, "END")
        log.info("model %s version %d unloaded", self.name, version)
        self._on_event(self.name, "unloaded", version, "")

    def why_unavailable(self) -> str:
        errors = self._load_errors()
        return errors[0] if errors else f"no version to load under {self.spec.base_path}"

    def load_failed(self) -> bool:
        """A version failed to load: TF Serving's wait for the model ends there (its END state)."""
        return bool(self._load_errors())

    def _load_errors(self) -> list[str]:
        return [s.error_message for s in self._states.values() if s.error_message]

    def available_versions(self) -> list[int]:
        return sorted(self._available)

    def _labelled_version(self, label: str) -> int:
        if label not in self.spec.labels:
            # TF Serving: INVALID_ARGUMENT (REST 400), not NOT_FOUND.
            raise invalid(f"Unrecognized servable version label: {label}")
        return self.spec.labels[label]

    def resolve(self, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request names: latest, a version, or a label."""
        available = self._available
        if label is not None:
            version = self._labelled_version(label)
            if version not in available:
                raise not_found(f"label '{label}' of model '{self.name}' points to version {version}, which is not available")
        if version is None:
            if not available:
                raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({self.name})")
            return available[max(available)]
        if version not in available:
            raise not_found(f"Servable not found for request: Specific({self.name}, {version})")
        return available[version]

    def status(self, version: int | None = None) -> list[VersionState]:
        """Version states, newest first, as GetModelStatus reports them.

        There is no label argument: TF Serving's GetModelStatus reads only the
        name and version of the request's model spec, so a status request for
        /labels/<l> lists every version, whichever the label (get_model_status_impl.cc).
        Which version a label resolves to is in the label's metadata.
        """
        states = dict(self._states)
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {self.name}")
            return [states[version]]
        if not states:
            raise not_found(f"Could not find any versions of model {self.name}")
        return [states[v] for v in sorted(states, reverse=True)]


class Registry:
    """The models a server serves, polled from disk by one background thread.

    Every config (the first, each re-read of the config file, and a
    HandleReloadConfigRequest) goes through reload(), which takes it or refuses
    it whole by TF Serving's rules (server_core.cc, ReloadConfig).
    """

    def __init__(self, specs: list[ModelSpec], poll_seconds: float = 1.0,
                 on_event: Callable[[str, str, int, str], None] | None = None,
                 reload_config: Callable[[], list[ModelSpec] | None] | None = None,
                 config_poll_seconds: float = 0.0, allow_labels_for_unavailable: bool = False) -> None:
        self._on_event = on_event
        self.models: dict[str, ModelManager] = {}
        self.poll_seconds = poll_seconds
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self._reload_config, self._config_poll = reload_config, config_poll_seconds
        self._config_lock, self._poll_lock = threading.Lock(), threading.Lock()
        self._last_config_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reload(specs)

    def serves(self, name: str) -> bool:
        return name in self.models and not self.models[name].retired

    def model(self, name: str) -> ModelManager:
        if not self.serves(name):
            raise not_found(f"Servable not found for request: Latest({name})")
        return self.models[name]

    def model_states(self, name: str, version: int | None = None) -> list[VersionState]:
        """GetModelStatus: an unknown model is "Could not find any versions", as one without versions."""
        if name not in self.models:
            raise not_found(f"Could not find any versions of model {name}")
        return self.models[name].status(version)

    def _check_labels(self, specs: list[ModelSpec]) -> None:
        """TF Serving's UpdateModelVersionLabelMap: a label may point only at a version loaded now.

        With allow_labels_for_unavailable (--allow_version_labels_for_unavailable_models)
        a label that is new, or keeps its version, may point at one not loaded yet;
        a label moved to another version never may, so that requests for it never
        find the version still loading.
        """
        for spec in specs:
            live = self.serves(spec.name)
            available = set(self.models[spec.name].available_versions()) if live else set()
            current = self.models[spec.name].spec.labels if live else {}
            for label, version in sorted(spec.labels.items()):
                if version in available:
                    continue
                if self.allow_labels_for_unavailable and current.get(label, version) == version:
                    continue
                raise ServingError("FAILED_PRECONDITION", f"Request to assign label to version {version} of model "
                                   f"{spec.name}, which is not currently available for inference")

    def reload(self, specs: list[ModelSpec]) -> list[str]:
        """Take a new config whole, or raise and keep the previous one whole; returns the models it adds.

        Models left out of it are unloaded, as TF Serving tears them down.
        """
        with self._config_lock, self._poll_lock:  # a version loading now must not land in a retired model
            for spec in specs:
                try:
                    local_folder(spec.base_path, f"model '{spec.name}': base_path")
                except ValueError as error:
                    raise invalid(str(error)) from None
            self._check_labels(specs)
            added = [s.name for s in specs if not self.serves(s.name)]
            for spec in specs:
                if spec.name in self.models:
                    self.models[spec.name].update_spec(spec)
                else:
                    self.models[spec.name] = ModelManager(spec, self._on_event)
            kept = {s.name for s in specs}
            for name, manager in self.models.items():
                if name not in kept and not manager.retired:
                    manager.retire()
            return added

    def reload_and_load(self, specs: list[ModelSpec], waiting: Callable[[], bool] = lambda: False) -> None:
        """HandleReloadConfigRequest: reload(), then load at once; UNKNOWN names each added model left unservable.

        An added model with no version yet is waited for, as TF Serving waits,
        while `waiting()` says the caller still is (a gRPC client until its
        deadline); its versions then come from the regular disk poll. A model
        whose version failed to load ends the wait. The config stays taken
        either way (TF Serving's ReloadConfig also waits for new models only
        after taking the config); polling goes on.
        """
        added = self.reload(specs)
        self.poll_once()  # the loads go on in the background; the added models are waited for below
        while True:
            down = [name for name in added if not self.models[name].available_versions()]
            pending = [name for name in down if not (self.models[name].load_failed() or self.models[name].retired)]
            if not pending or not waiting():
                break
            time.sleep(0.05)
        if down:
            reasons = [f"{{{name}: {self.models[name].why_unavailable()}}}" for name in down]
            raise ServingError("UNKNOWN", f"{len(down)} model(s) did not become available: {{{', '.join(reasons)}}}")

    def poll_once(self, wait: bool = False) -> None:
        with self._poll_lock:
            for manager in list(self.models.values()):
                try:
                    manager.poll(wait)
                except Exception:  # a poll bug must not kill the poller
                    log.exception("polling model %s failed", manager.name)

    def _apply_config(self) -> None:
        """Re-read the config file; a refused one is logged (once per cause) and the previous one kept."""
        try:
            specs = self._reload_config() if self._reload_config else None
            if specs is not None:
                self.reload(specs)
            self._last_config_error = ""
        except Exception as exc:
            message = exc.message if isinstance(exc, ServingError) else str(exc)
            if message != self._last_config_error:
                log.error("model config not reloaded, keeping the previous one: %s", message)
            self._last_config_error = message

    def _run(self) -> None:
        """Disk polls and config re-reads on their own timers, as TF Serving's: either may be off (0).

        A config re-read is followed by a disk poll even when disk polling is
        off, as TF Serving's storage path source polls on a config update.
        """
        config_poll = self._config_poll if self._reload_config else 0.0
        tick = min(t for t in (self.poll_seconds, config_poll, math.inf) if t > 0)
        next_config = time.monotonic() + config_poll
        while not self._stop.wait(tick):
            reread = config_poll > 0 and time.monotonic() >= next_config
            if reread:
                self._apply_config()
                next_config = time.monotonic() + config_poll
            if reread or self.poll_seconds > 0:
                self.poll_once()

    def start(self) -> None:
        """Load what is on disk now, then keep polling in the background."""
        self.poll_once(wait=True)
        if self.poll_seconds > 0 or (self._reload_config and self._config_poll > 0):
            self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def metadata(self, servable: Servable) -> dict[str, Any]:
        """GetModelMetadata's JSON: the version's signature defs."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for k, v in servable.signature_defs.items():
            sig_map.signature_def[k].CopyFrom(v)
        return {
            "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": json_format.MessageToDict(sig_map, preserving_proto_field_name=True)},
        }
