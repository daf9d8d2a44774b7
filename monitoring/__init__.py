"""Monitoring and continuous training: skew on served traffic, retrain trigger, canary labels.

Reads statistics, the schema, request logs and MLMD; starts pipeline runs only
through local_runner.py, the entry point a person uses.
"""
