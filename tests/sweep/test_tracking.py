"""What a trial's live W&B run sends (pure): the metrics.jsonl lines not sent yet, as one batch."""

from __future__ import annotations

from imlsweep.sweep.tracking import Sent, rows_to_send


def test_rows_to_send_sends_each_step_once_and_late_keys_again():
    lines = [{"step": 1, "loss": 3.0, "epoch": 0}, {"step": 2, "loss": 2.5, "epoch": 0, "resumed": True}]
    rows, sent = rows_to_send(lines, Sent())
    assert rows == [{"step": 1, "loss": 3.0, "epoch": 0}, {"step": 2, "loss": 2.5, "epoch": 0}]  # numbers only
    assert sent == Sent(2, frozenset({"step", "loss", "epoch"}))
    assert rows_to_send(lines, sent) == ([], sent)  # nothing new: no batch
    # a validation after step 2 went out adds its scores to the line: that step goes again, now with them
    lines[1]["val/combined"] = 40.0
    rows, sent = rows_to_send(lines, sent)
    assert rows == [{"step": 2, "loss": 2.5, "epoch": 0, "val/combined": 40.0}]
    assert rows_to_send(lines, sent) == ([], sent)
    # a resumed attempt rewrites the file from its checkpoint (step 1) on: only the new steps go
    resumed = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 3, "loss": 2.0}, {"step": 4, "loss": 1.5}]
    rows, sent = rows_to_send(resumed, sent)
    assert [row["step"] for row in rows] == [3, 4] and sent.step == 4
