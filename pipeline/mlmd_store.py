"""The local SQLite MLMD store, opened read-only: the one place that does it.

The run summary, the live progress line, `taxi runs/report/lineage` and
`make quality` all read the store a local run writes; a missing or damaged
file is a StoreError with one line saying what to do, never MLMD's traceback.
"""
from __future__ import annotations

import os

SQLITE_HEADER = b"SQLite format 3\x00"
RUN_CONTEXT = "pipeline_run"
# MLMD's Execution.State numbers, in the words the summary, the progress line and the report use.
STATE_WORDS = {1: "new", 2: "running", 3: "ran", 4: "failed", 5: "cached", 6: "canceled"}


class StoreError(RuntimeError):
    """No usable MLMD store or no such run/version; the message says what to do."""


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
    return None


def open_readonly(path: str):  # noqa: ANN201 - MetadataStore; ml_metadata is imported lazily
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    if not os.path.isfile(path):
        raise StoreError(f"no MLMD store at {path}; run the pipeline first or pass --output")
    problem = sqlite_problem(path)
    if problem:
        raise StoreError(problem)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    try:
        return metadata_store.MetadataStore(config)
    except RuntimeError as error:
        raise StoreError(f"metadata store {path} cannot be opened: {str(error).splitlines()[0][:200]}") from None


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
