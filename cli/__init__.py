"""The `taxi` command line: run, runs, report, lineage, serve, predict, vertex."""
