"""Fixtures of the sweep tests."""

from __future__ import annotations

import contextlib

import pytest


@pytest.fixture
def ray_sessions(monkeypatch) -> list:
    """Every command reaches Ray through `ray_session`: each entry is recorded (and goes on to the real one),
    so a test sees whether a command got as far as Ray whatever earlier tests left running."""
    import imlsweep.ray_session as module

    entered, real = [], module.ray_session

    @contextlib.contextmanager
    def recorded(*args, **kwargs):
        entered.append(args)
        with real(*args, **kwargs):
            yield

    monkeypatch.setattr(module, "ray_session", recorded)
    return entered
