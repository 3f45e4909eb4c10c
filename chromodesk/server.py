"""``chromodesk serve``: the analysis pipeline over HTTP, and a web page for it.

    from chromodesk.server import create_app
    app = create_app()                 # loads the shipped classifier and detector once
    # uvicorn.run(app, host="127.0.0.1", port=8000)

One more front end beside the CLI and the desktop app: it calls ``chromodesk.pipeline`` and the
exports, never the UI, and the pipeline knows nothing of HTTP. Endpoints:

- ``POST /api/analyze`` (multipart: ``image``, optional ``annotations`` = VOC XML): the JSON of
  ``chromodesk analyze --json``, plus ``result_id`` and ``outputs`` (links to the annotated PNG,
  the karyogram PNG, the CSV and the VOC XML, kept in a bounded in-memory store).
- ``POST /api/classify`` (multipart: ``image`` = one chromosome picture): its 24 probabilities.
- ``GET /api/results/{id}/{annotated.png|karyogram.png|cell.csv|cell.xml}``, ``GET /api/health``,
  ``GET /openapi.json`` and the page at ``/`` (no ``/docs``: FastAPI's Swagger page loads from a CDN).

Every refused request answers ``{"error": "one line"}`` with a 4xx status: 400 (bad XML, damaged
image), 404 (unknown or expired result), 413 (request body over the upload limit, or image over
``limits.MAX_PIXELS``), 415 (not an image, judged by its first bytes, never by its name) and 422
(a required field missing). Uploads go to a private temporary folder that is removed when the
request ends. Analyses run in a small thread pool (torch releases the GIL), so the event loop
keeps answering while a cell is classified; the models are loaded once, when the app is made.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from chromodesk import __version__
from chromodesk.core.errors import InputError
from chromodesk.core.export import csv_text, png_bytes, render_annotated, render_karyogram
from chromodesk.core.imaging import image_signature, load_gray
from chromodesk.core.labels import CLASSES
from chromodesk.core.limits import MAX_PIXELS, MB
from chromodesk.core.preprocess import preprocess_crops
from chromodesk.core.voc import voc_bytes
from chromodesk.pipeline import analyze as run_pipeline  # torch only when a classifier is made

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent / "web"
#: the whole request body (image + annotation + multipart framing); a metaphase JPEG is ~0.2 MB,
#: a 16-bit TIFF of a whole slide region ~100 MB would be refused: convert or crop it first
MAX_UPLOAD_BYTES = 50 * MB
#: results kept for download: the newest ones, for at most this long, within this many bytes
MAX_RESULTS = 32
RESULT_TTL_S = 3600.0
MAX_RESULT_BYTES = 256 * MB
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# what the page may load: only this server (no CDN, no other site), images also as blob: previews
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
DOWNLOADS = {  # URL name -> (export format as in `analyze --formats`, media type, file name suffix)
    "annotated.png": ("annotated", "image/png", ".annotated.png"),
    "karyogram.png": ("karyogram", "image/png", ".karyogram.png"),
    "cell.csv": ("csv", "text/csv; charset=utf-8", ".csv"),
    "cell.xml": ("voc", "application/xml", ".xml"),
}


class ApiError(Exception):
    """A refused request: its HTTP status and the one line the client sees."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- results kept for download ------------------------------------------------------------------
@dataclass
class StoredResult:
    stem: str
    files: dict[str, bytes]  # URL name (DOWNLOADS) -> content
    created: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


