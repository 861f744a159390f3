"""Fixtures for the report tests: a synthetic 961-style grid with known curves."""

from __future__ import annotations

import pandas as pd
import pytest
from report_synthetic import sample_efficiency_results


@pytest.fixture(scope="module")
def grid_results() -> pd.DataFrame:
    return sample_efficiency_results()
