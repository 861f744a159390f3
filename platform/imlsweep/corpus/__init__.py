"""The consolidated task corpus: benchmark adapters, categories, splits, caps, leakage check, build."""
