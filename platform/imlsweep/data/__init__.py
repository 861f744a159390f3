"""Prompt encodings, sampling and mixing, tokenization and packing on Ray Data."""