class ResultStore:
    """The newest analyses' exports in memory, under unguessable ids; bounded in count, bytes and age."""

    def __init__(self, max_results: int = MAX_RESULTS, max_bytes: int = MAX_RESULT_BYTES, ttl_s: float = RESULT_TTL_S):
        self.max_results, self.max_bytes, self.ttl_s = max_results, max_bytes, ttl_s
        self._items: OrderedDict[str, StoredResult] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, result: StoredResult) -> str:
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._items[key] = result
            self._evict()
        return key

    def get(self, key: str) -> StoredResult | None:
        with self._lock:
            self._evict()
            return self._items.get(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _evict(self) -> None:
        now = time.monotonic()
        while self._items:
            oldest = next(iter(self._items.values()))
            total = sum(r.size for r in self._items.values())
            if (len(self._items) > self.max_results or total > self.max_bytes
                    or now - oldest.created > self.ttl_s):
                self._items.popitem(last=False)
            else:
                break


# -- uploads ----------------------------------------------------------------------------------
def display_name(filename: str | None, fallback: str) -> str:
    """The uploaded file's own name (no folders), as messages and results show it."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:200] or fallback


def safe_name(filename: str | None, fallback: str) -> str:
    """A file name that is safe on disk and in a Content-Disposition header."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", display_name(filename, fallback)).strip("._")
    return name[:100] or fallback


def _save(upload: UploadFile, folder: Path, fallback: str) -> tuple[Path, str]:
    """Copy an upload (already spooled by the form parser, within the body limit) into ``folder``."""
    shown = display_name(upload.filename, fallback)
    folder.mkdir(mode=0o700)
    path = folder / safe_name(upload.filename, fallback)
    upload.file.seek(0)
    with open(path, "wb") as fh:
        shutil.copyfileobj(upload.file, fh, 1 << 20)
    if path.stat().st_size == 0:
        raise ApiError(400, f"{shown}: empty file")
    return path, shown


def _check_image(path: Path, shown: str) -> None:
    """415 unless the first bytes are an image format the loader reads; 413 above the pixel limit
    (read from the header, before anything is decoded; ``load_gray`` checks it again)."""
    if image_signature(path) is None:
        raise ApiError(415, f"{shown}: not an image (its content is not JPEG, PNG, TIFF or BMP, "
                            "whatever its name says)")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception:  # noqa: BLE001 — damaged: load_gray says how, with the file's name
        return
    if width * height > MAX_PIXELS:
        raise ApiError(413, f"{shown}: image is {width}x{height} = {width * height:,} pixels, above the limit "
                            f"of {MAX_PIXELS:,}")


def _named(exc: InputError, names: dict[str, str]) -> str:
    """The InputError's line with the temporary path replaced by the name the client uploaded."""
    shown = names.get(exc.path or "", Path(exc.path).name if exc.path else None)
    return str(InputError(shown, exc.problem))


