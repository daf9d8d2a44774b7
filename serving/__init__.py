"""TF-Serving-compatible serving for the pushed taxi SavedModels.

The production path is the official TF Serving image (see ``deploy/``); the
local server in this package speaks the same REST and gRPC API so that client
apps, contract tests and benchmarks run on machines without TF Serving.
"""
