"""The local SQLite MLMD store, opened read-only: the one place that does it.

The run summary, the live progress line, `taxi runs/report/lineage` and
`make quality` all read the store a local run writes; a missing or damaged
file is a StoreError with one line saying what to do, never MLMD's traceback.
"""
from __future__ import annotations

import contextlib
import os
from urllib.parse import quote

SQLITE_HEADER = b"SQLite format 3\x00"
RUN_CONTEXT = "pipeline_run"
# MLMD's Execution.State numbers, in the words the summary, the progress line and the report use.
STATE_WORDS = {1: "new", 2: "running", 3: "ran", 4: "failed", 5: "cached", 6: "canceled"}


class StoreError(RuntimeError):
    """No usable MLMD store or no such run/version; the message says what to do."""


class StoreLocked(StoreError):
    """Another process holds a write lock on the store for longer than a run ever does."""


LOCK_WAIT_S = 10  # TFX's own writes hold the lock for milliseconds


@contextlib.contextmanager
def _sqlite(path: str, mode: str):  # noqa: ANN202 - Iterator[sqlite3.Connection]
    """A plain SQLite connection to the store (mode ro or rw), waiting LOCK_WAIT_S for a lock; StoreLocked when
    another process holds it that long (MLMD alone retries for ~50 s, then says "Concurrent writes aborted")."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{quote(path)}?mode={mode}", uri=True, timeout=LOCK_WAIT_S,
                                                isolation_level=None)) as db:
            yield db
    except sqlite3.OperationalError as error:
        if "locked" in str(error):
            raise StoreLocked(f"metadata store {path} is locked: another process has held a write transaction on "
                              f"it for over {LOCK_WAIT_S} s; try again when it ends") from None
        raise


def sqlite_problem(path: str) -> str | None:
    """Why an existing file cannot be an MLMD SQLite store, or None when it can (or does not exist yet)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        return f"metadata store {path} cannot be read: {error.strerror or error}"
    if header and header != SQLITE_HEADER:
        return f"metadata store {path} is not a SQLite database (damaged?)"
    return _damage(path) if header else None