# -- the app ------------------------------------------------------------------------------------
class Service:
    """The models (loaded once), the worker threads and the result store behind the endpoints."""

    def __init__(self, classifier=None, model: str | Path | None = None, device: str = "auto", detector=None,
                 workers: int = 2, store: ResultStore | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES):
        if classifier is None:
            from chromodesk.inference.classifier import Classifier

            classifier = Classifier(model, device=device)
        if detector is None:
            from chromodesk.inference.detector import DEFAULT_DETECTOR, Detector

            detector = Detector(DEFAULT_DETECTOR, device=device) if DEFAULT_DETECTOR.is_file() else "classical"
        self.classifier, self.detector, self.device = classifier, detector, device
        self.store = store or ResultStore()
        self.max_upload_bytes = max_upload_bytes
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="chromodesk-analysis")

    async def run(self, fn, *args):
        return await asyncio.wrap_future(self.pool.submit(fn, *args))

    def health(self) -> dict:
        detector = self.detector if isinstance(self.detector, str) else getattr(self.detector, "model_id", None)
        return {"status": "ok", "version": __version__, "model_id": getattr(self.classifier, "model_id", None),
                "detector": detector, "device": str(getattr(self.classifier, "device", self.device)),
                "limits": {"upload_bytes": self.max_upload_bytes, "pixels": MAX_PIXELS},
                "results_kept": {"count": self.store.max_results, "seconds": self.store.ttl_s}}

    def analyze(self, image: UploadFile, annotations: UploadFile | None) -> dict:
        """Runs in a worker thread: save the uploads privately, analyse, render the exports."""
        with tempfile.TemporaryDirectory(prefix="chromodesk-upload-") as tmp:  # mode 0700, removed on return
            image_path, image_name = _save(image, Path(tmp) / "image", "image")
            _check_image(image_path, image_name)
            xml_path, xml_name = (_save(annotations, Path(tmp) / "voc", "annotations.xml")
                                  if annotations is not None else (None, None))
            names = {str(image_path): image_name, **({str(xml_path): xml_name} if xml_path else {})}
            try:
                # boxes from the uploaded VOC, else the detector (nothing else is beside the image)
                result = run_pipeline(image_path, xml_path, classifier=self.classifier, device=self.device,
                                      detector=self.detector)
            except InputError as exc:
                raise ApiError(400, _named(exc, names)) from None
        doc = result.doc
        doc.image_path, doc.annotation_path = image_name, xml_name  # no temporary path in any output
        doc.warnings = [w.replace(image_path.name, image_name) for w in doc.warnings]
        iscn = result.cell.iscn if result.cell else None
        files = {
            "annotated.png": png_bytes(render_annotated(doc, result.image.gray)),
            "karyogram.png": png_bytes(render_karyogram(doc, result.image.gray, iscn=iscn)),  # as `analyze --out`
            "cell.csv": csv_text(doc).encode("utf-8"),
            "cell.xml": voc_bytes(doc),
        }
        key = self.store.put(StoredResult(Path(safe_name(image_name, "cell")).stem or "cell", files))
        payload = result.to_json()
        payload["result_id"] = key
        payload["outputs"] = {DOWNLOADS[name][0]: f"/api/results/{key}/{name}" for name in files}
        return payload

    def classify(self, image: UploadFile) -> dict:
        """Runs in a worker thread: one chromosome picture through the crop network."""
        with tempfile.TemporaryDirectory(prefix="chromodesk-upload-") as tmp:
            path, shown = _save(image, Path(tmp) / "image", "chromosome")
            _check_image(path, shown)
            try:
                gray = load_gray(path).gray
            except InputError as exc:
                raise ApiError(400, _named(exc, {str(path): shown})) from None
        clf = self.classifier
        crops = preprocess_crops([gray], clf.preprocess)  # the whole picture is the chromosome's box
        reject, rejected = None, None
        if getattr(clf, "has_reject", False):
            probs, reject_p = clf.predict_each_with_reject(crops)
            reject = float(reject_p[0])
            rejected = reject >= clf.reject_threshold
        elif hasattr(clf, "predict_each"):
            probs = clf.predict_each(crops)
        else:
            probs = clf.predict(crops)
        p = [float(v) for v in probs[0]]
        best = max(range(len(p)), key=p.__getitem__)
        return {"image": shown, "model_id": getattr(clf, "model_id", None), "label": CLASSES[best],
                "confidence": p[best], "probabilities": dict(zip(CLASSES, p)),
                "not_a_chromosome_probability": reject, "not_a_chromosome": rejected,
                "note": "crop network alone: a single picture has no cell to compare it with, so its size "
                        "features are neutral and the cell-context stage and the cell assignment do not apply"}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        field_name = ".".join(where) or "request"
        if err.get("type") == "missing":
            parts.append(f"missing field '{field_name}' (send multipart/form-data with a file in '{field_name}')")
        else:
            parts.append(f"field '{field_name}': {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _size(n: int) -> str:
    return f"{n / MB:,.0f} MB" if n >= MB else f"{n:,} bytes"


class _LocalHostOnly:
    """Answers only requests addressed to a loopback name: a web page elsewhere cannot reach this
    server through a rebound DNS name (DNS rebinding). Off when the server listens on a network."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").strip().lower()
            if host.startswith("["):  # [::1]:8000
                name = host[1:].split("]", 1)[0]
            else:  # 127.0.0.1:8000, localhost
                name = host.split(":", 1)[0]
            if name not in self.allowed:
                response = _error(400, f"this server answers only requests addressed to {', '.join(self.allowed)}")
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class _UploadLimit:
    """At most ``limit`` bytes of request body: a declared larger Content-Length is refused before
    anything is read, a chunked body as soon as it passes the limit (413, JSON like every refusal).
    Starlette's own body limit answers the first case in plain text, hence this one."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    def message(self) -> str:
        return f"request body too large: the limit is {_size(self.limit)} (image and annotation together)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _error(413, self.message())(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # FastAPI passes an HTTPException from the body on to its handler
                    raise StarletteHTTPException(413, self.message())
            return message

        return await self.app(scope, counted, send)


def create_app(classifier=None, model: str | Path | None = None, device: str = "auto", detector=None,
               workers: int = 2, allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS,
               max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The web app. ``classifier``/``detector``: injected objects (tests), else loaded from ``model``
    (default: the shipped bundle) and the shipped detector, once, here. ``allowed_hosts``: the Host
    names answered (None: any, for a server deliberately listening on a network)."""
    service = Service(classifier, model, device, detector, workers, max_upload_bytes=max_upload_bytes)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        service.pool.shutdown(wait=False, cancel_futures=True)

    # no /docs or /redoc: FastAPI's pages load Swagger UI from a CDN, and nothing here leaves this machine
    app = FastAPI(title="ChromoDesk", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Karyotyping of G-banded metaphase images on this machine: every chromosome boxed, "
                              "classified (1-22, X, Y) and assigned at the cell level.")
    app.state.service = service
    app.add_middleware(_UploadLimit, limit=max_upload_bytes)
    if allowed_hosts is not None:  # added last: the outer one, checked first
        app.add_middleware(_LocalHostOnly, allowed=tuple(h.lower() for h in allowed_hosts))

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        return _error(422, _validation_message(exc))

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/api/health")
    async def health() -> dict:
        """App version, the models loaded and the limits."""
        return service.health()

    @app.post("/api/analyze")
    async def analyze_cell(image: Annotated[UploadFile, File(description="metaphase image: JPEG, PNG, TIFF or BMP")],
                           annotations: Annotated[UploadFile | None, File(description="Pascal VOC XML with the "
                                                  "chromosome boxes (without it the detector finds them)")] = None
                           ) -> dict[str, Any]:
        """Classify every chromosome of one metaphase image: the JSON of ``chromodesk analyze --json``,
        plus ``result_id`` and ``outputs`` (download links: annotated PNG, karyogram PNG, CSV, VOC)."""
        return await _work(service, service.analyze, image, annotations)

    @app.post("/api/classify")
    async def classify_picture(image: Annotated[UploadFile, File(description="one chromosome's picture")]
                               ) -> dict[str, Any]:
        """One chromosome picture: the 24 class probabilities of the crop network."""
        return await _work(service, service.classify, image)

    @app.get("/api/results/{result_id}/{name}", responses={200: {"content": {"image/png": {}, "text/csv": {},
                                                                             "application/xml": {}}}})
    async def download(result_id: str, name: str):
        """An export of an earlier analysis (kept for a while: the newest results only)."""
        if name not in DOWNLOADS:
            raise ApiError(404, f"no such export '{name[:40]}'; choose from {', '.join(DOWNLOADS)}")
        stored = service.store.get(result_id)
        if stored is None:
            raise ApiError(404, f"result not found: it expired or never existed (the newest {service.store.max_results} "
                                f"results are kept, for {service.store.ttl_s / 60:.0f} minutes at most)")
        _fmt, media, suffix = DOWNLOADS[name]
        return Response(stored.files[name], media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{stored.stem}{suffix}"' if not media.startswith("image/")
            else f'inline; filename="{stored.stem}{suffix}"',
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"})

    return app


async def _work(service: Service, fn, *args) -> dict:
    """``fn`` in a worker thread; anything but a refusal becomes a 500 with one line (and a logged traceback)."""
    try:
        return await service.run(fn, *args)
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 — one bad image must not take the server down; log it for a report
        log.exception("unexpected error in %s", fn.__name__)
        detail = (str(exc).splitlines() or [""])[0][:200]
        raise ApiError(500, f"unexpected {type(exc).__name__} ({detail}); please report it with this file") from None
