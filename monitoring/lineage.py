"""What MLMD knows about a pushed version: blessed?, trained on which span, Examples and statistics.

Reuses report.mlmd's lineage walk (the same one `taxi lineage` prints), so the
monitor compares served traffic with exactly the Examples that trained the
model in service, cache hits included.
"""
from __future__ import annotations

import dataclasses
import os

TRAINING_STATISTICS_NODE = "StatisticsGen"
EXAMPLE_GEN_NODE = "CsvExampleGen"


class LineageError(RuntimeError):
    """MLMD cannot answer for a version; the message says what is missing."""


class LineageBusy(LineageError):
    """Not now: another process holds the MLMD store locked."""


@dataclasses.dataclass
class VersionRecord:
    """One pushed version as MLMD recorded it."""

    version: int
    blessed: bool
    span: int | None
    statistics_uri: str | None  # StatisticsGen output over the training Examples
    examples_uri: str | None = None  # ExampleGen output the model was trained on
    input_fingerprint: str | None = None  # of the files that ExampleGen read (fingerprints.split_fingerprint)
    input_base: str | None = None  # the data folder as ExampleGen was given it (the fingerprint hashes paths)

    def examples_files(self, split: str = "train") -> list[str]:
        if not self.examples_uri:
            raise LineageError(f"no training examples recorded for version {self.version}")
        from monitoring.distances import split_files

        files = split_files(self.examples_uri, split)
        if not files:
            raise LineageError(f"training examples of version {self.version} are gone: "
                               f"{os.path.join(self.examples_uri, f'Split-{split}')}")
        return files

    def statistics_file(self, split: str = "train") -> str:
        if not self.statistics_uri:
            raise LineageError(f"no training statistics recorded for version {self.version}")
        path = os.path.join(self.statistics_uri, f"Split-{split}", "FeatureStats.pb")
        if not os.path.isfile(path):
            raise LineageError(f"training statistics of version {self.version} are gone: {path}")
        return path


def version_record(output: str, version: int) -> VersionRecord:
    """Blessing, span and training statistics of a pushed version, from <output>/metadata.sqlite."""
    from pipeline.mlmd_store import StoreLocked
    from report import mlmd

    try:
        store = mlmd.open_store(output)
        steps = mlmd.lineage(store, str(version))
    except StoreLocked as error:
        raise LineageBusy(str(error)) from None
    except mlmd.StoreError as error:
        raise LineageError(str(error)) from None
    blessed, span, stats, examples, read, base = False, None, None, None, None, None
    for step in steps:
        for artifact in step.inputs.get("model_blessing", []):
            blessed = blessed or bool(artifact["properties"].get("blessed"))
        if step.node == EXAMPLE_GEN_NODE:
            for artifact in step.outputs.get("examples", []):
                examples = artifact["uri"]
                value = artifact["properties"].get("span")
                span = int(value) if value is not None else span
                read = artifact["properties"].get("input_fingerprint", read)
                base = step.properties.get("input_base", base)
        if step.node == TRAINING_STATISTICS_NODE:
            for artifact in step.outputs.get("statistics", []):
                stats = artifact["uri"]
    return VersionRecord(int(version), blessed, span, stats, examples, read, base)
