"""The review figures in ``evaluate``: how much the technician must check, and what slips through."""

import numpy as np
import pytest

from training.metrics import review_triage


def test_review_triage_counts_sure_wrong_and_unsure_errors():
    probs = np.array([[0.95, 0.05], [0.92, 0.08], [0.60, 0.40], [0.30, 0.70], [0.97, 0.03]])
    labels = np.array([0, 1, 1, 1, 0])  # row 1 is sure and wrong, row 2 unsure and wrong
    t = review_triage(probs, labels, threshold=0.9)
    assert t["share_marked_sure"] == pytest.approx(3 / 5)
    assert t["error_among_sure"] == pytest.approx(1 / 3)
    assert t["errors_marked_unsure"] == pytest.approx(1 / 2)
