"""The document model: what views observe, which label wins, and stale results dropped."""

from __future__ import annotations

import pytest

from chromodesk.core.document import Box, ChromosomeRecord, Event, Karyotype
from chromodesk.core.labels import CLASSES


def onehot(label: str, p: float = 0.9) -> list[float]:
    probs = [(1.0 - p) / (len(CLASSES) - 1)] * len(CLASSES)
    probs[CLASSES.index(label)] = p
    return probs


@pytest.fixture
def doc() -> Karyotype:
    return Karyotype("cell.jpg", "0" * 64, width=100, height=80)


@pytest.fixture
def events(doc) -> list[Event]:
    seen: list[Event] = []
    doc.subscribe(seen.append)
    return seen


# -- boxes ---------------------------------------------------------------------------------
def test_box_geometry():
    box = Box(10, 20, 40, 30)
    assert (box.width, box.height, box.area) == (30, 10, 300)
    assert not box.is_empty()
    assert Box(5, 5, 5, 9).is_empty() and Box(9, 5, 5, 9).is_empty()
    assert Box(9, 5, 5, 9).area == 0
    assert Box(-3, -2, 120, 50).clipped(100, 40) == Box(0, 0, 100, 40)
    assert box.as_list() == [10, 20, 40, 30]


def test_iou():
    a = Box(0, 0, 10, 10)
    assert a.iou(a) == 1.0
    assert a.iou(Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 30, 30)) == 0.0
    assert Box(0, 0, 0, 0).iou(Box(0, 0, 0, 0)) == 0.0


# -- events ----------------------------------------------------------------------------------
def test_every_edit_emits_one_event(doc, events):
    record = doc.add(Box(1, 1, 10, 10))
    doc.set_prediction(record.id, onehot("7"), "m1")
    doc.set_final(record.id, "7", "ana")
    doc.set_box(record.id, Box(2, 2, 12, 12))
    doc.remove(record.id)
    assert events == [
        Event("added", record.id), Event("prediction", record.id), Event("label", record.id),
        Event("box", record.id), Event("removed", record.id),
    ]
    assert doc.revision == 5


def test_unsubscribe_stops_events(doc):
    seen = []
    unsubscribe = doc.subscribe(seen.append)
    doc.add(Box(1, 1, 10, 10))
    unsubscribe()
    doc.add(Box(1, 1, 10, 10))
    assert len(seen) == 1


def test_listener_may_unsubscribe_while_being_notified(doc):
    seen = []

    def once(event):
        seen.append(event)
        unsubscribe()

    unsubscribe = doc.subscribe(once)
    later = []
    doc.subscribe(later.append)
    doc.add(Box(1, 1, 10, 10))
    doc.add(Box(1, 1, 10, 10))
    assert len(seen) == 1 and len(later) == 2


# -- adding and removing ----------------------------------------------------------------------
def test_add_assigns_fresh_ids_and_clips_to_the_image(doc):
    first = doc.add(Box(-5, -5, 20, 20))
    second = doc.add(Box(90, 70, 150, 150))
    assert (first.id, second.id) == ("c01", "c02")
    assert first.box == Box(0, 0, 20, 20) and second.box == Box(90, 70, 100, 80)
    assert len(doc) == 2 and [r.id for r in doc] == ["c01", "c02"]


def test_new_id_skips_ids_in_use(doc):
    doc.add(Box(1, 1, 5, 5), record_id="c01")
    assert doc.add(Box(1, 1, 5, 5)).id == "c02"


def test_duplicate_id_is_refused(doc, events):
    doc.add(Box(1, 1, 5, 5), record_id="a")
    with pytest.raises(ValueError, match="duplicate chromosome id a"):
        doc.add(Box(1, 1, 5, 5), record_id="a")
    assert len(doc) == 1 and len(events) == 1


def test_remove_and_restore(doc, events):
    record = doc.add(Box(1, 1, 10, 10), file_label="3", file_name="A3")
    doc.set_final(record.id, "3", "ana", when="2024-01-01T00:00:00+00:00")
    removed = doc.remove(record.id)
    assert len(doc) == 0
    doc.restore(removed)
    back = doc.get(record.id)
    assert (back.box, back.final, back.confirmed_by, back.file_name) == (Box(1, 1, 10, 10), "3", "ana", "A3")
    assert events[-1] == Event("added", record.id)


# -- predictions -------------------------------------------------------------------------------
def test_set_prediction_stores_probabilities_and_top_label(doc):
    record = doc.add(Box(1, 1, 10, 10))
    assert doc.set_prediction(record.id, onehot("X", 0.8), "model-a") is True
    assert record.predicted == "X" and record.model_id == "model-a"
    assert record.confidence == pytest.approx(0.8)
    assert len(record.probabilities) == 24
    assert [label for label, _ in record.top_k(3)][0] == "X"


