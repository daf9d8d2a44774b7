"""What submit and schedule create send and print around the run itself.
The SDK is the real one; only the network is fake (tests/unit/test_vertex_jobs.py)."""
from __future__ import annotations

from pathlib import Path

import vertex_runner
from tests.unit.test_vertex_jobs import TARGET, FakeChannel, template, vertex  # noqa: F401 - fixtures


def test_the_cron_is_sent_as_checked(vertex: FakeChannel, template: Path) -> None:  # noqa: F811
    """It was checked with its spaces collapsed but sent as typed, tabs and all."""
    args = ["schedule", "create", *TARGET, "--template", str(template), "--cron", " TZ=UTC\t0  3 * *\u00a0* "]
    assert vertex_runner.main(args) == 0
    assert vertex.named("CreateSchedule")[0].schedule.cron == "TZ=UTC 0 3 * * *"
