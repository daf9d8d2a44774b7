"""One self-contained HTML report per pipeline run, plus `runs` and `lineage` from MLMD."""
