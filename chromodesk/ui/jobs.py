"""Background work on plain values: load the model, open a cell, classify, render, export.

Every job is a plain function ``fn(*args, progress, is_cancelled)`` run on
``QThreadPool.globalInstance()``. It never touches a widget or the live document: it
gets arrays, boxes, record ids, box revisions or a detached copy of the document, and
returns plain values. Results and errors come back as Qt signals (queued to the GUI
thread); the GUI decides what still applies.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal

from chromodesk.core.document import Box, Karyotype
from chromodesk.core.labels import CLASSES
from chromodesk.core.preprocess import PreprocessConfig, preprocess_cell

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a job function when its ``is_cancelled()`` became true."""


class JobSignals(QObject):
    progress = Signal(int, int, str)  # done, total, what
    done = Signal(object)
    failed = Signal(str, str)  # one-line message, details (traceback)
    cancelled = Signal()
    finished = Signal()  # always last, whatever happened


def yield_to_gui() -> None:
    """Make the calling worker thread (and threads it starts) give way to the GUI thread.

    On a 2-core machine preprocessing and the network use every core; at equal priority
    the GUI thread waits its turn behind them and the window stutters. Linux applies
    ``nice`` per thread and new threads (OpenCV strips, torch's pool) inherit it; Qt's
    thread priority covers Windows and macOS. Idempotent: pool threads are reused.
    """
    QThread.currentThread().setPriority(QThread.Priority.LowPriority)
    if _BASE_NICE is not None:
        try:
            tid = threading.get_native_id()
            target = min(19, _BASE_NICE + 10)
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError:  # not permitted in some sandboxes: run at normal priority
            pass


# the GUI thread's niceness (this module is imported on it); workers go 10 steps lower
_BASE_NICE = os.getpriority(os.PRIO_PROCESS, 0) if sys.platform.startswith("linux") else None


class Job(QRunnable):
    def __init__(self, name: str, fn: Callable[..., Any], *args, **kwargs):
        super().__init__()
        self.setAutoDelete(False)  # the runner keeps it until ``finished``
        self.name = name
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = JobSignals()
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def _progress(self, done: int, total: int, what: str = "") -> None:
        if self._cancel.is_set():
            raise Cancelled()
        self.signals.progress.emit(int(done), int(total), what)

    def run(self) -> None:  # worker thread
        if self._cancel.is_set():  # cancelled while it waited in the queue: nothing to do
            self.signals.cancelled.emit()
            self.signals.finished.emit()
            return
        yield_to_gui()
        try:
            result = self.fn(*self.args, progress=self._progress, is_cancelled=self._cancel.is_set, **self.kwargs)
        except Cancelled:
            self.signals.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 - every error must reach the GUI as a dialog
            message = str(exc) or type(exc).__name__
            log.error("job %s failed: %s", self.name, message, exc_info=True)
            self.signals.failed.emit(message, "".join(traceback.format_exception(exc)))
        else:
            if self._cancel.is_set():
                self.signals.cancelled.emit()
            else:
                self.signals.done.emit(result)
        finally:
            self.signals.finished.emit()


