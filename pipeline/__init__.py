"""The TFX pipeline definition: one create_pipeline(config) for every runner."""
