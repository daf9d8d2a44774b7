"""Running the pipeline on Vertex AI: settings, compile, submit and schedules (used by vertex_runner.py)."""