class JobRunner(QObject):
    """Starts jobs on the global pool and keeps them alive until they finish."""

    activeChanged = Signal(int)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._active: set[Job] = set()
        self.pool = QThreadPool.globalInstance()

    def start(self, job: Job) -> Job:
        self._active.add(job)
        job.signals.finished.connect(lambda job=job: self._finished(job))
        self.pool.start(job)
        self.activeChanged.emit(len(self._active))
        return job

    def _finished(self, job: Job) -> None:
        self._active.discard(job)
        self.activeChanged.emit(len(self._active))

    def active(self) -> int:
        return len(self._active)

    def cancel_all(self) -> None:
        for job in list(self._active):
            job.cancel()

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel everything and wait for the worker threads (window close, end of a test).

        Jobs still queued are taken off the queue; running ones stop at their next step."""
        self.cancel_all()
        for job in list(self._active):
            if self.pool.tryTake(job):  # never started: it will not run
                self._active.discard(job)
        return self.pool.waitForDone(msecs)


# -- job functions (worker thread; plain values in, plain values out) --------------------------------
@dataclass(frozen=True)
class ModelMissing:
    path: str


def load_classifier(model: str | None, device: str, *, progress, is_cancelled):
    """The trained bundle as a ``Classifier``; ``ModelMissing`` if there is no bundle file."""
    progress(0, 0, "Loading model")
    if model and not Path(model).with_suffix(".json").is_file():
        return ModelMissing(str(Path(model).with_suffix(".json")))  # no need to import torch to know
    from chromodesk.inference.bundle import DEFAULT_MODEL, bundle_paths  # torch: imported here, off the GUI thread
    from chromodesk.inference.classifier import Classifier

    path = Path(model) if model else DEFAULT_MODEL
    json_path, _ = bundle_paths(path)
    if not json_path.is_file():
        return ModelMissing(str(json_path))
    return Classifier(json_path, device=device)


@dataclass
class OpenResult:
    doc: Karyotype
    gray: np.ndarray
    source: str  # annotations | detected | session
    session_path: Path | None
    restored: bool
    notes: list[str]


def open_cell_job(image_path: str, session_path: str | None, *, exclusive: bool = False, progress,
                  is_cancelled) -> OpenResult:
    """Read image + boxes (VOC, else detection), or the saved session when it matches the image.

    ``exclusive``: the caller holds the cell's lock, so no other process is writing its session and
    every temp file beside it was left by a write that was killed: all of them go, however recent."""
    from chromodesk.core.imaging import load_gray
    from chromodesk.pipeline import open_cell

    progress(0, 0, f"Opening {Path(image_path).name} (chromosomes are detected when it has no annotation file)")
    notes: list[str] = []
    if session_path and Path(session_path).is_file():
        from chromodesk.core.session import load_session

        from chromodesk.core.atomic import remove_stale_temps
        from chromodesk.pipeline import reassign

        image = load_gray(image_path)
        # left by a crash mid-save; the session file itself is whole
        remove_stale_temps(session_path, older_than_s=0.0 if exclusive else 60.0)
        try:
            doc = load_session(session_path, expected_sha256=image.sha256)
        except Exception as exc:  # noqa: BLE001 - a bad session must not lock the user out of the image
            notes.append(f"Saved session {session_path} not used: {exc}")
            log.warning("session %s not restored: %s", session_path, exc)
        else:
            # a crash between a correction and its relabelling saves half a cell: assign it again
            # (confirmed labels are constraints, so nothing the technician said changes)
            if any(r.probabilities is not None for r in doc):
                reassign(doc)
            doc.revision = 0
            return OpenResult(doc, image.gray, "session", Path(session_path), True, notes)
    doc, image, source = open_cell(image_path)
    return OpenResult(doc, image.gray, source, Path(session_path) if session_path else None, False, notes)


def classify_case_job(images: tuple[Path, ...], classifier, *, progress, is_cancelled) -> int:
    """Open, classify, assign and save a session for each image (the cells not yet reviewed).

    A cell that got a session meanwhile, or that a window (of this or another process) has open
    for editing, is left alone: its reviewer's work is never overwritten."""
    from chromodesk.core.lock import CellLock, new_token
    from chromodesk.core.session import default_session_path, save_session
    from chromodesk.pipeline import classify_document, open_cell

    done = 0
    token = new_token()  # an owner of its own: a cell open in the window that started it is skipped too
    for i, image in enumerate(images):
        if is_cancelled():
            break
        progress(i, len(images), f"Classifying the case: {Path(image).name}")
        doc, loaded, _ = open_cell(image)
        classify_document(doc, loaded.gray, classifier)
        session = default_session_path(image)
        lock = CellLock(session, token)
        if lock.acquire() is not None:
            continue  # open for review somewhere: that window writes its session
        try:
            if session.is_file():
                continue  # reviewed (or classified) elsewhere while this job ran
            save_session(doc, session)
        finally:
            lock.release()
        done += 1
    return done


def detect_job(gray: np.ndarray, *, progress, is_cancelled) -> tuple[list[tuple[Box, float]], str]:
    """(box, doubt) pairs for the whole image: the learned detector (or the classical one without
    a bundle), see ``pipeline.find_boxes``."""
    from chromodesk.pipeline import find_boxes

    progress(0, 0, "Detecting chromosomes")
    return find_boxes(gray)


@dataclass(frozen=True)
class ClassifyItem:
    record_id: str
    box: Box
    box_revision: int
    outline: tuple | None = None  # the technician's outline (knife split, join): the crop is cut by it
    doubt: float = 0.0  # the detector's doubt about the box (``pipeline.record_doubt``)


@dataclass
class ClassifyResult:
    model_id: str
    predictions: list[tuple[str, int, np.ndarray]]  # record id, box revision, probabilities
    targets: frozenset[str]
    whole_cell: bool = False  # every record's answer depends on the others (cell-context stage): apply all
    rejects: dict[str, tuple[float, bool]] | None = None  # record id -> ("not a chromosome" p, rejected)
    record_ids: frozenset[str] = frozenset()  # the cell the answers were computed for
    boxes: dict[str, Box] | None = None  # record id -> the box its answer is for
    ends: dict[str, tuple] | None = None  # record id -> (crop angle, P(p-arm up) per class), or (None, None)
    outlines: dict[str, tuple] | None = None  # record id -> the mask network's outline (None: threshold alone)
    enhanced: np.ndarray | None = None  # the whole image as the crops were cut from it (classifier.preprocess)


