"""Evaluation: generation, rank classification, SuperNI-compatible metrics, the OPT-IML aggregation."""
