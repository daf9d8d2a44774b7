"""`python -m cli ...` is the same as the `taxi` console script."""
from cli.main import entry

entry()
