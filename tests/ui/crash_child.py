"""The real app reviewing a cell by script, frozen at a chosen moment for the parent test to ``kill -9``.

``python -m tests.ui.crash_child IMAGE XML STATE.json relabel|write``

``chromodesk.ui.app.main`` runs as when a user starts it on IMAGE, except that the model
loader hands back the test suite's fake classifier (probabilities from the VOC labels) and
an error prints to stderr and exits instead of opening a dialog nobody can close. Once the
cell is classified the script confirms labels one event-loop turn apart (each is autosaved
in between), then corrects a chromosome so that the cell assignment moves an unconfirmed
one: the automatic relabelling. It freezes

* ``relabel``: as that relabelling begins (the correction's autosave has run, the
  relabelling has changed nothing yet);
* ``write``: inside the atomic write of the relabelled cell: its temp file is written
  beside the session, the session file not yet replaced;

and there writes STATE.json (the cell as the user sees it once relabelled, the confirmed
labels, which chromosome moved), prints READY and sleeps until killed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _record(r) -> dict:
    return {"final": r.final, "confirmed_by": r.confirmed_by, "assigned": r.assigned, "label": r.label,
            "probabilities": list(r.probabilities) if r.probabilities is not None else None,
            "box": r.box.as_list()}


def main(argv: list[str]) -> int:
    image, xml, state_out, stop_at = argv
    assert stop_at in ("relabel", "write"), stop_at
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import chromodesk.ui.errors as errors
    import chromodesk.ui.jobs as jobs
    import chromodesk.ui.main_window as main_window
    import chromodesk.ui.workspace as workspace
    from chromodesk.core.imaging import load_gray
    from chromodesk.ui.app import main as app_main
    from tests.ui.fakes import FakeClassifier

    def fail(parent, summary, details="", **_):
        print(f"child error: {summary}\n{details}", file=sys.stderr, flush=True)
        os._exit(3)

    errors.show_error = main_window.show_error = fail
    gray = load_gray(image).gray
    fake = FakeClassifier.from_voc(xml, (gray.shape[1], gray.shape[0]))
    jobs.load_classifier = lambda model, device, *, progress, is_cancelled: fake

    script: dict = {"stage": "waiting", "window": None, "confirmed": {}}

    def freeze(doc, **extra) -> None:
        state = {"pid": os.getpid(), "confirmed": script["confirmed"], "moved": script["moved"],
                 "reviewer": script["reviewer"],
                 "cell": {r.id: _record(r) for r in doc}, **extra}
        tmp = Path(state_out + ".part")
        tmp.write_text(json.dumps(state))
        os.rename(tmp, state_out)
        print("READY", flush=True)
        while True:  # the GUI thread stops here: nothing more is saved, as in a hung or killed app
            time.sleep(60)

    real_reassign = workspace.reassign
    real_replace = os.replace

    def reassign(doc):
        if script["stage"] != "correction made":
            return real_reassign(doc)
        if stop_at == "relabel":
            seen = jobs.detached(doc)  # what the user sees a moment later, once relabelled
            real_reassign(seen)
            freeze(seen)
        result = real_reassign(doc)
        script["stage"] = "relabelled"  # its autosave is queued: catch it in the write
        return result

    def replace(src, dst, *args, **kwargs):
        ws = script["window"].workspace if script["window"] is not None else None
        if script["stage"] == "relabelled" and ws is not None and Path(dst) == ws.cell.session_path:
            freeze(ws.cell.doc, temp=str(src))
        return real_replace(src, dst, *args, **kwargs)

    workspace.reassign = reassign
    os.replace = replace

    def find_window():
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, main_window.MainWindow)]
        return windows[0] if windows else None

    def review() -> None:
        window = find_window()
        ws = window.workspace if window is not None else None
        if ws is None or ws.cell is None or not ws.is_settled():
            QTimer.singleShot(20, review)
            return
        script["window"] = window
        doc = ws.cell.doc
        # the correction to come (as in test_review_flow): an unsure chromosome u (0.50 for its label a,
        # 0.35 for b); a b confirmed as a leaves three a's and one b, so the assignment moves u to b
        unsure = next(r for r in doc if r.probabilities and sorted(r.probabilities)[-2] > 0.3)
        a, b = unsure.label, unsure.top_k(2)[1][0]
        other = next(r for r in doc if r.label == b and r.id != unsure.id)
        script["moved"] = {"id": unsure.id, "from": a, "to": b, "corrected": other.id}
        bystanders = [r for r in doc if r.label not in (a, b) and r.confidence and r.confidence > 0.9]
        steps = [
            lambda: ws.accept([r.id for r in bystanders[:3]]),  # Space on three sure ones (one undo step)
            lambda: ws.set_label(bystanders[3].id, bystanders[3].label),  # typed: the same label
            lambda: ws.set_label(bystanders[4].id, bystanders[4].label),
            lambda: ws.set_label(other.id, a),  # the correction that the relabelling answers
        ]

        def run(i: int = 0) -> None:
            if i == len(steps) - 1:
                script["stage"] = "correction made"
            steps[i]()
            if i + 1 < len(steps):
                QTimer.singleShot(30, lambda: run(i + 1))  # a few event-loop turns: each change is autosaved

        script["confirmed"] = {r.id: r.label for r in bystanders[:5]} | {other.id: a}
        script["reviewer"] = ws.prefs.reviewer
        run()

    QApplication([sys.argv[0]])  # main() uses it; the script's timers need it before main() runs
    QTimer.singleShot(20, review)
    return app_main([image])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
