"""sweeps/quickstart.yaml on the test session's built sample corpus (10 test items per task, where the
quickstart's own corpus config has 30), with one change."""

from __future__ import annotations

from pathlib import Path

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


def quickstart_copy(tmp_path: Path, corpus: Path, old: str = "", new: str = "") -> Path:
    """A copy of the quickstart spec whose corpus is the built `corpus`, with `old` replaced by `new`."""
    text = (SWEEPS / "quickstart.yaml").read_text().replace("corpora/superni_sample_quickstart.yaml", str(corpus))
    assert old in text
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace(old, new))
    return path
