"""Exports of a reviewed cell: CSV table, karyogram PNG, annotated PNG and VOC XML.

Everything is rendered from the document (never from a screenshot of the GUI), so a
headless run and the app produce the same files. Every write is atomic.

The karyogram follows the ISCN layout (1-5 / 6-12 + X / 13-18 / 19-22 + Y, Denver
groups separated), shows each chromosome's original grey pixels inside its mask on
white, turned upright with the p-arm up (the orientation network's answer stored with the
record, or the technician's turn), and draws all chromosomes at one common scale: relative
length is diagnostic, so no chromosome is stretched to fill its slot.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .atomic import atomic_write_all, atomic_write_bytes, atomic_write_text
from .document import Box, ChromosomeRecord, Karyotype
from .labels import CLASS_INDEX, GROUP_OF, KARYOGRAM_ROWS
from .preprocess import (
    PreprocessConfig,
    crop_with_margin,
    enhance_image,
    isolate,
    long_axis_angle,
    main_component,
    needs_inversion,
    rotate_upright,
    tight,
    upright_top,
)
from .errors import InputError
from .outline import outline_mask, outlines_json
from .straighten import straighten
from .voc import voc_bytes

CSV_COLUMNS: tuple[str, ...] = (
    "id", "xmin", "ymin", "xmax", "ymax", "predicted", "confidence", "second", "second_p", "third", "third_p",
    "assigned", "final_label", "confirmed_by", "confirmed_at", "model_id", "file_label",
    "not_a_chromosome", "reject_p", "detector_doubt",
)
NOT_CHROMOSOME_TEXT = "not a chromosome"
EXPORT_FORMATS: tuple[str, ...] = ("csv", "karyogram", "annotated", "voc", "outlines")
NORMAL_SEX = ((2, 0), (1, 1))  # (X, Y): XX or XY

# colours are RGB
WHITE = (255, 255, 255)
INK = (25, 25, 25)
MUTED = (105, 105, 105)
RULE = (70, 70, 70)
ALERT = (205, 0, 0)
STATE_COLOURS = {
    "confirmed": (30, 90, 220),
    "high": (0, 150, 60),
    "medium": (240, 130, 0),
    "low": (215, 20, 20),
    "none": (140, 140, 140),
    "rejected": (120, 60, 150),
}
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_BOLD = cv2.FONT_HERSHEY_DUPLEX


# -- CSV -------------------------------------------------------------------------------
def _fmt_p(p: float | None) -> str:
    return "" if p is None else f"{p:.4f}"


def csv_row(record: ChromosomeRecord) -> dict[str, str]:
    """One CSV row; boxes are 0-based pixels with exclusive xmax/ymax, as in the document."""
    top = record.top_k(3)
    predicted_p = None
    if record.predicted is not None and record.probabilities is not None:
        predicted_p = record.probabilities[CLASS_INDEX[record.predicted]]
    second = top[1] if len(top) > 1 else (None, None)
    third = top[2] if len(top) > 2 else (None, None)
    b = record.box
    values = {
        "id": record.id, "xmin": b.xmin, "ymin": b.ymin, "xmax": b.xmax, "ymax": b.ymax,
        "predicted": record.predicted, "confidence": _fmt_p(predicted_p),
        "second": second[0], "second_p": _fmt_p(second[1]), "third": third[0], "third_p": _fmt_p(third[1]),
        "assigned": record.assigned, "final_label": record.label, "confirmed_by": record.confirmed_by,
        "confirmed_at": record.confirmed_at, "model_id": record.model_id, "file_label": record.file_label,
        "not_a_chromosome": "yes" if record.rejected else "no", "reject_p": _fmt_p(record.reject_probability),
        # nats by which the detector's score fell short of its threshold (0: not doubted)
        "detector_doubt": f"{record.doubt:.3f}",
    }
    return {k: "" if v is None else str(v) for k, v in values.items()}


def csv_text(doc: Karyotype) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for record in doc:
        writer.writerow(csv_row(record))
    return buf.getvalue()


def write_csv(doc: Karyotype, path: str | Path) -> Path:
    return atomic_write_text(path, csv_text(doc))


# -- shared drawing helpers --------------------------------------------------------------
def _ascii(text: str) -> str:
    # Hershey fonts only have ASCII glyphs; anything else would be drawn as '?' anyway
    return text.encode("ascii", "replace").decode("ascii")


def _text_size(text: str, scale: float, thickness: int, font: int = FONT) -> tuple[int, int, int]:
    (w, h), base = cv2.getTextSize(_ascii(text), font, scale, thickness)
    return w, h, base


def _put(img: np.ndarray, text: str, x: int, y: int, scale: float, colour, thickness: int = 1, font: int = FONT) -> None:
    cv2.putText(img, _ascii(text), (int(x), int(y)), font, scale, colour, thickness, cv2.LINE_AA)


def _check_gray(doc: Karyotype, gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit grey image (H x W uint8), got {gray.dtype} {gray.shape}")
    if gray.shape != (doc.height, doc.width):
        raise ValueError(
            f"image is {gray.shape[1]}x{gray.shape[0]} but the document was made for {doc.width}x{doc.height}")
    return gray


# -- karyogram -------------------------------------------------------------------------------
def chromosome_ink(doc: Karyotype, gray: np.ndarray, cfg: PreprocessConfig = PreprocessConfig(),
                   straighten_bent: bool = True) -> dict[str, np.ndarray]:
    """Per record: its upright, tightly cropped darkness (0 = background) at image pixel scale.

    The mask comes from the same segmentation as the classifier input; the pixels are
    the original ones (inverted once for light-on-dark stains so that every karyogram
    reads dark on white). Darkness rather than grey is rotated so that the canvas the
    rotation adds, and the interpolated mask edge, fade to white instead of black.
    Which end is up: the end that was up in the classifier's crop (its stored angle), turned
    180 degrees where ``record.shown_turned`` says so (p-arm up, or the technician's turn), and
    flipped left-right where the technician mirrored it.
    A bent chromosome is straightened along its centre line (``core.straighten``).
    """
    gray = _check_gray(doc, gray)
    enhanced = enhance_image(gray, cfg)
    dark_on_light = needs_inversion(gray, cfg.polarity)
    darkness = 255 - gray if dark_on_light else gray
    out: dict[str, np.ndarray] = {}
    for record in doc:
        if record.box.is_empty():
            continue
        ink, mask = chromosome_piece(enhanced, darkness, record.box, cfg, record.outline)
        angle = same_end_up(long_axis_angle(mask), record.angle)
        # bent: straightened along its centre line, the end the upright turn puts on top on top
        straight = straighten(ink, mask, top=upright_top(mask.shape, angle)) if straighten_bent else None
        ink, rmask = straight if straight is not None else rotate_upright(ink, mask, angle)
        support = ((rmask > 0) | (ink > 0)).astype(np.uint8)
        if not support.any():
            continue
        ink, _ = tight(ink, support)
        if record.shown_turned:
            ink = ink[::-1, ::-1]
        if record.mirrored:  # the technician's left-right flip of the upright picture
            ink = ink[:, ::-1]
        out[record.id] = np.ascontiguousarray(ink)
    return out


def chromosome_piece(enhanced: np.ndarray, darkness: np.ndarray, box: Box, cfg: PreprocessConfig,
                     outline=None) -> tuple[np.ndarray, np.ndarray]:
    """One chromosome as cut from the image: its darkness inside its mask, and the mask (the
    classifier's segmentation: inside its outline when the mask network drew one, else with
    pieces of touching neighbours cut off)."""
    src, region = crop_with_margin(darkness, box, cfg.margin)
    _, mask = isolate(enhanced, box, cfg, outline_mask(outline, region) if outline else None)
    detached = detach_neighbours(mask, Box(box.xmin - region.xmin, box.ymin - region.ymin,
                                           box.xmax - region.xmin, box.ymax - region.ymin))
    # an outline can still take in the stub of a crossing partner where the box cuts it: cut such
    # stubs, but never a large part (a narrow crossing can look like a neck of the chromosome itself)
    if not outline or detached.sum() >= OUTLINE_KEEP * mask.sum():
        mask = detached
    return (src * mask).astype(np.uint8), mask


def same_end_up(angle: float, stored: float | None) -> float:
    """``angle`` (this mask's long axis), or the same axis taken the other way round (+-180
    degrees), whichever is nearer the classifier crop's ``stored`` angle: the karyogram keeps
    its own mask's axis (neighbours detached), and the end that was up in the crop the
    orientation network judged stays up. Moment angles near +-90 degrees flip between masks."""
    if stored is None:
        return angle
    return min((angle - 180.0, angle, angle + 180.0), key=lambda a: abs(a - stored))


OUTLINE_KEEP = 0.8  # inside an outline, cutting at a neck may remove at most a fifth of the mask
NECK_FRACTION = 0.6  # contacts narrower than this share of a chromosome's width are cut


def detach_neighbours(mask: np.ndarray, inner: Box, fraction: float = NECK_FRACTION) -> np.ndarray:
    """Cut off pieces of neighbours that touch the chromosome through a narrow contact.

    Otsu sees two touching chromosomes as one blob, which the box then clips into a
    wedge. An opening by reconstruction keeps the chromosome's own shape: erode by a
    fraction of its half-width (thin contacts vanish, the chromosome's body and its
    centromere, narrower than an arm but wider than that fraction, survive), keep the
    core that fills the box, grow it back inside the original mask.
    """
    if not mask.any():
        return mask
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    radius = int(fraction * float(np.percentile(dist[mask > 0], 95)))
    if radius < 1:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    core = cv2.erode(mask, kernel)
    if not core.any():
        return mask
    return cv2.dilate(main_component(core, inner), kernel) & mask


def _row_groups(row: Sequence[str]) -> list[list[str]]:
    """Split an ISCN row where the Denver group changes; a sex chromosome stands on its own."""
    groups: list[list[str]] = []
    for label in row:
        alone = label in ("X", "Y")
        if groups and not alone and groups[-1][-1] not in ("X", "Y") and GROUP_OF[groups[-1][-1]] == GROUP_OF[label]:
            groups[-1].append(label)
        else:
            groups.append([label])
    return groups


@dataclass
class KaryogramFigure:
    """The rendered karyogram plus where things are (for tests, and to map clicks back to records)."""

    image: np.ndarray  # H x W x 3 uint8 RGB
    scale: float  # output pixels per image pixel, the same for every chromosome
    # class -> x0, y0, x1, y1 of the area above its baseline; the label is drawn just below y1
    slots: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    placements: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # record id -> box drawn
    unassigned: tuple[int, int, int, int] | None = None  # the area of chromosomes without a label


@dataclass(frozen=True)
class KaryogramStyle:
    chromosome_height: int = 170  # the longest chromosome, in output pixels
    margin: int = 48
    homologue_gap: int = 12
    slot_gap: int = 36  # between classes of one Denver group
    group_gap: int = 80  # at least, between Denver groups
    row_gap: int = 30  # above the chromosomes of a row
    label_height: int = 48  # baseline + class name under the chromosomes
    min_row_height: int = 50


def _scaled(ink: np.ndarray, scale: float) -> np.ndarray:
    h, w = ink.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return ink
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(ink, size, interpolation=interp)


def _paste_ink(canvas: np.ndarray, ink: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    """Darken the canvas with ``ink`` (min blend: a piece's white margin never hides a neighbour)."""
    h, w = ink.shape
    region = canvas[y : y + h, x : x + w]
    grey = (255 - ink[: region.shape[0], : region.shape[1]])[..., None]
    np.minimum(region, grey, out=region)
    return x, y, x + w, y + h


def _count_label(canvas, label: str, count: int, alert: bool, cx: int, y: int) -> None:
    """``21 (3)`` centred on ``cx``: the class name bold, the count in red when abnormal."""
    name, tally = label, f" ({count})"
    wn, hn, _ = _text_size(name, 0.75, 2, FONT_BOLD)
    wt, _, _ = _text_size(tally, 0.6, 2 if alert else 1)
    x = cx - (wn + wt) // 2
    _put(canvas, name, x, y + hn, 0.75, INK, 2, FONT_BOLD)
    _put(canvas, tally, x + wn, y + hn, 0.6, ALERT if alert else MUTED, 2 if alert else 1)


def review_status(doc: Karyotype) -> str:
    """One line: how much of the cell a person confirmed, who, when, and with which model."""
    chromosomes = doc.chromosomes()
    confirmed = [r for r in chromosomes if r.confirmed]
    if doc.not_analysable:
        return "NOT ANALYSABLE" + (f": {doc.comment}" if doc.comment else "")
    models = sorted({r.model_id for r in doc if r.model_id})
    model = f"; model {models[0]}" + (f" (+{len(models) - 1})" if len(models) > 1 else "") if models else ""
    if not confirmed:
        return f"unreviewed: all {len(chromosomes)} labels are software suggestions{model}"
    who = sorted({r.confirmed_by for r in confirmed})
    last = max(r.confirmed_at or "" for r in confirmed)
    head = (f"reviewed by {', '.join(who)}, last {last[:16].replace('T', ' ')} UTC" if len(confirmed) == len(chromosomes)
            else f"{len(chromosomes) - len(confirmed)} of {len(chromosomes)} labels are unconfirmed suggestions; "
                 f"{len(confirmed)} confirmed by {', '.join(who)}")
    return head + model


def layout_karyogram(doc: Karyotype, gray: np.ndarray, cfg: PreprocessConfig = PreprocessConfig(),
                     iscn: str | None = None, style: KaryogramStyle = KaryogramStyle()) -> KaryogramFigure:
    inks = chromosome_ink(doc, gray, cfg)
    by_class: dict[str, list[str]] = {c: [] for row in KARYOGRAM_ROWS for c in row}
    unassigned: list[str] = []
    for record in doc:
        if record.rejected:  # not a chromosome: no place in a karyogram
            continue
        if record.label in by_class:
            by_class[record.label].append(record.id)
        else:
            unassigned.append(record.id)
    counts = {c: len(ids) for c, ids in by_class.items()}

    # one scale for the whole cell: the longest placed chromosome fills the row height
    placed = [inks[r] for ids in by_class.values() for r in ids if r in inks] or [inks[r] for r in unassigned if r in inks]
    longest = max((p.shape[0] for p in placed), default=0)
    scale = style.chromosome_height / longest if longest else 1.0
    pieces = {rid: _scaled(ink, scale) for rid, ink in inks.items()}
    widths = [p.shape[1] for p in pieces.values()]
    typical_w = int(np.median(widths)) if widths else style.chromosome_height // 6

    def slot_width(label: str) -> int:
        ws = [pieces[r].shape[1] for r in by_class[label] if r in pieces]
        content = sum(ws) + style.homologue_gap * max(len(ws) - 1, 0)
        text = _text_size(label, 0.75, 2, FONT_BOLD)[0] + _text_size(f" ({counts[label]})", 0.6, 2)[0]
        return max(content, 2 * typical_w + style.homologue_gap, text) + 12

    rows = [_row_groups(row) for row in KARYOGRAM_ROWS]
    min_row_w = [sum(sum(slot_width(c) for c in g) + style.slot_gap * (len(g) - 1) for g in groups)
                 + style.group_gap * (len(groups) - 1) for groups in rows]
    # the header's count and review status share one line: the figure is at least as wide as both
    sub = f"{len(doc.chromosomes())} chromosomes" + (f", {len(unassigned)} unassigned" if unassigned else "")
    status = review_status(doc)
    header_w = _text_size(sub, 0.6, 1)[0] + 40 + _text_size(status, 0.5, 1)[0]
    inner_w = max(min_row_w + [900, header_w])

    title_h = 74
    row_heights = []
    for row in KARYOGRAM_ROWS:
        hs = [pieces[r].shape[0] for c in row for r in by_class[c] if r in pieces]
        row_heights.append(max(hs + [style.min_row_height]))

    # unassigned chromosomes flow left to right under the karyogram, wrapping at the width
    un_lines: list[list[str]] = [[]]
    line_w = 0
    for rid in unassigned:
        w = pieces[rid].shape[1] if rid in pieces else typical_w
        w = max(w, _text_size(rid, 0.45, 1)[0])
        if un_lines[-1] and line_w + style.slot_gap + w > inner_w:
            un_lines.append([])
            line_w = 0
        line_w += w + (style.slot_gap if un_lines[-1] else 0)
        un_lines[-1].append(rid)
    un_heights = [max([pieces[r].shape[0] for r in line if r in pieces] + [style.min_row_height]) for line in un_lines]
    un_block = (40 + sum(h + 32 + style.row_gap for h in un_heights)) if unassigned else 0

    # generous estimate; the canvas is cropped below the footer at the end
    height = (style.margin + title_h + sum(style.row_gap + h + style.label_height for h in row_heights)
              + un_block + 120 + style.margin)
    width = inner_w + 2 * style.margin
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    fig = KaryogramFigure(canvas, scale)

    # title: image name and chromosome count on the left, the ISCN formula on the right
    left, right = style.margin, style.margin + inner_w
    y = style.margin
    name = Path(doc.image_path).name or "karyogram"
    _, th, _ = _text_size(name, 0.95, 2, FONT_BOLD)
    _put(canvas, name, left, y + th, 0.95, INK, 2, FONT_BOLD)
    _put(canvas, sub, left, y + th + 30, 0.6, MUTED, 1)
    # review status: a karyogram of suggestions must not pass for a reviewed one
    sw, _, _ = _text_size(status, 0.5, 1)
    _put(canvas, status, right - sw, y + th + 30, 0.5, ALERT if "suggest" in status else MUTED, 1)
    if iscn:
        iw, ih, _ = _text_size(iscn, 1.0, 2, FONT_BOLD)
        _put(canvas, iscn, right - iw, y + ih, 1.0, INK, 2, FONT_BOLD)
    y += title_h
    cv2.line(canvas, (left, y - 8), (right, y - 8), (200, 200, 200), 1, cv2.LINE_AA)

    x_count, y_count = counts.get("X", 0), counts.get("Y", 0)
    sex_alert = (x_count, y_count) not in NORMAL_SEX
    for groups, row_h in zip(rows, row_heights):
        y += style.row_gap
        baseline = y + row_h + 6
        group_ws = [sum(slot_width(c) for c in g) + style.slot_gap * (len(g) - 1) for g in groups]
        spare = inner_w - sum(group_ws)
        # Denver groups pushed to the edges (classic ISCN look); one group is centred
        gap = spare / (len(groups) - 1) if len(groups) > 1 else 0
        x = float(left) if len(groups) > 1 else left + spare / 2
        for g, gw in zip(groups, group_ws):
            sx = int(round(x))
            for label in g:
                sw = slot_width(label)
                ids = [r for r in by_class[label] if r in pieces]
                content = sum(pieces[r].shape[1] for r in ids) + style.homologue_gap * max(len(ids) - 1, 0)
                px = sx + (sw - content) // 2
                for rid in ids:
                    piece = pieces[rid]
                    fig.placements[rid] = _paste_ink(canvas, piece, px, baseline - 4 - piece.shape[0])
                    px += piece.shape[1] + style.homologue_gap
                cv2.line(canvas, (sx + 4, baseline), (sx + sw - 4, baseline), RULE, 2, cv2.LINE_AA)
                alert = sex_alert if label in ("X", "Y") else counts[label] != 2
                _count_label(canvas, label, counts[label], alert, sx + sw // 2, baseline + 10)
                fig.slots[label] = (sx, y, sx + sw, baseline - 2)  # where the chromosomes stand
                sx += sw + style.slot_gap
            x += gw + gap
        y = baseline + style.label_height - 6

    if unassigned:
        y += 16
        cv2.line(canvas, (left, y), (right, y), (200, 200, 200), 1, cv2.LINE_AA)
        top = y
        _put(canvas, f"Unassigned ({len(unassigned)})", left, y + 30, 0.7, ALERT, 2, FONT_BOLD)
        y += 40
        for line, line_h in zip(un_lines, un_heights):
            y += style.row_gap
            baseline = y + line_h + 6
            x = left
            for rid in line:
                piece = pieces.get(rid)
                w = max(piece.shape[1] if piece is not None else typical_w, _text_size(rid, 0.45, 1)[0])
                if piece is not None:
                    px = x + (w - piece.shape[1]) // 2
                    fig.placements[rid] = _paste_ink(canvas, piece, px, baseline - 4 - piece.shape[0])
                tw, tht, _ = _text_size(rid, 0.45, 1)
                _put(canvas, rid, x + (w - tw) // 2, baseline + 8 + tht, 0.45, MUTED, 1)
                x += w + style.slot_gap
            y = baseline + 32
        fig.unassigned = (left, top, right, y)

    note = f"All chromosomes at one scale: 1 image pixel = {scale:.2f} px. Counts in red differ from the normal."
    _put(canvas, note, left, y + 36, 0.45, MUTED, 1)
    fig.image = np.ascontiguousarray(canvas[: y + 36 + style.margin // 2])
    return fig


def render_karyogram(doc: Karyotype, gray: np.ndarray, cfg: PreprocessConfig = PreprocessConfig(),
                     iscn: str | None = None) -> np.ndarray:
    """The ISCN karyogram as an H x W x 3 uint8 RGB array (dark chromosomes on white)."""
    return layout_karyogram(doc, gray, cfg, iscn).image


# -- annotated image ---------------------------------------------------------------------------
SURE_CONFIDENCE = 0.9  # at or above: shown green ("high"); evaluation's review triage uses the same mark
UNSURE_CONFIDENCE = 0.6  # below: shown red ("low")


def record_state(record: ChromosomeRecord) -> str:
    """rejected (not a chromosome) | confirmed | high (>= 0.9) | medium (0.6-0.9) | low (< 0.6) | none (no prediction)."""
    if record.rejected:
        return "rejected"
    if record.confirmed:
        return "confirmed"
    conf = record.confidence
    if conf is None:
        return "none"
    return "high" if conf >= SURE_CONFIDENCE else "medium" if conf >= UNSURE_CONFIDENCE else "low"


_LEGEND = (("confirmed", "confirmed"), ("high", ">= 0.90"), ("medium", "0.60 - 0.90"), ("low", "< 0.60"),
           ("none", "no prediction"), ("rejected", "not a chromosome"))


def render_annotated(doc: Karyotype, gray: np.ndarray) -> np.ndarray:
    """The image with every box, its label and confidence, coloured by review state; legend below.
    Where the mask network outlined a chromosome, the outline is drawn and its box only thinly:
    the outline is what was classified and goes into the karyogram."""
    gray = _check_gray(doc, gray)
    h, w = gray.shape
    fs = float(np.clip(min(w, h) / 1500.0, 0.4, 1.2))  # text readable at the image's own size
    thick = max(1, round(fs * 3))
    swatch = int(14 * max(fs / 0.5, 1.0))
    legend_at, legend_h = _legend_layout(w, fs, swatch)
    canvas = np.full((h + legend_h, max(w, 1), 3), 255, dtype=np.uint8)
    canvas[:h] = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    records = list(doc)
    for r in records:
        b = r.box
        if b.is_empty():
            continue
        colour = STATE_COLOURS[record_state(r)]
        if r.outline and not r.rejected:
            cv2.rectangle(canvas, (b.xmin, b.ymin), (b.xmax - 1, b.ymax - 1), colour, 1)
            cv2.polylines(canvas, [np.asarray(r.outline, np.int32)], True, colour, thick, cv2.LINE_AA)
        else:
            cv2.rectangle(canvas, (b.xmin, b.ymin), (b.xmax - 1, b.ymax - 1), colour, thick)
    # tags after all boxes so that no box line crosses a tag
    for r in records:
        b = r.box
        if b.is_empty():
            continue
        colour = STATE_COLOURS[record_state(r)]
        text = "x" if r.rejected else r.label or (r.file_name or "?")
        # a probability only where it belongs to the label shown (not to an overruled guess)
        if not r.confirmed and r.confidence is not None and r.label == r.suggested:
            text += f" {r.confidence:.2f}"
        tw, th, base = _text_size(text, fs, 1)
        tx = min(max(b.xmin, 0), max(w - tw - 4, 0))
        ty = b.ymin - 3 if b.ymin - th - base - 3 >= 0 else min(b.ymax + th + 3, h - base - 1)
        cv2.rectangle(canvas, (tx, ty - th - 3), (tx + tw + 4, ty + base - 1), colour, -1)
        _put(canvas, text, tx + 2, ty - 1, fs, WHITE, 1)
    for (state, text), (x, y) in zip(_LEGEND, legend_at):
        cv2.rectangle(canvas, (x, h + y - swatch // 2), (x + swatch, h + y + swatch // 2), STATE_COLOURS[state], -1)
        _, th, _ = _text_size(text, fs, 1)
        _put(canvas, text, x + swatch + 6, h + y + th // 2, fs, INK, 1)
    return canvas


def _legend_layout(width: int, fs: float, swatch: int) -> tuple[list[tuple[int, int]], int]:
    """Legend entries flowed into as many lines as a narrow image needs: positions and height."""
    line_h = int(swatch * 2.2)
    x, y, spots = 10, line_h // 2 + 4, []
    for _, text in _LEGEND:
        item_w = swatch + 6 + _text_size(text, fs, 1)[0]
        if x > 10 and x + item_w > width - 10:
            x, y = 10, y + line_h
        spots.append((x, y))
        x += item_w + 24
    return spots, y + line_h // 2 + 4


# -- files ---------------------------------------------------------------------------------------
def png_bytes(rgb: np.ndarray) -> bytes:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise ValueError(f"expected an RGB (H x W x 3) or grey uint8 image, got {rgb.dtype} {rgb.shape}")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb  # cv2 encodes BGR
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def write_png(rgb: np.ndarray, path: str | Path) -> Path:
    return atomic_write_bytes(path, png_bytes(rgb))


def write_karyogram_png(doc: Karyotype, gray: np.ndarray, path: str | Path, iscn: str | None = None,
                        cfg: PreprocessConfig = PreprocessConfig()) -> Path:
    return write_png(render_karyogram(doc, gray, cfg, iscn), path)


def write_annotated_png(doc: Karyotype, gray: np.ndarray, path: str | Path) -> Path:
    return write_png(render_annotated(doc, gray), path)


def export_targets(out_dir: Path, stem: str) -> dict[str, Path]:
    """Where each export format of the image ``stem`` goes under ``out_dir``."""
    stem = stem or "cell"
    return {"csv": out_dir / f"{stem}.csv", "karyogram": out_dir / f"{stem}.karyogram.png",
            "annotated": out_dir / f"{stem}.annotated.png", "voc": out_dir / f"{stem}.xml",
            "outlines": out_dir / f"{stem}.outlines.json"}


def export_all(doc: Karyotype, gray: np.ndarray, out_dir: str | Path,
               formats: Iterable[str] = EXPORT_FORMATS, iscn: str | None = None,
               cfg: PreprocessConfig = PreprocessConfig()) -> dict[str, Path]:
    """Write ``<stem>.csv``, ``<stem>.karyogram.png``, ``<stem>.annotated.png``, ``<stem>.xml`` and
    ``<stem>.outlines.json`` (each chromosome's outline, beside the VOC boxes).

    Refuses (before writing anything) to replace the VOC file the boxes were read
    from: the technician's original annotation must survive an export into its folder.
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(EXPORT_FORMATS)}")
    out_dir = Path(out_dir)
    targets = export_targets(out_dir, Path(doc.image_path).stem)
    if "voc" in formats and doc.annotation_path and _same_file(targets["voc"], Path(doc.annotation_path)):
        raise ValueError(f"exporting VOC to {targets['voc']} would overwrite the source annotation file; "
                         "choose another output folder")
    created = not out_dir.is_dir() and output_folder_problem(out_dir) is None
    folder = output_folder(out_dir)
    for fmt in formats:
        if targets[fmt].is_dir():
            raise InputError(targets[fmt], "an export would replace a folder of that name; move it or choose another --out")
    # everything is rendered first, then written as one set: a failure leaves no partial exports
    payload: dict[Path, bytes] = {}
    for fmt in formats:
        if fmt == "csv":
            payload[targets[fmt]] = csv_text(doc).encode("utf-8")
        elif fmt == "karyogram":
            payload[targets[fmt]] = png_bytes(render_karyogram(doc, gray, cfg, iscn))
        elif fmt == "annotated":
            payload[targets[fmt]] = png_bytes(render_annotated(doc, gray))
        elif fmt == "outlines":
            payload[targets[fmt]] = (json.dumps(outlines_json(doc), indent=1) + "\n").encode("utf-8")
        else:
            payload[targets[fmt]] = voc_bytes(doc)
    try:
        atomic_write_all(payload)
    except OSError as exc:
        if created:
            _remove_if_empty(folder)
        raise InputError(folder, f"cannot write the exports ({exc.strerror or exc}); none was written") from None
    return {fmt: targets[fmt] for fmt in formats}


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def output_folder_problem(out_dir: Path) -> str | None:
    """Why ``out_dir`` cannot be an output folder (checked without creating anything), or None."""
    try:
        if out_dir.exists() and not out_dir.is_dir():
            return "output path is not a folder (a file is in the way)"
    except OSError as exc:  # e.g. a name longer than the file system allows
        return f"unusable output path ({exc.strerror or exc})"
    return None


def output_folder(out_dir: str | Path) -> Path:
    """``out_dir``, created if needed; an InputError naming it when that cannot be."""
    out_dir = Path(out_dir)
    problem = output_folder_problem(out_dir)
    if problem:
        raise InputError(out_dir, problem)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out_dir, f"cannot create the output folder ({exc.strerror or exc})") from None
    return out_dir


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


__all__ = [
    "CSV_COLUMNS", "EXPORT_FORMATS", "KaryogramFigure", "KaryogramStyle", "chromosome_ink", "csv_row", "csv_text",
    "export_all", "layout_karyogram", "record_state", "render_annotated", "render_karyogram", "same_end_up",
    "write_annotated_png",
    "write_csv", "write_karyogram_png", "write_png",
]
