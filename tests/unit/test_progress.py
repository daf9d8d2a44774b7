"""Live progress read from a real (SQLite) MLMD store while "a runner" writes to it."""
from __future__ import annotations

import io

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline.progress import ProgressMonitor


class _Writer:
    """Writes MLMD records the way TFX's LocalDagRunner does: run context, node contexts, executions."""

    def __init__(self, path: str) -> None:
        config = mlmd.ConnectionConfig()
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.run_type = self.store.put_context_type(mlmd.ContextType(name="pipeline_run"))
        self.node_type = self.store.put_context_type(mlmd.ContextType(name="node"))
        self.exec_type = self.store.put_execution_type(mlmd.ExecutionType(name="Component"))

    def new_run(self, name: str) -> int:
        return self.store.put_contexts([mlmd.Context(type_id=self.run_type, name=name)])[0]

    def start(self, run: int, node: str) -> mlmd.Execution:
        found = self.store.get_context_by_type_and_name("node", f"taxi.{node}")  # shared by runs, as in TFX
        [node_id] = [found.id] if found else self.store.put_contexts([mlmd.Context(type_id=self.node_type,
                                                                                   name=f"taxi.{node}")])
        execution = mlmd.Execution(type_id=self.exec_type, last_known_state=mlmd.Execution.RUNNING)
        [execution.id] = self.store.put_executions([execution])
        self.store.put_attributions_and_associations(
            [], [mlmd.Association(context_id=c, execution_id=execution.id) for c in (run, node_id)])
        return execution

    def end(self, execution: mlmd.Execution, state: int) -> None:
        [current] = self.store.get_executions_by_id([execution.id])
        current.last_known_state = state
        self.store.put_executions([current])


def test_plain_lines_without_a_tty_for_the_new_run_only(tmp_path) -> None:
    path = str(tmp_path / "metadata.sqlite")
    writer = _Writer(path)
    old = writer.new_run("old-run")
    writer.end(writer.start(old, "CsvExampleGen"), mlmd.Execution.COMPLETE)
    console = io.StringIO()
    monitor = ProgressMonitor(path, console, tty=False)
    monitor._known_runs = monitor._existing_runs()  # what __enter__ records, without the thread
    run = writer.new_run("new-run")
    gen = writer.start(run, "CsvExampleGen")
    monitor.poll()
    writer.end(gen, mlmd.Execution.CACHED)
    trainer = writer.start(run, "Trainer")
    monitor.poll()
    writer.end(trainer, mlmd.Execution.FAILED)
    monitor.poll()
    monitor.poll()  # nothing new: nothing printed twice
    lines = [line.split() for line in console.getvalue().splitlines()]
    assert [line[:2] for line in lines] == [["CsvExampleGen", "started"], ["CsvExampleGen", "cached"],
                                            ["Trainer", "started"], ["Trainer", "failed"]]


def test_tty_redraws_one_line_and_clears_it(tmp_path) -> None:
    path = str(tmp_path / "metadata.sqlite")
    writer = _Writer(path)
    console = io.StringIO()
    with ProgressMonitor(path, console, interval=0.05, tty=True) as monitor:
        run = writer.new_run("run")
        execution = writer.start(run, "Transform")
        import time

        deadline = time.time() + 10
        while "> Transform" not in console.getvalue() and time.time() < deadline:
            time.sleep(0.05)
        writer.end(execution, mlmd.Execution.COMPLETE)
    text = console.getvalue()
    assert "\r\033[K> Transform" in text
    assert "Transform" in text.split("\n")[-2] and "ran" in text.split("\n")[-2]
    assert text.endswith("\n") and not monitor._live


def test_missing_store_is_not_an_error(tmp_path) -> None:
    console = io.StringIO()
    with ProgressMonitor(str(tmp_path / "none.sqlite"), console, interval=0.05, tty=False):
        pass
    assert console.getvalue() == ""
