"""What the Vertex settings tests share: the smallest valid flags, and no VERTEX_* or Google settings from the shell."""
from __future__ import annotations

import os

import pytest

OK = ["--project", "my-proj-1", "--region", "us-central1"]
COMPILE = ["compile", *OK, "--bucket", "gs://taxi-ml"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VERTEX_") or name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_REGION"):
            monkeypatch.delenv(name)
