"""Colours and texts shared by the views; the states are the export's, so screen and PNG agree."""

from __future__ import annotations

from PySide6.QtGui import QColor

from chromodesk.core.document import ChromosomeRecord
from chromodesk.core.export import STATE_COLOURS, record_state

SELECTED = QColor(255, 215, 0)
KNIFE = QColor(255, 60, 200)  # the knife line being drawn: unlike any box state
BRUSH_PAINT = QColor(0, 220, 255, 120)  # a brush stroke being painted (see-through: the chromosome shows)
BRUSH_ERASE = QColor(255, 70, 70, 120)  # ... being erased
STATE_TEXT = {
    "confirmed": "confirmed",
    "high": "unreviewed",
    "medium": "unreviewed, unsure",
    "low": "unreviewed, low confidence",
    "none": "no prediction",
    "rejected": "not a chromosome",
}
LEGEND = (("confirmed", "confirmed"), ("high", "≥ 0.90"), ("medium", "0.60–0.90"), ("low", "< 0.60"),
          ("none", "no prediction"), ("rejected", "not a chromosome"))


def state(record: ChromosomeRecord) -> str:
    return record_state(record)


def colour(record_or_state) -> QColor:
    key = record_or_state if isinstance(record_or_state, str) else record_state(record_or_state)
    return QColor(*STATE_COLOURS[key])


def status_text(record: ChromosomeRecord) -> str:
    if record.rejected:
        return f"not a chromosome {rejected_by(record)}".strip() + "; give it a label to bring it back"
    if record.confirmed:
        return f"confirmed by {record.confirmed_by}"
    text = STATE_TEXT[record_state(record)]
    if record.unknown_name and record.suggested is None:
        text += f" (file name {record.file_name!r} unknown)"
    return text


def rejected_by(record: ChromosomeRecord) -> str:
    """Who said "not a chromosome", so that a purple box never comes unexplained."""
    if record.excluded:
        return "by you"
    if record.doubt > 0:
        return "for now: the detector was unsure of this box and the cell has no empty place for it"
    if record.reject_probability is not None:
        return f"by the classifier (p {record.reject_probability:.2f})"
    return ""


SHORT_STATUS = {"high": "review", "medium": "unsure", "low": "LOW", "none": "no prediction", "rejected": "not a chromosome"}


def short_status(record: ChromosomeRecord) -> str:
    if record.rejected:
        return "✗ not a chromosome"
    if record.confirmed:
        return f"✓ {record.confirmed_by}"
    return SHORT_STATUS[record_state(record)]


def tooltip(record: ChromosomeRecord) -> str:
    lines = [f"<b>{record.id}</b>: {record.label or '?'} — {status_text(record)}"]
    top = record.top_k(3)
    if top:
        lines.append("Top guesses: " + ", ".join(f"{label} ({p:.2f})" for label, p in top))
    if record.assigned and record.predicted and record.assigned != record.predicted:
        lines.append(f"Independent guess {record.predicted}; the cell-level assignment says {record.assigned}")
    if record.file_name:
        lines.append(f"In the annotation file: {record.file_name}")
    if record.confirmed_at:
        lines.append(f"Confirmed {record.confirmed_at}")
    return "<br>".join(lines)


def short_label(record: ChromosomeRecord) -> str:
    if record.rejected:
        return "✗"
    text = record.label or (record.file_name or "?")
    if record.confirmed:
        return f"{text} ✓"
    return text