def classify_job(gray: np.ndarray, items: tuple[ClassifyItem, ...], targets: frozenset[str], classifier, *,
                 progress, is_cancelled, chunk: int = 16) -> ClassifyResult:
    """Preprocess the whole cell (features are relative to it), run the crop network in chunks
    for progress, then the cell-context stage over all of them, and the orientation network
    (which end is up, for every class) on the same crops."""
    n = len(items)
    progress(0, n + 1, f"Preprocessing {n} chromosomes")
    from chromodesk.pipeline import crop_outlines, hand_masks, orient_crops, segment_of

    boxes = [it.box for it in items]
    doubt = np.array([it.doubt for it in items], dtype=np.float64)
    hand = hand_masks([it.outline for it in items], boxes, classifier.preprocess, gray.shape)
    crops = preprocess_cell(gray, boxes, classifier.preprocess, segment=segment_of(classifier), hand=hand,
                            cell=doubt == 0)
    for info, it in zip(crops.raw, items):
        info["box"] = it.box.as_list()  # a plain value a test double can key on; ignored by real models
    progress(1, n + 1, "Classifying")
    has_reject = bool(getattr(classifier, "has_reject", False))
    probs, rejp = [], []
    for start in range(0, n, chunk):
        part = crops.part(slice(start, start + chunk))
        if has_reject:
            out, r = classifier.predict_each_with_reject(part)
            rejp.append(np.asarray(r, dtype=np.float64))
        else:
            out = classifier.predict_each(part)
        out = np.asarray(out, dtype=np.float64)
        if out.shape != (len(part.images), len(CLASSES)):
            raise ValueError(f"classifier returned {out.shape}, expected ({len(part.images)}, {len(CLASSES)})")
        probs.append(out)
        progress(1 + min(start + chunk, n), n + 1, "Classifying")
    allp = np.concatenate(probs) if probs else np.zeros((0, len(CLASSES)))
    rejects = None
    if has_reject:
        reject_p = np.concatenate(rejp) if rejp else np.zeros(0)
        allp, rejected = classifier.finish_cell(allp, reject_p, crops.features, doubt)
        rejects = {it.record_id: (float(p), bool(r)) for it, p, r in zip(items, reject_p, rejected)}
    else:  # without a reject outcome the detector's doubted boxes simply stay out
        kept = doubt == 0
        allp[kept] = classifier.in_context(allp[kept], crops.features[kept])
        if not kept.all():
            rejects = {it.record_id: (None, bool(d > 0)) for it, d in zip(items, doubt)}
    allp = np.asarray(allp, dtype=np.float64)
    ends = orient_crops(gray, [it.box for it in items], crops, classifier)
    outlines = crop_outlines(crops, [it.box for it in items], classifier.preprocess, gray.shape)
    predictions = [(it.record_id, it.box_revision, p) for it, p in zip(items, allp)]
    return ClassifyResult(str(classifier.model_id), predictions, targets, bool(classifier.has_context), rejects,
                          frozenset(it.record_id for it in items), {it.record_id: it.box for it in items},
                          {it.record_id: end for it, end in zip(items, ends)},
                          {it.record_id: o for it, o in zip(items, outlines)}, crops.enhanced)


def detached(doc: Karyotype) -> Karyotype:
    """A copy of the document with no listeners: safe to hand to a worker thread. The cell's own
    fields come too: the karyogram and the exports print "NOT ANALYSABLE" and the comment."""
    return Karyotype(doc.image_path, doc.image_sha256, doc.width, doc.height,
                     records={k: replace(r) for k, r in doc.records.items()},
                     annotation_path=doc.annotation_path, warnings=list(doc.warnings), revision=doc.revision,
                     not_analysable=doc.not_analysable, comment=doc.comment, in_report=doc.in_report,
                     next_id=doc.next_id)


@dataclass
class KaryogramResult:
    revision: int
    image: np.ndarray
    slots: dict[str, tuple[int, int, int, int]]
    placements: dict[str, tuple[int, int, int, int]]


def karyogram_job(doc: Karyotype, gray: np.ndarray, cfg: PreprocessConfig, iscn: str | None, *,
                  progress, is_cancelled) -> KaryogramResult:
    from chromodesk.core.export import layout_karyogram

    fig = layout_karyogram(doc, gray, cfg, iscn)
    return KaryogramResult(doc.revision, fig.image, dict(fig.slots), dict(fig.placements))


def export_job(doc: Karyotype, gray: np.ndarray, out_dir: str, formats: tuple[str, ...], iscn: str | None,
               cfg: PreprocessConfig, *, progress, is_cancelled) -> dict[str, Path]:
    from chromodesk.core.export import export_all

    progress(0, 0, "Exporting")
    return export_all(doc, gray, out_dir, formats=formats, iscn=iscn, cfg=cfg)
