"""The open cell and everything that follows from its document's events.

``Cell`` wraps one ``Karyotype`` (the only state), its grey image, its undo stack and
the current selection. ``Workspace`` owns the cell, the classifier and the job
runner; it reacts to document events with derived work only:

* any edit             -> autosave (coalesced to one write per event-loop turn)
* a label confirmed    -> cell-level reassignment (confirmed labels are constraints)
* a box added / moved  -> classification of the records that have no prediction
* anything             -> karyogram re-render in the background (debounced)

Widgets call the edit methods here (each pushes one ``QUndoCommand``) and listen to
``Cell.changed`` / ``Cell.selectionChanged``; ``main_window`` only connects things.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoGroup, QUndoStack

from chromodesk.core.document import Box, Event, Karyotype
from chromodesk.core.imaging import SUPPORTED_SUFFIXES
from chromodesk.core.karyotype import cell_flags, iscn_string
from chromodesk.core.lock import CellLock, LockOwner, new_token, owner_alive, read_owner
from chromodesk.core.preprocess import PreprocessConfig
from chromodesk.pipeline import reassign, record_doubt

from . import commands, jobs
from .outline_edits import OutlineEdits
from .settings import Preferences

log = logging.getLogger(__name__)

MIN_BOX_SIDE = 4  # pixels; a smaller drag is a slip, not a chromosome


class Cell(QObject):
    changed = Signal(object)  # chromodesk.core.document.Event
    selectionChanged = Signal(object)  # record id or None
    partnerChanged = Signal(object)  # record id or None: the second chromosome (Ctrl+click), for Join

    def __init__(self, doc: Karyotype, gray: np.ndarray, source: str, session_path: Path | None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.doc, self.gray, self.source, self.session_path = doc, gray, source, session_path
        self.undo = QUndoStack(self)
        self.selected: str | None = None
        self.partner: str | None = None  # picked with Ctrl+click besides the selected one
        # (preprocess config, the whole image enhanced by it): for the outline edits' threshold masks
        self.enhanced_for: tuple[PreprocessConfig, np.ndarray] | None = None
        # who else edits this cell (its session's lock): then this window must not write the session
        self.blocked_by: LockOwner | None = None
        self._unsubscribe = doc.subscribe(self._on_event)

    @property
    def image_path(self) -> Path:
        return Path(self.doc.image_path)

    @property
    def read_only(self) -> bool:
        """Open for editing in another window or process: shown, never saved from here."""
        return self.blocked_by is not None

    def _on_event(self, event: Event) -> None:
        if event.kind == "removed" and event.record_id == self.selected:
            self.select(None)
        if event.kind == "removed" and event.record_id == self.partner:
            self.set_partner(None)
        self.changed.emit(event)

    def select(self, record_id: str | None) -> None:
        if record_id is not None and record_id not in self.doc.records:
            record_id = None
        self.set_partner(None)  # a plain selection drops the second one
        if record_id != self.selected:
            self.selected = record_id
            self.selectionChanged.emit(record_id)

    def set_partner(self, record_id: str | None) -> None:
        if record_id is not None and (record_id not in self.doc.records or record_id == self.selected):
            record_id = None
        if record_id != self.partner:
            self.partner = record_id
            self.partnerChanged.emit(record_id)

    def select_also(self, record_id: str | None) -> None:
        """Ctrl+click (or Shift+click): with a chromosome selected, pick a second one (again: drop
        it); with none, select this one."""
        if self.selected is None or record_id is None:
            self.select(record_id)
        elif record_id != self.selected:
            self.set_partner(None if record_id == self.partner else record_id)

    def close(self) -> None:
        self._unsubscribe()

    def counts(self) -> dict[str, int]:
        return self.doc.counts()

    def iscn(self) -> str:
        return iscn_string(self.doc.counts())

    def flags(self) -> list[dict]:
        return cell_flags(self.doc.counts())


def list_cell_images(folder: str | Path) -> list[Path]:
    """Images of a case folder (or of its ``images/`` subfolder), sorted by name."""
    folder = Path(folder)
    if (folder / "images").is_dir():
        folder = folder / "images"
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)


def session_path_for(image_path: str | Path) -> Path | None:
    try:
        from chromodesk.core.session import default_session_path
    except ImportError:  # pragma: no cover - session support not installed yet
        return None
    return Path(default_session_path(image_path))


class Workspace(QObject):
    cellChanged = Signal(object)  # Cell | None
    caseChanged = Signal(object)  # list[Path]
    modelChanged = Signal(object, str)  # classifier | None, status text
    progress = Signal(str, int, int)  # what, done, total (total 0 = busy without a known end)
    idle = Signal()
    classified = Signal(int)  # number of predictions applied
    karyogramReady = Signal(object)  # jobs.KaryogramResult
    exported = Signal(object)  # dict[str, Path]
    saved = Signal(object)  # Path
    message = Signal(str)  # for the status bar
    relabelled = Signal(object)  # ids of unconfirmed chromosomes that an edit's reassignment moved
    caseStateChanged = Signal()  # sign-off, reopening, cells classified in the background
    error = Signal(str, str)  # summary, details -> one dialog
    readOnlyChanged = Signal(bool)  # the open cell turned read-only (another window took it)

    def __init__(self, prefs: Preferences, classifier_factory: Callable[[], object] | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.prefs = prefs
        self.classifier_factory = classifier_factory
        self.autosave = True  # off in the headless screenshot mode: a smoke test writes no session
        self.classifier = None
        self.model_loading = False
        self.runner = jobs.JobRunner(self)
        self.undo_group = QUndoGroup(self)
        self.cell: Cell | None = None
        self.case: list[Path] = []
        self.case_folder: Path | None = None
        self._open_job: jobs.Job | None = None
        self._classify_job: jobs.Job | None = None
        self._classify_again = False
        self._render_job: jobs.Job | None = None
        self._render_again = False
        self._save_failed_for: Path | None = None
        self._pending: set[str] = set()
        self._history_step: str | None = None  # "Undone: …" while the reassignment an undo queued runs
        self._force_next = False
        self._render_timer = QTimer(self, singleShot=True, interval=150)
        self._render_timer.timeout.connect(self._render_karyogram)
        self.lock_token = new_token()  # this window, as the owner of the cells it edits
        self._locks: dict[Path, CellLock] = {}  # session path -> lock held by this window
        self._shut_down = False  # the window closed: no new job, no write
        self.edits = OutlineEdits(self)

    # -- model -------------------------------------------------------------------------------------
    def load_model_soon(self) -> None:
        """Load the model once the event loop runs (the window paints first); loading counts from now."""
        self.model_loading = True
        QTimer.singleShot(0, self, self.load_model)

    def load_model(self) -> None:
        """Load the classifier in the background (at start-up and when preferences change)."""
        if self._shut_down:
            self.model_loading = False
            return
        self.model_loading = True
        self.modelChanged.emit(None, "Loading model…")
        if self.classifier_factory is not None:
            job = jobs.Job("load model", lambda progress, is_cancelled: self.classifier_factory())
        else:
            job = jobs.Job("load model", jobs.load_classifier, self.prefs.model or None, self.prefs.device)
        job.signals.done.connect(self._model_loaded)
        job.signals.failed.connect(self._model_failed)
        self.runner.start(job)

    def _model_loaded(self, result) -> None:
        self.model_loading = False
        if isinstance(result, jobs.ModelMissing):
            self.classifier = None
            self.modelChanged.emit(None, f"No model bundle ({Path(result.path).name} not found): "
                                         "classification is off. Tools ▸ Train model… or Tools ▸ Choose model…")
            return
        self.classifier = result
        self.modelChanged.emit(result, f"Model {result.model_id} on {device_name(result)}")
        if self.cell is not None:
            # predictions of another model (an earlier one, a restored session's, or the one a running
            # job still uses) are redone
            stale = self._classify_job is not None or any(
                r.model_id != result.model_id for r in self.cell.doc if r.probabilities is not None)
            self.classify(force=stale)

    def _model_failed(self, message: str, details: str) -> None:
        self.model_loading = False
        self.classifier = None
        self.modelChanged.emit(None, "Model not loaded (see the error); classification is off")
        self.error.emit(f"Could not load the model: {message}", details)

    def classifier_path(self) -> str | None:
        """The loaded model's bundle (what a retraining fine-tunes), if it came from a file."""
        path = getattr(self.classifier, "path", None)
        return str(path) if path is not None else None

    @property
    def preprocess(self) -> PreprocessConfig:
        return getattr(self.classifier, "preprocess", None) or PreprocessConfig()

    # -- opening -------------------------------------------------------------------------------------
    def open_path(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            self.open_folder(path)
        else:
            self.open_image(path)

    def open_folder(self, folder: str | Path) -> None:
        images = list_cell_images(folder)
        if not images:
            self.error.emit(f"{folder}: no images ({', '.join(SUPPORTED_SUFFIXES)}) in this folder", "")
            return
        self.case = images
        self.case_folder = Path(folder)
        self.caseChanged.emit(images)
        self.open_image(images[0])

    def open_image(self, path: str | Path, reload: bool = False) -> None:
        """Open a cell (in the background); the last request wins. ``reload``: read the open one again."""
        path = Path(path)
        if self._shut_down:
            return
        if self.cell is not None and self.cell.image_path == path and not reload:
            self._drop_open_job()  # back to the cell on screen: a cell asked for meanwhile must not replace it
            return
        previous = self._open_job
        if previous is not None:
            previous.cancel()
        self.flush()
        session = session_path_for(path)
        # lock before reading: the session read is then the latest, and nobody else writes it meanwhile
        owner = self._take_lock(session)
        job = jobs.Job("open", jobs.open_cell_job, str(path), _str(session), exclusive=session in self._locks)
        job.session_path, job.blocked_by = session, owner
        job.signals.progress.connect(self._job_progress)
        job.signals.done.connect(lambda result, job=job: self._opened(job, result))
        job.signals.failed.connect(lambda m, d, job=job: self._open_failed(job, path, m, d))
        job.signals.finished.connect(self._job_finished)
        self._open_job = job
        if previous is not None:
            self._release_lock(previous.session_path)
        self.runner.start(job)
        if self.autosave:  # now, while the GUI is idle, rather than during the busy first paint
            self.prefs.add_recent(path)

    def _drop_open_job(self) -> None:
        job, self._open_job = self._open_job, None
        if job is not None:
            job.cancel()
            self._release_lock(job.session_path)
            self._job_finished()

    def _open_failed(self, job: jobs.Job, path: Path, message: str, details: str) -> None:
        if job is not self._open_job:
            return  # superseded: its error is no longer what the user asked about
        self._open_job = None
        self._release_lock(job.session_path)
        if self.autosave:
            self.prefs.forget_recent(path)
        self.error.emit(f"Could not open {path.name}: {message}", details)

    def _opened(self, job: jobs.Job, result: jobs.OpenResult) -> None:
        if job is not self._open_job:
            return  # an older open finished after a newer one was asked for
        self._open_job = None
        cell = Cell(result.doc, result.gray, result.source, result.session_path, self)
        cell.blocked_by = job.blocked_by
        self.set_cell(cell)
        notes = list(result.notes) + list(result.doc.warnings[:3])
        if cell.read_only:
            notes.insert(0, self._read_only_text(cell))
        if result.restored:
            done = len([r for r in result.doc if r.confirmed])
            notes.insert(0, f"Restored your saved review ({done}/{len(result.doc)} confirmed)")
        elif result.source == "detected":  # the document's own warning says how many and by which detector
            notes = [n.split(": ", 1)[-1] if "no annotation file" in n else n for n in notes]
            notes.append("check the boxes")
        if notes:
            self.message.emit(" · ".join(notes))

    def set_cell(self, cell: Cell | None) -> None:
        """Make ``cell`` current (tests and the headless mode may build one directly)."""
        self.cancel_classification(quiet=True)
        old = self.cell
        if old is not None:
            self.flush()
            old.close()
            self.undo_group.removeStack(old.undo)
            old.deleteLater()
        self.cell = cell
        self._save_failed_for = None
        if old is not None and (cell is None or old.session_path != cell.session_path):
            self._release_lock(old.session_path)
        if cell is not None:
            if cell.session_path is None:
                cell.session_path = session_path_for(cell.image_path)
            if cell.blocked_by is None and cell.session_path not in self._locks:
                cell.blocked_by = self._take_lock(cell.session_path)  # a cell built directly (tests, headless)
            cell.changed.connect(self._on_event)
            self.undo_group.addStack(cell.undo)
            self.undo_group.setActiveStack(cell.undo)
        self.cellChanged.emit(cell)
        if cell is not None:
            self.classify(force=False)
            self._render_timer.start(0)

    # -- reacting to the document ------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        self._schedule_save()
        if event.kind not in ("prediction", "turn"):  # a turn changes no label
            self._schedule_reassign()
        if event.kind in ("added", "box"):
            self.classify(force=False)
        self._render_timer.start()

    def _schedule_reassign(self) -> None:
        if "reassign" not in self._pending:
            self._pending.add("reassign")
            QTimer.singleShot(0, self, self._reassign)

    def _reassign(self) -> None:
        self._pending.discard("reassign")
        if self._shut_down:
            return
        if self.cell is not None and any(r.probabilities is not None for r in self.cell.doc):
            doc = self.cell.doc
            shown = {r.id: r.label for r in doc if not r.confirmed}
            reassign(doc)
            # an edit made the assignment move chromosomes nobody touched: say which, and why
            moved = [(rid, old, doc.get(rid).label) for rid, old in shown.items()
                     if rid in doc.records and not doc.get(rid).confirmed and old and doc.get(rid).label
                     and doc.get(rid).label != old]
            step, self._history_step = self._history_step, None
            if moved:
                text = ", ".join(f"{rid} {old} → {new}" for rid, old, new in moved[:4])
                self.relabelled.emit([rid for rid, _, _ in moved])
                more = " …" if len(moved) > 4 else ""
                if step:  # an undo or redo moved them back: say so, not "your change"
                    self.message.emit(f"{step}; the cell assignment follows it: {text}{more}")
                else:
                    self.message.emit(f"The cell assignment relabelled {text}{more}: "
                                      "with your change the counts fit better this way (Undo takes it back)")

    def _schedule_save(self) -> None:
        if "save" not in self._pending:
            self._pending.add("save")
            QTimer.singleShot(0, self, self.flush)

    def flush(self) -> None:
        """Write the session now (after every change; also before switching cells or quitting)."""
        was_pending = "save" in self._pending
        self._pending.discard("save")
        cell = self.cell
        if (not was_pending or cell is None or cell.session_path is None or not self.autosave or cell.read_only
                or self._shut_down or not self._still_ours(cell)):
            return
        from chromodesk.core.session import save_session

        try:
            save_session(cell.doc, cell.session_path)
        except Exception as exc:  # noqa: BLE001 - tell the user once per cell, keep working
            log.exception("autosave to %s failed", cell.session_path)
            if self._save_failed_for != cell.session_path:
                self._save_failed_for = cell.session_path
                import traceback

                self.error.emit(f"Autosave to {cell.session_path} failed: {exc}. Your corrections are not being "
                                "saved; export them before closing.", traceback.format_exc())
        else:
            self.saved.emit(cell.session_path)

    # -- classification -----------------------------------------------------------------------------------
    def classify(self, force: bool = True) -> bool:
        """Classify in the background: every record (``force``) or those without a prediction.

        One job at a time; a request while one runs is remembered and served when it ends.
        """
        cell = self.cell
        if cell is None or self.classifier is None or self._shut_down:
            return False
        self._force_next = self._force_next or force
        if self._classify_job is not None:
            self._classify_again = True
            if force:
                self._classify_job.cancel()  # restart on every record as soon as it stops
            return True
        force, self._force_next = self._force_next, False
        doc = cell.doc
        targets = frozenset(r.id for r in doc if force or r.probabilities is None)
        if not targets:
            return False
        items = tuple(jobs.ClassifyItem(r.id, r.box, r.box_revision, r.outline if r.outline_by_hand else None,
                                        record_doubt(r)) for r in doc)
        job = jobs.Job("classify", jobs.classify_job, cell.gray, items, targets, self.classifier)
        job.failed_flag = False
        job.classifier = self.classifier
        job.signals.progress.connect(self._job_progress)
        job.signals.done.connect(lambda result, job=job, cell=cell: self._classified(job, cell, result))
        job.signals.failed.connect(lambda m, d, job=job: self._classify_failed(job, m, d))
        job.signals.finished.connect(lambda job=job: self._classify_finished(job))
        self._classify_job = job
        self.runner.start(job)
        return True

    def _classified(self, job: jobs.Job, cell: Cell, result: jobs.ClassifyResult) -> None:
        if job is not self._classify_job or cell is not self.cell or job.classifier is not self.classifier:
            return  # cancelled, another cell is open now, or another model was loaded meanwhile
        if result.enhanced is not None:  # made in the worker: the first knife or brush need not wait for it
            cell.enhanced_for = (self.preprocess, result.enhanced)
        applied = 0
        boxes = result.boxes or {}
        whole = result.whole_cell or result.rejects is not None
        if whole and result.record_ids != frozenset(cell.doc.records):
            # the answers depend on the whole cell, and the cell changed meanwhile (a box was
            # added, deleted or undone): they describe another cell. A queued request redoes them.
            self.classified.emit(0)
            return
        for rid, revision, probs in result.predictions:
            # only boxes unchanged since the snapshot; set_prediction never touches a confirmed label.
            # With a cell-context stage a new or moved box changes the others' answers too.
            wanted = rid in result.targets or result.whole_cell or result.rejects is not None
            if rid in cell.doc.records and rid in boxes and cell.doc.get(rid).box != boxes[rid]:
                # moved, undone and moved elsewhere while the job ran: the same revision number, another box
                continue
            reject_p, rejected = (result.rejects or {}).get(rid, (None, False))
            angle, p_up = (result.ends or {}).get(rid, (None, None))
            outline = (result.outlines or {}).get(rid)
            if wanted and cell.doc.set_prediction(rid, probs, result.model_id, box_revision=revision,
                                                  reject_probability=reject_p, rejected=rejected, angle=angle, p_up=p_up,
                                                  outline=outline):
                applied += 1
        reassign(cell.doc)
        self.classified.emit(applied)

    def _classify_failed(self, job: jobs.Job, message: str, details: str) -> None:
        job.failed_flag = True
        if job is self._classify_job:
            self.error.emit(f"Classification failed: {message}", details)

    def _classify_finished(self, job: jobs.Job) -> None:
        if job is not self._classify_job:
            self._job_finished()
            return
        self._classify_job = None
        again, self._classify_again = self._classify_again, False
        self._job_finished()
        cell = self.cell
        missing = cell is not None and any(r.probabilities is None for r in cell.doc)
        if again or (missing and not job.failed_flag and not job.is_cancelled):
            # boxes added or changed while the job ran were skipped: classify them now
            QTimer.singleShot(0, self, lambda: self.classify(force=False))

    def cancel_classification(self, quiet: bool = False) -> None:
        self._classify_again = self._force_next = False
        if self._classify_job is not None:
            self._classify_job.cancel()
            self._classify_job = None  # a result that still arrives is ignored
            if not quiet:
                self.message.emit("Classification cancelled")
            self._job_finished()

    def is_classifying(self) -> bool:
        return self._classify_job is not None

    def _job_progress(self, done: int, total: int, what: str) -> None:
        self.progress.emit(what, done, total)

    def _job_finished(self) -> None:
        if self._classify_job is None and self._open_job is None:
            self.idle.emit()

    # -- karyogram --------------------------------------------------------------------------------------
    def _render_karyogram(self) -> None:
        cell = self.cell
        if cell is None or self._shut_down:
            return
        if self._render_job is not None:
            self._render_again = True
            return
        job = jobs.Job("karyogram", jobs.karyogram_job, jobs.detached(cell.doc), cell.gray, self.preprocess,
                       cell.iscn())
        job.signals.done.connect(lambda result, cell=cell: self._rendered(cell, result))
        job.signals.failed.connect(lambda m, d: self.error.emit(f"Karyogram rendering failed: {m}", d))
        job.signals.finished.connect(self._render_finished)
        self._render_job = job
        self.runner.start(job)

    def _rendered(self, cell: Cell, result: jobs.KaryogramResult) -> None:
        if cell is self.cell:
            self.karyogramReady.emit(result)

    def _render_finished(self) -> None:
        self._render_job = None
        if self._render_again:
            self._render_again = False
            self._render_timer.start()

    # -- edits (each one undo step) -------------------------------------------------------------------------
    # -- the case: sign-off, every cell classified ---------------------------------------------------
    def case_signed_off(self) -> dict | None:
        """Who signed the open case off and when, when the open cell belongs to a signed case."""
        if self.case_folder is None or self.cell is None or self.cell.image_path not in self.case:
            return None
        from chromodesk.core.case import case_state

        try:
            return case_state(self.case_folder)["signed_off"]
        except Exception:  # noqa: BLE001 - a damaged case file must not block the review; it is shown on sign-off
            return None

    def sign_off_case(self) -> None:
        from chromodesk.core.case import sign_off

        if self.case_folder is not None:
            self.flush()
            sign_off(self.case_folder, self.prefs.reviewer)
            self.caseStateChanged.emit()
            self.message.emit(f"Case signed off by {self.prefs.reviewer}: edits now need Reopen… in the Case panel")

    def reopen_case(self, reason: str = "") -> None:
        from chromodesk.core.case import reopen

        if self.case_folder is not None:
            reopen(self.case_folder, self.prefs.reviewer, reason)
            self.caseStateChanged.emit()
            self.message.emit(f"Case reopened by {self.prefs.reviewer} (recorded)")

    def set_in_report(self, image: Path, on: bool) -> None:
        """Whether a cell's karyogram goes into the case report (stored in its session)."""
        if self.cell is not None and self.cell.image_path == Path(image):
            self._push(commands.SetCellNote(self.cell.doc, self.cell.doc.not_analysable, self.cell.doc.comment, on))
            return
        from chromodesk.core.session import load_session, save_session

        session = session_path_for(image)
        if session is not None and session.is_file():
            had_it = session in self._locks
            owner = self._take_lock(session)
            if owner is not None:
                self.message.emit(f"{Path(image).name} is open in {owner.describe()}: change it there")
                self.caseStateChanged.emit()  # the case list shows the session's value again
                return
            try:
                doc = load_session(session)
                doc.in_report = on
                save_session(doc, session)
            finally:
                if not had_it:
                    self._release_lock(session)

    def classify_case(self) -> None:
        """Every cell of the case that has no review session yet: detect if needed, classify, assign
        and save a session, in the background (the case summary then counts every cell)."""
        if not self.case or self.classifier is None:
            self.message.emit("Open a folder as a case, with a model loaded, first")
            return
        open_now = self.cell.image_path if self.cell is not None else None
        todo = [p for p in self.case if p != open_now and not _has_session(p)]
        job = jobs.Job("classify case", jobs.classify_case_job, tuple(todo), self.classifier)
        job.signals.progress.connect(self._job_progress)
        job.signals.done.connect(lambda n: (self.caseStateChanged.emit(),
                                            self.message.emit(f"{n} more cell(s) of the case classified and saved")))
        job.signals.failed.connect(lambda m, d: self.error.emit(f"Classifying the case failed: {m}", d))
        job.signals.finished.connect(self._job_finished)
        self.runner.start(job)

    def _editable(self) -> bool:
        """Whether the open cell may be changed here; if not, the user is told why."""
        if self.cell is None:
            return False
        if self.cell.read_only:
            self._refuse_read_only()
            return False
        signed = self.case_signed_off()
        if signed is not None:
            self.message.emit(f"The case was signed off by {signed['by']} ({signed['at'][:16].replace('T', ' ')} UTC): "
                              "Reopen… in the Case panel to change it (the reopening is recorded)")
            return False
        return True

    def _push(self, command) -> bool:
        if self.cell is None or command is None or not self._editable():
            return False
        self.cell.undo.push(command)
        return True

    def set_label(self, record_id: str, label: str) -> None:
        cell = self.cell
        if cell is None or record_id not in cell.doc.records:
            return
        r = cell.doc.get(record_id)
        if r.confirmed and r.final == label:
            return
        self._push(commands.set_label_command(cell.doc, record_id, label, self.prefs.reviewer))

    def label_selected(self, label: str) -> bool:
        if self.cell is None or self.cell.selected is None:
            self.message.emit("Select a chromosome first (click its box, its row or its karyogram picture)")
            return False
        self.set_label(self.cell.selected, label)
        return True

    def toggle_not_chromosome(self) -> None:
        """The selected box holds no chromosome (or, when it is marked so, it does after all)."""
        cell = self.cell
        if cell is None or cell.selected is None:
            self.message.emit("Select a box first")
            return
        r = cell.doc.get(cell.selected)
        self._push(commands.SetExcluded(cell.doc, r.id, not r.rejected))

    def turn(self, record_id: str) -> None:
        """Turn a chromosome 180 degrees in the karyogram (one undo step)."""
        self._orient(record_id, "turn", commands.TurnChromosome, lambda r: "turned 180°")

    def mirror(self, record_id: str) -> None:
        """Flip a chromosome left-right in the karyogram, or back (one undo step)."""
        self._orient(record_id, "mirror", commands.MirrorChromosome,
                     lambda r: "mirrored" if r.mirrored else "back as it was")

    def _orient(self, record_id: str, verb: str, command, done) -> None:
        cell = self.cell
        if cell is None or record_id not in cell.doc.records:
            return
        if cell.doc.get(record_id).rejected:
            self.message.emit(f"Not a chromosome: it has no place in the karyogram to {verb}")
            return
        if self._push(command(cell.doc, record_id)):
            self.message.emit(f"{record_id} {done(cell.doc.get(record_id))} in the karyogram (Undo takes it back)")

    def turn_selected(self) -> None:
        self._on_selected(self.turn)

    def mirror_selected(self) -> None:
        self._on_selected(self.mirror)

    def _on_selected(self, act) -> None:
        cell = self.cell
        if cell is None or cell.selected is None:
            self.message.emit("Select a chromosome first (click its box, its row or its karyogram picture)")
            return
        act(cell.selected)

    def detect_again(self) -> None:
        """Re-run the detector in the background; its boxes replace the unconfirmed ones (one undo step)."""
        cell = self.cell
        if cell is None:
            return
        job = jobs.Job("detect", jobs.detect_job, cell.gray)
        job.signals.progress.connect(self._job_progress)
        job.signals.done.connect(lambda result, cell=cell: self._detected(cell, result))
        job.signals.failed.connect(lambda m, d: self.error.emit(f"Detection failed: {m}", d))
        job.signals.finished.connect(self._job_finished)
        self.runner.start(job)

    def _detected(self, cell: Cell, result) -> None:
        if cell is not self.cell:
            return  # another cell is open now
        found, note = result
        if not self._editable():
            return
        self.cancel_classification(quiet=True)
        cell.undo.push(commands.ReplaceBoxes(cell.doc, found))
        self.message.emit(f"Detect again: {note} (Undo puts the previous boxes back)")

    def accept(self, record_ids) -> None:
        if self.cell is not None:
            self._push(commands.accept_command(self.cell.doc, list(record_ids), self.prefs.reviewer))

    def accept_selected(self) -> None:
        cell = self.cell
        if cell is None or cell.selected is None:
            self.message.emit("Select a chromosome first")
            return
        if cell.doc.get(cell.selected).label is None:
            self.message.emit("No label to accept yet: pick one in the palette")
            return
        self.accept([cell.selected])
        self.select_next_least_confident()

    def set_cell_note(self, not_analysable: bool, comment: str) -> None:
        cell = self.cell
        if cell is not None and (not_analysable, comment) != (cell.doc.not_analysable, cell.doc.comment):
            self._push(commands.SetCellNote(cell.doc, not_analysable, comment))

    def unconfirm_selected(self) -> None:
        """Take back a confirmation: the label returns to the software's suggestion (undoable)."""
        cell = self.cell
        if cell is None or cell.selected is None or not cell.doc.get(cell.selected).confirmed:
            self.message.emit("Select a confirmed chromosome first")
            return
        self._push(commands.set_label_command(cell.doc, cell.selected, None, None))

    def accept_all(self) -> None:
        if self.cell is not None:
            self.accept([r.id for r in self.cell.doc if not r.confirmed and not r.rejected])

    def add_box(self, box: Box) -> str | None:
        cell = self.cell
        if cell is None:
            return None
        box = box.clipped(cell.doc.width, cell.doc.height)
        if box.width < MIN_BOX_SIDE or box.height < MIN_BOX_SIDE:
            return None
        command = commands.AddBox(cell.doc, box)
        if not self._push(command):
            return None
        cell.select(command.record_id)
        return command.record_id

    def move_box(self, record_id: str, box: Box) -> None:
        cell = self.cell
        if cell is None or record_id not in cell.doc.records:
            return
        box = box.clipped(cell.doc.width, cell.doc.height)
        if box == cell.doc.get(record_id).box or box.width < MIN_BOX_SIDE or box.height < MIN_BOX_SIDE:
            # nothing changed (or a collapsed box): views re-show the document's box
            cell.changed.emit(Event("box", record_id))
            return
        if not self._push(commands.MoveBox(cell.doc, record_id, box)):
            cell.changed.emit(Event("box", record_id))  # refused: the view shows the document's box again

    def delete_selected(self) -> None:
        cell = self.cell
        if cell is not None and cell.selected is not None:
            self._push(commands.DeleteBox(cell.doc, cell.selected))

    def after_undo(self) -> None:
        """Select what an undo gave back (a split's or a join's original, a deleted box), so that
        the technician sees it rather than an empty selection."""
        self._mark_history_step(f"Undone: {self.undo_group.redoText()}")
        self._focus("focus_after_undo", 0)

    def after_redo(self) -> None:
        self._mark_history_step(f"Redone: {self.undo_group.undoText()}")
        self._focus("focus_after_redo", -1)

    def _mark_history_step(self, step: str) -> None:
        """The reassignment the undo or redo queued (already waiting: timers run in order) reports
        itself as part of it; the mark is gone right after, whether one ran or not."""
        self._history_step = step
        QTimer.singleShot(0, self, lambda: setattr(self, "_history_step", None))

    def _focus(self, attr: str, offset: int) -> None:
        cell = self.cell
        if cell is None:
            return
        cmd = cell.undo.command(cell.undo.index() + offset)  # after an undo, index() is the undone command
        rid = getattr(cmd, attr, None) if cmd is not None else None
        if rid is not None and rid in cell.doc.records:
            cell.select(rid)

    # -- outline edits (knife split, join, brush, polygon): the work is in outline_edits --------------------
    def _mask_of(self, cell: Cell, record_id: str):
        return self.edits.mask_of(cell, record_id)

    def split_with_line(self, p0, p1) -> list[str] | None:
        return self.edits.split_with_line(p0, p1)

    def join_selected(self) -> str | None:
        return self.edits.join_selected()

    def paint_selected(self, stroke, radius: float, erase: bool = False) -> bool:
        return self.edits.paint_selected(stroke, radius, erase)

    def redraw_outline(self, points) -> bool:
        return self.edits.redraw_outline(points)

    def select_next_least_confident(self) -> None:
        """Tab: the unconfirmed chromosomes from least to most confident, one after another."""
        cell = self.cell
        if cell is None:
            return
        order = sorted((r for r in cell.doc if not r.confirmed),
                       key=lambda r: (-1.0 if r.confidence is None else r.confidence, r.id))
        if not order:
            self.message.emit("Every chromosome is confirmed")
            return
        ids = [r.id for r in order]
        if cell.selected in ids:
            cell.select(ids[(ids.index(cell.selected) + 1) % len(ids)])
        else:
            cell.select(ids[0])

    # -- case -----------------------------------------------------------------------------------------------------
    def step_cell(self, delta: int) -> None:
        if not self.case:
            return
        current = self.cell.image_path if self.cell is not None else None
        index = self.case.index(current) if current in self.case else -1
        target = index + delta
        if 0 <= target < len(self.case):
            self.open_image(self.case[target])

    # -- export ---------------------------------------------------------------------------------------------------
    def export(self, out_dir: str | Path, formats: tuple[str, ...]) -> None:
        cell = self.cell
        if cell is None:
            return
        job = jobs.Job("export", jobs.export_job, jobs.detached(cell.doc), cell.gray, str(out_dir), tuple(formats),
                       cell.iscn(), self.preprocess)
        job.signals.progress.connect(self._job_progress)
        job.signals.done.connect(self.exported.emit)
        job.signals.failed.connect(lambda m, d: self.error.emit(f"Export failed: {m}", d))
        job.signals.finished.connect(self._job_finished)
        self.runner.start(job)

    def is_settled(self) -> bool:
        """Nothing running or scheduled: model loaded (or known missing), cell open, classified, drawn."""
        return (self.cell is not None and not self.model_loading and self._open_job is None
                and self._classify_job is None and self._render_job is None and not self._render_timer.isActive()
                and not self._pending
                and (self.classifier is None or all(r.probabilities is not None for r in self.cell.doc)))

    # -- one editor per cell ------------------------------------------------------------------------------
    def _take_lock(self, session_path: Path | None) -> LockOwner | None:
        """Lock a cell's session for this window: None when it is ours (or cannot be locked), else who has it."""
        if session_path is None or not self.autosave:
            return None  # a window that never writes needs no lock
        lock = self._locks.get(session_path) or CellLock(session_path, self.lock_token)
        owner = lock.acquire()
        if lock.held:
            self._locks[session_path] = lock
        return owner

    def _release_lock(self, session_path: Path | None) -> None:
        """Give a cell's lock back, unless the open cell or an open in progress still needs it."""
        if session_path is None:
            return
        if self.cell is not None and self.cell.session_path == session_path:
            return
        if self._open_job is not None and self._open_job.session_path == session_path:
            return
        lock = self._locks.pop(session_path, None)
        if lock is not None:
            lock.release()

    def _still_ours(self, cell: Cell) -> bool:
        """Before a write: the lock still names this window. If someone removed it and another window
        took the cell meanwhile, this one turns read-only rather than overwrite that window's work."""
        lock = self._locks.get(cell.session_path)
        if lock is None:
            return True  # nothing to check (a folder where no lock can be written)
        owner = read_owner(lock.path)
        if owner is not None and owner.token == lock.token:
            return True
        if owner is None or not owner_alive(owner):
            lock.held = False
            owner = lock.acquire()  # removed (or taken by a process now dead) behind our back: take it again
            if owner is None:
                return True
        lock.held = False
        self._locks.pop(cell.session_path, None)
        cell.blocked_by = owner
        self.message.emit(self._read_only_text(cell))
        self.readOnlyChanged.emit(True)
        return False

    def _read_only_text(self, cell: Cell) -> str:
        return (f"Read-only: {cell.image_path.name} is being edited in {cell.blocked_by.describe()}; nothing is "
                "saved from this window. Edit it there, or close it there and edit here")

    def _refuse_read_only(self) -> None:
        cell = self.cell
        owner = self._take_lock(cell.session_path)
        if owner is None and cell.session_path in self._locks:
            # the other window let go: read what it saved last, then edits are this window's
            self.message.emit("The other window has closed this cell: reloading its latest saved review. "
                              "Your change was not made: make it again once the cell is shown")
            self.open_image(cell.image_path, reload=True)
            return
        cell.blocked_by = owner or cell.blocked_by
        # what happened comes first: a narrow window's status bar shows only the start of a line
        self.message.emit("Read-only here: the change was not made. " + self._read_only_text(cell))

    def shutdown(self) -> None:
        """The window closes: the last change saved (relabelled first, if that was due), every job
        stopped at its next step and waited for, the cell's lock given back. Nothing runs afterwards."""
        if "reassign" in self._pending:
            self._reassign()  # the correction's relabelling, so that the saved cell is whole
        self.flush()
        self._shut_down = True
        self._render_timer.stop()
        self._pending.clear()
        self._drop_open_job()
        self.cancel_classification(quiet=True)
        self.runner.shutdown()
        for lock in self._locks.values():
            lock.release()
        self._locks.clear()


def _has_session(image: Path) -> bool:
    path = session_path_for(image)
    return path is not None and path.is_file()


def device_name(classifier) -> str:
    return str(getattr(classifier, "device", "cpu"))


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
