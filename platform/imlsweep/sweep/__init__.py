"""Sweeps: YAML specs, grid expansion, stages, the Ray Tune driver, W&B tracking, results, resume."""
