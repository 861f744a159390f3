"""Ray Train worker loop, DeepSpeed config, model loading, checkpoints."""
