"""Checks a label change needs (blessed in MLMD, loaded by the server) and the canary's health.

TF Serving refuses a label on a version it has not loaded, and a label on an
unblessed model would bypass the Evaluator: both are checked before a write.
Health for `promote --if-healthy` comes from the local server's Prometheus
metrics, which count requests per version. TF Serving's count them per model
only (/tensorflow/serving/request_count has model_name and status labels), so
against it the check says it cannot tell the canary apart and promotes nothing.
"""
from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable

import httpx

from monitoring.labels import LabelError, NothingToPromoteYet
from monitoring.lineage import LineageError, version_record

METRICS_PATH = "/monitoring/prometheus/metrics"


def blessed_check(output: str) -> callable:
    def check(version: int) -> None:
        try:
            record = version_record(output, version)
        except LineageError as error:
            raise LabelError(f"version {version}: {error}") from None
        if not record.blessed:
            raise LabelError(f"version {version} is not blessed by the Evaluator in MLMD; it cannot carry a label")
    return check


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _get(url: str, path: str, timeout: float = 5.0) -> httpx.Response:
    try:
        return httpx.get(f"{url.rstrip('/')}{path}", timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise LabelError(f"cannot reach the model server at {url} ({type(error).__name__}); "
                         "start it or pass --offline to skip the loaded check") from None


def version_state(url: str, model: str, version: int, timeout: float = 5.0) -> str:
    """The server's state for a version (AVAILABLE, LOADING, END, NOT_FOUND)."""
    return version_status(url, model, version, timeout)[0]


def version_status(url: str, model: str, version: int, timeout: float = 5.0) -> tuple[str, str]:
    """(state, load error): the error is the status message of a version whose load failed (END with an error
    code, as TF Serving reports it), '' otherwise."""
    answer = _get(url, f"/v1/models/{model}/versions/{version}", timeout)
    if answer.status_code == 404:
        return "NOT_FOUND", ""
    try:
        entry = answer.json()["model_version_status"][0] if answer.status_code == 200 else None
        state = str(entry["state"]) if entry else f"HTTP {answer.status_code}"
        status = (entry.get("status") or {}) if entry else {}
        code, message = str(status.get("error_code", "OK")), str(status.get("error_message", ""))
    except (ValueError, LookupError, TypeError, AttributeError):  # not TF Serving's answer
        return f"HTTP {answer.status_code}", ""
    failed = state == "END" and code not in ("OK", "0")  # "0": the enum's number, as some clients write it
    return state, (message or code) if failed else ""


@dataclasses.dataclass
class ModelServer:
    """The server a label move waits for (labels.Server): what it has loaded, and waiting for a load.

    With absent_ok (the runner after a push), nothing listening at a local URL,
    or a server that does not serve the model, counts as no server: none
    applies the config now, and one that starts later reads every label as
    new. Anything else unclear (a remote host not answering, a timeout) is an
    error, never a guess.
    """

    url: str
    model: str
    wait_s: float
    absent_ok: bool = False
    announce: Callable[[int], None] | None = None  # told the version before a wait starts

    def present(self) -> bool:
        try:
            answer = httpx.get(f"{self.url.rstrip('/')}/v1/models/{self.model}", timeout=5)
        except httpx.ConnectError as error:
            if self.absent_ok and httpx.URL(self.url).host in LOCAL_HOSTS:
                return False
            raise LabelError(f"cannot reach the model server at {self.url} ({type(error).__name__}); "
                             "start it, or pass --offline if no server reads this config now") from None
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise LabelError(f"cannot reach the model server at {self.url} ({type(error).__name__})") from None
        if answer.status_code == 404:
            if self.absent_ok:
                return False
            raise LabelError(f"the server at {self.url} does not serve model '{self.model}'")
        return True

    def holds(self, version: int) -> bool:
        """Loaded, or loading (a server just started): a label kept on it is one the server already has."""
        return version_state(self.url, self.model, version) in ("AVAILABLE", "LOADING")

    def loaded(self, version: int) -> bool:
        """Available: a label moves to it in one write."""
        return version_state(self.url, self.model, version) == "AVAILABLE"

    def label_version(self, label: str) -> int | None:
        return label_version(self.url, self.model, label)

    def failed(self, version: int) -> bool:
        """The server reports the version's load failed (END with an error), or cannot be asked now."""
        try:
            return bool(version_status(self.url, self.model, version)[1])
        except LabelError:
            return True

    def wait_loaded(self, version: int, failed_before: bool = False) -> bool:
        """True once the version is AVAILABLE; False when the wait ran out. A load that fails during the wait
        (END with an error) is a LabelError at once: it will not load, however long one waits. With
        failed_before (the server reported a failure before the pin was written), an END with an error is an
        old attempt until the server is seen trying again (missing or loading)."""
        if self.announce is not None:
            self.announce(version)
        tried = [not failed_before]

        def loaded() -> bool:
            try:
                state, error = version_status(self.url, self.model, version)
            except LabelError:  # a server restarted during the wait: not loaded yet, not the end of the wait
                return False
            if state == "END" and error and tried[0]:
                raise LabelError(f"the server at {self.url} failed to load version {version}: {error}")
            tried[0] = tried[0] or state in ("NOT_FOUND", "LOADING")
            return state == "AVAILABLE"

        return _poll_until(loaded, self.wait_s)


def _poll_until(condition: Callable[[], bool], seconds: float) -> bool:
    """True as soon as `condition` holds, asked every 0.5 s; False once `seconds` have passed without."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


def loaded_check(url: str, model: str) -> callable:
    def check(version: int) -> None:
        state = version_state(url, model, version)
        if state != "AVAILABLE":
            raise LabelError(f"version {version} is not loaded by the server at {url} (state {state}); "
                             "a label on it would be refused")
    return check


def all_checks(*checks: callable) -> callable:
    def check(version: int) -> None:
        for one in checks:
            one(version)
    return check


def wait_for_label(url: str, model: str, label: str, version: int, seconds: float = 120.0) -> bool:
    """True once the server answers the label with the version (it polls its config file).

    Asked of the label's metadata, whose model_spec names the version the label
    resolves to among the loaded ones: TF Serving's model status ignores a
    label and lists every version.
    """
    return _poll_until(lambda: label_version(url, model, label) == version, seconds)


def label_version(url: str, model: str, label: str) -> int | None:
    """The version the server's `label` resolves to among its loaded ones (the label's metadata, whose model_spec
    names it), or None: no such label, no answer, or no server."""
    try:
        answer = httpx.get(f"{url.rstrip('/')}/v1/models/{model}/labels/{label}/metadata", timeout=5)
        return int(answer.json()["model_spec"]["version"]) if answer.status_code == 200 else None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclasses.dataclass
class Health:
    """What the canary served, from the Prometheus counters and latency histogram."""

    requests: int
    errors: int
    p95_seconds: float | None

    def verdict(self, min_requests: int, max_error_rate: float, max_p95_seconds: float) -> tuple[bool | None, str]:
        """(True, what it served) healthy; (False, the bound it failed) not; (None, how far it is) too few requests
        to judge yet."""
        if self.requests < min_requests:
            return None, f"only {self.requests} of {min_requests} requests served so far ({self.errors} errors)"
        rate = self.errors / self.requests
        if rate > max_error_rate:
            return False, f"error rate {rate:.3%} > {max_error_rate:.3%}"
        if self.p95_seconds is not None and self.p95_seconds > max_p95_seconds:
            return False, f"p95 latency {self.p95_seconds * 1000:.1f} ms > {max_p95_seconds * 1000:.1f} ms"
        return True, f"{self.requests} requests, {self.errors} errors, p95 {(self.p95_seconds or 0) * 1000:.1f} ms"


_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$')


def _labels(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def health(url: str, model: str, version: int) -> Health:
    """Requests, non-OK answers and p95 latency of one version since the server started."""
    try:
        text = httpx.get(url.rstrip("/") + METRICS_PATH, timeout=5).text
    except httpx.HTTPError as error:
        raise LabelError(f"cannot read metrics from {url}: {type(error).__name__}") from None
    if "serving_requests_total" not in text:
        raise LabelError(f"the server at {url} has no per-version request counts (TF Serving counts per model); "
                         "judge the canary from your own monitoring and promote without --if-healthy")
    requests = errors = 0
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if not match:
            continue
        labels = _labels(match["labels"])
        if labels.get("model") != model or labels.get("version") != str(version):
            continue
        value = float(match["value"])
        if match["name"] == "serving_requests_total":
            requests += int(value)
            # CANCELLED: the client hung up before its request was whole; not the version's failure.
            if labels.get("status", "OK") not in ("OK", "200", "CANCELLED"):
                errors += int(value)
        elif match["name"] == "serving_request_latency_seconds_bucket":
            bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    p95 = None
    if buckets and buckets.get(float("inf"), 0) > 0:
        total = buckets[float("inf")]
        p95 = next(bound for bound in sorted(buckets) if buckets[bound] >= 0.95 * total)
    return Health(requests, errors, p95)


def healthy_check(url: str, model: str, min_requests: int, max_error_rate: float, max_p95_seconds: float) -> callable:
    """Refuses a version that served min_requests with too many errors or too slowly; one that has not served
    them yet is NothingToPromoteYet."""
    def check(version: int) -> None:
        ok, why = health(url, model, version).verdict(min_requests, max_error_rate, max_p95_seconds)
        if ok is None:
            raise NothingToPromoteYet(f"version {version} cannot be judged yet at {url}: {why}")
        if not ok:
            raise LabelError(f"version {version} is not healthy enough at {url}: {why}")
    return check
