"""``chromodesk report``: a case (a folder or a list of metaphase images) as a report a lab can file.

Each cell is taken from its saved review session when there is one (the technician's
confirmed labels, marks and comments), else analysed as ``chromodesk analyze`` would. The
case summary (``core.case``) gives the case karyotype in ISCN 2020; the PDF holds the case
id, the summary and warnings, the cells table, the chosen karyograms, reviewers and the time
of the last confirmation, software and model versions, and page numbers. No Qt here: the PDF
is drawn with matplotlib's PDF backend (already used for the training reports; vector text,
no extra dependency).
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chromodesk import __version__
from chromodesk.core.atomic import atomic_write_bytes, atomic_write_text
from chromodesk.core.case import CaseSummary, CellEntry, case_state
from chromodesk.core.document import Karyotype
from chromodesk.core.errors import InputError
from chromodesk.core.imaging import SUPPORTED_SUFFIXES, load_gray

CASE_CSV_COLUMNS = ("image", "count", "iscn", "reviewed", "confirmed", "not_analysable", "in_report", "comment")


@dataclass
class Case:
    summary: CaseSummary
    docs: list[Karyotype] = field(default_factory=list)
    grays: list[np.ndarray] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    state: dict = field(default_factory=lambda: {"signed_off": None, "history": []})  # sign-off and reopenings


def case_images(paths: list[str | Path]) -> list[Path]:
    """Folders expand to their images (sorted); files are taken as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            folder = p / "images" if (p / "images").is_dir() else p
            out += sorted(q for q in folder.iterdir() if q.suffix.lower() in SUPPORTED_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(p, "no such file or folder")
    if not out:
        raise InputError(paths[0] if paths else None, "no images in the case")
    return out


def build_case(paths: list[str | Path], case_id: str | None = None, classifier=None, in_report: int = 2,
               use_sessions: bool = True, progress=None, detect: bool = False) -> Case:
    """Every cell of the case, from its session or analysed now; the first ``in_report`` analysed
    cells (or, when none is analysed, counted cells) are chosen for the report's karyograms.
    ``detect``: a cell analysed now has its chromosomes found by the detector even where an
    annotation file lies beside it (as from a raw image)."""
    from chromodesk.core.session import default_session_path, load_session
    from chromodesk.pipeline import analyze

    images = case_images(paths)
    docs, grays = [], []
    for i, image in enumerate(images):
        session = default_session_path(image) if use_sessions else None
        image_data = load_gray(image)
        doc = None
        if session is not None and Path(session).is_file():
            try:
                doc = load_session(session, expected_sha256=image_data.sha256)
            except InputError:
                doc = None  # a stale or damaged session: analyse the image instead
        if doc is None:
            if classifier is None:
                from chromodesk.inference.classifier import Classifier

                classifier = Classifier()
            doc = analyze(image, classifier=classifier, ignore_annotations=detect).doc
        docs.append(doc)
        grays.append(image_data.gray)
        if progress:
            progress(i + 1, len(images))
    entries = [CellEntry.from_doc(d) for d in docs]
    if not any(e.in_report for e in entries):  # nobody chose: the first analysed (else counted) cells
        chosen = [e for e in entries if e.reviewed and not e.not_analysable] or [e for e in entries if not e.not_analysable]
        for e in chosen[:in_report]:
            e.in_report = True
    case_id = case_id or (Path(paths[0]).name if len(paths) == 1 else images[0].parent.name)
    models = sorted({r.model_id for d in docs for r in d if r.model_id})
    folders = {p for p in map(Path, paths) if p.is_dir()}
    state = case_state(next(iter(folders))) if len(folders) == 1 else {"signed_off": None, "history": []}
    return Case(CaseSummary(case_id, entries), docs, grays, models, state)


def case_csv(summary: CaseSummary) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CASE_CSV_COLUMNS)
    writer.writeheader()
    for c in summary.cells:
        writer.writerow({"image": c.image, "count": c.count, "iscn": c.iscn, "reviewed": "yes" if c.reviewed else "no",
                         "confirmed": c.confirmed, "not_analysable": "yes" if c.not_analysable else "no",
                         "in_report": "yes" if c.in_report else "no", "comment": c.comment})
    return buf.getvalue()


# -- the PDF ----------------------------------------------------------------------------------
A4 = (8.27, 11.69)


