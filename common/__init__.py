"""Small helpers every room of the project uses; this package imports nothing else of the project."""
