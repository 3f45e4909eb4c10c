"""A box that holds no chromosome: out of the counts, the karyotype, the karyogram and the VOC export,
kept in the session, and brought back by one word from the technician."""

from __future__ import annotations

import csv
import io

from chromodesk.core.document import Box, Karyotype
from chromodesk.core.export import csv_text, record_state
from chromodesk.core.karyotype import iscn_string
from chromodesk.core.labels import CLASSES
from chromodesk.core.session import load_session, save_session
from chromodesk.core.voc import voc_bytes


def one_hot(label: str, p: float = 0.95) -> list[float]:
    probs = [(1 - p) / (len(CLASSES) - 1)] * len(CLASSES)
    probs[CLASSES.index(label)] = p
    return probs


def normal_cell_plus_debris() -> Karyotype:
    """46 chromosomes of a 46,XY cell and one box on debris that the classifier calls a 22."""
    doc = Karyotype("/cells/1.png", "ab" * 32, 2000, 2000)
    labels = [c for c in CLASSES[:22] for _ in range(2)] + ["X", "Y"]
    for i, label in enumerate(labels):
        r = doc.add(Box(10 + 40 * (i % 40), 10 + 60 * (i // 40), 40 + 40 * (i % 40), 60 + 60 * (i // 40)))
        doc.set_prediction(r.id, one_hot(label), "m", reject_probability=0.01, rejected=False)
        doc.set_assignments({r.id: label})
    debris = doc.add(Box(1500, 1500, 1530, 1550))
    doc.set_prediction(debris.id, one_hot("22", 0.99), "m", reject_probability=0.97, rejected=True)
    return doc


def test_a_rejected_box_is_out_of_counts_and_karyotype():
    doc = normal_cell_plus_debris()
    debris = list(doc)[-1]
    assert debris.rejected and debris.label is None and record_state(debris) == "rejected"
    assert iscn_string(doc.counts()) == "46,XY"
    assert len(doc.chromosomes()) == 46 and len(doc) == 47


def test_labelling_it_brings_it_back_and_the_technician_can_reject_any_box():
    doc = normal_cell_plus_debris()
    debris = list(doc)[-1]
    doc.set_final(debris.id, "21", "tech")
    assert not debris.rejected and debris.label == "21" and debris.excluded is False
    assert iscn_string(doc.counts()) == "47,XY,+21"
    first = list(doc)[0]
    doc.set_excluded(first.id, True)
    assert first.rejected and first.final is None and doc.counts()["1"] == 1
    doc.set_excluded(first.id, None)  # back to the classifier's word
    assert not first.rejected


def test_a_moved_box_loses_its_old_rejection():
    doc = normal_cell_plus_debris()
    debris = list(doc)[-1]
    doc.set_box(debris.id, Box(1400, 1400, 1430, 1460))
    assert not debris.rejected and debris.reject_probability is None


def test_session_keeps_the_decisions(tmp_path):
    doc = normal_cell_plus_debris()
    rid = list(doc)[3].id
    doc.set_excluded(rid, True)
    list(doc)[5].origin = "drawn"
    path = save_session(doc, tmp_path / "s.chromodesk.json")
    back = load_session(path)
    for a, b in zip(doc, back):
        assert (a.rejected, a.excluded, a.auto_rejected, a.reject_probability, a.origin) == \
               (b.rejected, b.excluded, b.auto_rejected, b.reject_probability, b.origin)
    assert iscn_string(back.counts()) == iscn_string(doc.counts())


def test_exports_say_not_a_chromosome_and_voc_leaves_it_out():
    doc = normal_cell_plus_debris()
    rows = list(csv.DictReader(io.StringIO(csv_text(doc))))
    assert rows[-1]["not_a_chromosome"] == "yes" and rows[-1]["final_label"] == "" and rows[-1]["reject_p"] == "0.9700"
    assert rows[0]["not_a_chromosome"] == "no"
    xml = voc_bytes(doc).decode()
    assert xml.count("<object>") == 46


def test_the_karyogram_says_how_much_was_reviewed_and_leaves_rejected_boxes_out():
    import numpy as np

    from chromodesk.core.export import layout_karyogram, review_status

    doc = normal_cell_plus_debris()
    assert review_status(doc) == "unreviewed: all 46 labels are software suggestions; model m"
    first = list(doc)[0]
    doc.set_final(first.id, first.label, "Dr. A", when="2026-11-30T10:00:00+00:00")
    assert review_status(doc).startswith("45 of 46 labels are unconfirmed suggestions; 1 confirmed by Dr. A")
    for r in doc.chromosomes():
        doc.set_final(r.id, r.label, "Dr. A", when="2026-11-30T10:05:00+00:00")
    assert review_status(doc) == "reviewed by Dr. A, last 2026-11-30 10:05 UTC; model m"
    gray = np.full((2000, 2000), 230, np.uint8)
    fig = layout_karyogram(doc, gray)
    debris = list(doc)[-1]
    assert debris.id not in fig.placements and len(fig.placements) <= 46