def _damage(path: str) -> str | None:
    """SQLite's own quick_check, read-only: a file with a good header and a damaged body
    (cut short by a full disk or a copy) otherwise fails only inside MLMD, or not at all
    until a run has trained. Milliseconds for a store of many runs."""
    import sqlite3

    try:
        with _sqlite(path, "ro") as db:
            verdict = [row[0] for row in db.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError:
        return None  # not readable just now: no verdict, MLMD will say
    except sqlite3.DatabaseError as error:  # SQLITE_CORRUPT, SQLITE_NOTADB
        return f"metadata store {path} is damaged ({error})"
    if verdict != ["ok"]:
        return f"metadata store {path} is damaged (SQLite: {verdict[0]})"
    return None


def check_writable_now(path: str) -> None:
    """StoreLocked when another process holds a pending write on the store (a sqlite3 shell inside BEGIN, a DB
    browser with unsaved edits): readers pass it, but a run's first write fails after MLMD's retries."""
    import sqlite3

    if not os.path.isfile(path):
        return
    # Read-only or not openable: no verdict here, the run's own checks say so.
    with contextlib.suppress(sqlite3.OperationalError), _sqlite(path, "rw") as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")


def open_readonly(path: str):  # noqa: ANN201 - MetadataStore; ml_metadata is imported lazily
    from ml_metadata.proto import metadata_store_pb2

    if not os.path.isfile(path):
        raise StoreError(f"no MLMD store at {path}; run the pipeline first or pass --output")
    if os.path.getsize(path) == 0:
        raise StoreError(f"the MLMD store {path} is empty: no run recorded yet")
    problem = sqlite_problem(path)
    if problem:
        raise StoreError(problem)
    try:
        return _sqlite_store(path, metadata_store_pb2.SqliteMetadataSourceConfig.READONLY)
    except RuntimeError as error:
        raise StoreError(f"metadata store {path} cannot be opened: {str(error).splitlines()[0][:200]}") from None


def open_for_update(path: str):  # noqa: ANN201 - MetadataStore
    """The store of an existing SQLite file, to write to (MLMD's own errors as they are)."""
    from ml_metadata.proto import metadata_store_pb2

    return _sqlite_store(path, metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE)


def _sqlite_store(path: str, mode: int):  # noqa: ANN202 - MetadataStore
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = mode
    return metadata_store.MetadataStore(config)


def _oldest_first(items: list) -> list:
    return sorted(items, key=lambda item: (item.create_time_since_epoch, item.id))


def run_contexts(store) -> list:  # noqa: ANN001 - MetadataStore
    """The pipeline_run contexts, oldest first (a context's name is the run id)."""
    return _oldest_first(store.get_contexts_by_type(RUN_CONTEXT))


def executions_in_start_order(store, context_id: int) -> list:  # noqa: ANN001 - MetadataStore
    """The executions of one pipeline_run context, in start order."""
    return _oldest_first(store.get_executions_by_context(context_id))


def node_name(store, execution_id: int) -> str:  # noqa: ANN001 - MetadataStore
    """The pipeline node (component id) that ran an execution, '?' if MLMD has none."""
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == "node":
            return context.name.split(".", 1)[-1]
    return "?"


def cancel_failed_since(path: str, since: float) -> None:
    """Executions that failed since `since` (unix seconds) become CANCELED, as TFX's own cancellation records
    them: the component an interrupt stopped was FAILED, and `taxi runs` and the report said the run failed
    there, where a SIGKILL left it incomplete. Best effort: the interrupt is reported either way."""
    from ml_metadata.proto import metadata_store_pb2

    with contextlib.suppress(Exception):  # noqa: BLE001
        store = open_for_update(path)
        failed = [e for e in store.get_executions() if e.last_known_state == metadata_store_pb2.Execution.FAILED
                  and e.create_time_since_epoch >= since * 1000]
        for execution in failed:
            execution.last_known_state = metadata_store_pb2.Execution.CANCELED
        if failed:
            store.put_executions(failed)


def spans_the_gate_stopped(path: str, pipeline_name: str) -> set[int]:
    """The spans the data gate stopped in this store's runs of the pipeline and never let through since: those
    a failed DataGate judged (its statistics' Examples) and Transform never ran on. Empty when there is no store
    or it cannot be read now (a run then says why, through its own checks); StoreLocked when another process
    holds it."""
    from ml_metadata.proto import metadata_store_pb2

    if not os.path.isfile(path) or not os.path.getsize(path):
        return set()
    try:
        store = open_readonly(path)

        def executions(node: str, states: tuple) -> list[int]:
            context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node}")
            found = store.get_executions_by_context(context.id) if context else []
            return [e.id for e in found if e.last_known_state in states]

        def inputs(execution_ids: list[int], key: str) -> list[int]:
            return [e.artifact_id for e in store.get_events_by_execution_ids(execution_ids)
                    if e.type == metadata_store_pb2.Event.INPUT and any(s.key == key for s in e.path.steps)]

        def spans_of(artifact_ids: list[int]) -> set[int]:
            return {a.custom_properties["span"].int_value for a in store.get_artifacts_by_id(artifact_ids)
                    if "span" in a.custom_properties}

        done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
        passed = spans_of(inputs(executions("Transform", done), "examples"))
        statistics = inputs(executions("DataGate", (metadata_store_pb2.Execution.FAILED,)), "statistics")
        made_by = [e.execution_id for e in store.get_events_by_artifact_ids(statistics)
                   if e.type == metadata_store_pb2.Event.OUTPUT]
        return spans_of(inputs(made_by, "examples")) - passed
    except StoreLocked:
        raise
    except Exception:  # noqa: BLE001 - a store this cannot read is the run's checks' to name
        return set()