def _page(fig, number: int, total: int, case_id: str) -> None:
    fig.text(0.5, 0.02, f"Case {case_id} · page {number} of {total}", ha="center", fontsize=8, color="#555555")
    fig.text(0.95, 0.02, f"ChromoDesk {__version__}", ha="right", fontsize=7, color="#888888")


def write_pdf(case: Case, out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from chromodesk.core.export import render_karyogram

    summary = case.summary
    data = summary.to_json()
    s = data["summary"]
    rows_per_page = 34
    cells = summary.cells
    table_pages = max(1, -(-len(cells) // rows_per_page))
    chosen = [i for i, c in enumerate(cells) if c.in_report]
    total = 1 + table_pages + len(chosen)
    reviewers = sorted({r for c in cells for r in c.reviewers})
    last = max((c.last_confirmed for c in cells), default="")
    buf = io.BytesIO()
    with PdfPages(buf, metadata={"Title": f"Cytogenetics case {summary.case_id}", "Creator": f"ChromoDesk {__version__}"}) as pdf:
        fig = plt.figure(figsize=A4)
        y = 0.94
        fig.text(0.07, y, "Chromosome analysis report", fontsize=17, weight="bold")
        fig.text(0.07, y - 0.03, f"Case {summary.case_id}", fontsize=12)
        y -= 0.09
        fig.text(0.07, y, "Karyotype", fontsize=10, color="#555555")
        fig.text(0.07, y - 0.035, data["iscn"] or "—", fontsize=18, weight="bold", family="monospace")
        y -= 0.09
        dist = ", ".join(f"{k}: {v}" for k, v in s["count_distribution"].items()) or "—"
        lines = [
            f"Cells: {s['cells']} · counted {s['counted']} · analysed {s['analysed']} · karyotyped {s['karyotyped']}"
            + (f" · not analysable {s['not_analysable']}" if s["not_analysable"] else ""),
            f"Modal number: {s['modal_number']} · counts per cell: {dist}",
            "Cell lines: " + ("; ".join(f"{l['karyotype']} in {l['cells']}" for l in s["cell_lines"]) or "—"),
            f"Sex chromosomes: {s['sex_chromosomes'] or '—'}",
        ]
        if s["non_clonal"]:
            lines.append("Non-clonal cells: " + "; ".join(f"{l['karyotype']} in {l['cells']}" for l in s["non_clonal"]))
        for line in lines:
            fig.text(0.07, y, line, fontsize=10)
            y -= 0.028
        if s["warnings"]:
            y -= 0.01
            fig.text(0.07, y, "Warnings", fontsize=10, weight="bold", color="#b00000")
            y -= 0.026
            for w in s["warnings"][:12]:  # wrapped by hand: each warning takes the lines it needs
                lines = textwrap.wrap("• " + w, 118, subsequent_indent="   ")
                fig.text(0.09, y, "\n".join(lines), fontsize=8.5, color="#b00000", va="top", linespacing=1.3)
                y -= 0.0155 * len(lines) + 0.008
            if len(s["warnings"]) > 12:
                fig.text(0.09, y, f"… and {len(s['warnings']) - 12} more (the JSON lists them all)", fontsize=8.5,
                         color="#b00000", va="top")
                y -= 0.024
        y -= 0.02
        comments = [f"{c.image}: {c.comment}" for c in cells if c.comment]
        if comments:
            fig.text(0.07, y, "Comments", fontsize=10, weight="bold")
            y -= 0.026
            for text in comments[:8]:
                fig.text(0.09, y, text[:110], fontsize=8.5)
                y -= 0.022
        y = min(y, 0.2)
        fig.text(0.07, y, "Reviewed by: " + (", ".join(reviewers) or "nobody yet (software suggestions only)"), fontsize=10)
        fig.text(0.07, y - 0.026, f"Last confirmation: {last[:19].replace('T', ' ') + ' UTC' if last else '—'}", fontsize=10)
        signed = case.state.get("signed_off")
        fig.text(0.07, y - 0.052, f"Signed off by {signed['by']} at {signed['at'][:19].replace('T', ' ')} UTC" if signed
                 else "Sign-off: ______________________________    date: ______________", fontsize=10,
                 weight="bold" if signed else "normal")
        reopened = [h for h in case.state.get("history", []) if h.get("action") == "reopen"]
        if reopened:
            fig.text(0.07, y - 0.072, "Reopened: " + "; ".join(f"{h['by']} {h['at'][:16].replace('T', ' ')}"
                                                            + (f" ({h['reason']})" if h.get("reason") else "")
                                                            for h in reopened[-3:]), fontsize=8)
        fig.text(0.07, y - 0.09, f"Generated {time.strftime('%Y-%m-%d %H:%M %Z')} by ChromoDesk {__version__}; "
                 f"model {', '.join(case.models) or '—'}", fontsize=7.5, color="#555555")
        _page(fig, 1, total, summary.case_id)
        pdf.savefig(fig)
        plt.close(fig)

        doubted: dict[str, list[str]] = {}  # the cells the case karyotype hangs on (see the warnings)
        for d in s["doubtful_readings"]:
            doubted.setdefault(d["image"], []).append(d["could_read"])
        for p in range(table_pages):
            fig = plt.figure(figsize=A4)
            fig.text(0.07, 0.95, f"Cells of case {summary.case_id}", fontsize=13, weight="bold")
            part = cells[p * rows_per_page : (p + 1) * rows_per_page]
            ax = fig.add_axes([0.07, 0.08, 0.86, 0.84])
            ax.axis("off")
            body = [[c.image, str(c.count), c.iscn + "".join(f"  ⚠ or {o}" for o in doubted.get(c.image, [])),
                     f"{c.confirmed}/{c.count}" + (" ✓" if c.reviewed else ""),
                     "not analysable" if c.not_analysable else ("report" if c.in_report else ""), c.comment[:30]]
                    for c in part]
            table = ax.table(cellText=body or [["—"] * 6], colLabels=["image", "count", "karyotype", "confirmed", "", "comment"],
                             loc="upper left", cellLoc="left", colWidths=[0.17, 0.08, 0.3, 0.13, 0.14, 0.18])
            table.auto_set_font_size(False)
            table.set_fontsize(8)
            table.scale(1, 1.25)
            _page(fig, 2 + p, total, summary.case_id)
            pdf.savefig(fig)
            plt.close(fig)

        for k, i in enumerate(chosen):
            doc, gray, entry = case.docs[i], case.grays[i], cells[i]
            picture = render_karyogram(doc, gray, iscn=entry.iscn)
            fig = plt.figure(figsize=A4)
            fig.text(0.07, 0.95, f"Karyogram: {entry.image}", fontsize=13, weight="bold")
            fig.text(0.07, 0.925, f"{entry.iscn} · {entry.confirmed} of {entry.count} labels confirmed", fontsize=9)
            h, w = picture.shape[:2]
            width = 0.86
            height = min(0.82, width * h / w * A4[0] / A4[1])
            ax = fig.add_axes([0.07, 0.9 - height, width, height])
            ax.imshow(picture)
            ax.axis("off")
            _page(fig, 2 + table_pages + k, total, summary.case_id)
            pdf.savefig(fig, dpi=200)
            plt.close(fig)
    return atomic_write_bytes(out, buf.getvalue())


def main(args) -> int:
    from tqdm import tqdm

    try:
        classifier = None
        if args.model or args.device != "auto":
            from chromodesk.inference.classifier import Classifier

            classifier = Classifier(args.model, device=args.device)
        images = case_images(args.paths)
        bar = tqdm(total=len(images), desc="cells", unit="cell", disable=args.quiet, mininterval=2.0)
        case = build_case(args.paths, args.case_id, classifier, in_report=args.karyograms,
                          progress=lambda i, n: bar.update(1), detect=getattr(args, "detect", False))
        bar.close()
        if args.out:
            write_pdf(case, args.out)
        if args.csv:
            atomic_write_text(args.csv, case_csv(case.summary))
        if args.json:
            atomic_write_text(args.json, json.dumps(case.summary.to_json(), indent=1))
    except (InputError, RuntimeError, OSError) as exc:
        import sys

        print(f"chromodesk report: {exc}", file=sys.stderr)
        return 2
    s = case.summary.to_json()
    print(f"case {s['case']}: {s['iscn']} ({s['summary']['counted']} cells counted, {s['summary']['analysed']} analysed)")
    for w in s["summary"]["warnings"]:
        print(f"  warning: {w}")
    if args.out:
        print(f"  wrote {args.out}")
    return 0
