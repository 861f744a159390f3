"""Seeded random streams keyed by what they are for, so one draw never shifts another.

`keyed_rng(seed, "delimiter", task_id, example_id)` gives the same stream for the same key on any
machine, in any process and in any order of evaluation (Python's `hash` is salted per process, so it
is not used).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def key_int(seed: int, *parts: object) -> int:
    digest = hashlib.blake2b(repr((seed, *parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def keyed_rng(seed: int, *parts: object) -> random.Random:
    return random.Random(key_int(seed, *parts))


def keyed_np_rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(key_int(seed, *parts))
