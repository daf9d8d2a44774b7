"""Prometheus metrics, named after what TF Serving's /monitoring endpoint shows.

A registry per server instance (not the global one) so tests can run several
servers in one process without clashing series.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
LABELS = ("model", "version", "signature", "method", "protocol", "status")


class Metrics:
    """Request count and latency per model/version/signature/status."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "serving_requests", "Requests answered, by outcome.", LABELS, registry=self.registry
        )
        self.latency = Histogram(
            "serving_request_latency_seconds", "Time from parsed request to answer.", LABELS,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_rows = Histogram(
            "serving_request_rows", "Rows per request.", ("model",),
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry,
        )
        self.model_events = Counter(
            "serving_model_events", "Version loads, unloads and load failures.", ("model", "event"),
            registry=self.registry,
        )
        self.available = Gauge(
            "serving_model_versions_available", "Versions loaded and serving.", ("model",), registry=self.registry
        )
        self.request_log_dropped = Counter(
            "serving_request_log_dropped", "Sampled request records dropped: the writer fell behind, or a write failed.",
            registry=self.registry,
        )

    def observe(self, model: str, version: str, signature: str, method: str, protocol: str,
                status: str, seconds: float) -> None:
        labels = (model, version, signature, method, protocol, status)
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def value(self, name: str) -> int:
        """A sample's value by its exposition name (`serving_model_events_total`), summed over its labels;
        0 for a name not exported, as TF Serving answers ReloadConfig's metric_names for a metric it lacks."""
        return int(sum(sample.value for family in self.registry.collect()
                       for sample in family.samples if sample.name == name))

    def render(self) -> bytes:
        return generate_latest(self.registry)