def test_prediction_for_a_moved_box_is_ignored(doc, events):
    record = doc.add(Box(1, 1, 10, 10))
    started_at = record.box_revision  # a classification job starts...
    doc.set_box(record.id, Box(3, 3, 15, 15))  # ...the user moves the box meanwhile
    before = len(events)
    assert doc.set_prediction(record.id, onehot("7"), "m", box_revision=started_at) is False
    assert record.predicted is None and record.probabilities is None
    assert len(events) == before  # nothing changed, nothing announced
    assert doc.set_prediction(record.id, onehot("7"), "m", box_revision=record.box_revision) is True
    assert record.predicted == "7"


def test_prediction_for_a_removed_chromosome_is_ignored(doc):
    record = doc.add(Box(1, 1, 10, 10))
    doc.remove(record.id)
    assert doc.set_prediction(record.id, onehot("7"), "m") is False


def test_set_box_clears_predictions_but_not_the_confirmed_label(doc):
    record = doc.add(Box(1, 1, 10, 10))
    doc.set_prediction(record.id, onehot("7"), "m")
    doc.set_assignments({record.id: "8"})
    doc.set_final(record.id, "9", "ana")
    doc.set_box(record.id, Box(2, 2, 40, 40))
    assert (record.predicted, record.probabilities, record.assigned) == (None, None, None)
    assert record.box_revision == 1 and record.box == Box(2, 2, 40, 40)
    assert record.final == "9" and record.confidence is None


def test_set_assignments_ignores_unknown_ids(doc, events):
    record = doc.add(Box(1, 1, 10, 10))
    doc.set_assignments({record.id: "5", "gone": "6"})
    assert record.assigned == "5"
    assert events[-1] == Event("prediction", None)


# -- labels --------------------------------------------------------------------------------------
def test_label_precedence_final_assigned_predicted_file(doc):
    record = doc.add(Box(1, 1, 10, 10), file_label="1", file_name="A1")
    assert record.label == "1"
    doc.set_prediction(record.id, onehot("2"), "m")
    assert record.label == "2" and record.suggested == "2"
    doc.set_assignments({record.id: "3"})
    assert record.label == "3" and record.suggested == "3"
    assert record.confidence == pytest.approx(0.1 / 23)  # the confidence of what is suggested
    doc.set_final(record.id, "4", "ana")
    assert record.label == "4" and record.confirmed
    doc.set_final(record.id, None, "ana")  # unconfirm
    assert record.label == "3" and not record.confirmed
    assert (record.confirmed_by, record.confirmed_at) == (None, None)


def test_set_final_records_who_and_when(doc):
    record = doc.add(Box(1, 1, 10, 10))
    doc.set_final(record.id, "X", "ana", when="2024-05-06T07:08:09+00:00")
    assert (record.final, record.confirmed_by, record.confirmed_at) == ("X", "ana", "2024-05-06T07:08:09+00:00")
    doc.set_final(record.id, "Y", "bo")
    assert record.confirmed_by == "bo" and record.confirmed_at.endswith("+00:00")  # UTC timestamp by default


def test_set_final_refuses_unknown_labels(doc, events):
    record = doc.add(Box(1, 1, 10, 10))
    with pytest.raises(ValueError, match="unknown label '23'"):
        doc.set_final(record.id, "23", "ana")
    assert record.final is None and len(events) == 1


def test_unknown_file_name_is_flagged():
    assert ChromosomeRecord("a", Box(0, 0, 1, 1), file_label=None, file_name="marker").unknown_name
    assert not ChromosomeRecord("b", Box(0, 0, 1, 1), file_label="7", file_name="C7").unknown_name
    assert not ChromosomeRecord("c", Box(0, 0, 1, 1)).unknown_name  # drawn by hand: no name to question


# -- summaries ---------------------------------------------------------------------------------------
def test_counts_and_unreviewed(doc):
    a = doc.add(Box(1, 1, 5, 5), file_label="21")
    b = doc.add(Box(1, 1, 5, 5), file_label="21")
    c = doc.add(Box(1, 1, 5, 5))
    doc.set_prediction(c.id, onehot("21"), "m")
    d = doc.add(Box(1, 1, 5, 5), file_name="marker")  # unknown: counted nowhere
    doc.set_final(b.id, "X", "ana")
    counts = doc.counts()
    assert set(counts) == set(CLASSES)
    assert counts["21"] == 2 and counts["X"] == 1 and sum(counts.values()) == 3
    assert [r.id for r in doc.unreviewed()] == [a.id, c.id, d.id]
