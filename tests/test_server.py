"""``chromodesk serve``: the real server over loopback HTTP with the shipped model, and its web page in a
real headless Chromium (Debian's ``chromium`` driven by Playwright; skipped when either is missing)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
uvicorn = pytest.importorskip("uvicorn")

from defusedxml import ElementTree as SafeET  # noqa: E402
from PIL import Image  # noqa: E402

from chromodesk import __version__  # noqa: E402
from chromodesk.core.errors import InputError  # noqa: E402
from chromodesk.core.labels import CLASSES  # noqa: E402
from chromodesk.core.limits import MAX_PIXELS  # noqa: E402
from chromodesk.core.voc import read_voc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "resources" / "samples" / "103201.jpg"
XML = ROOT / "resources" / "samples" / "103201.xml"
# the README's picture of the page: rewritten only when asked (CHROMODESK_WRITE_DOCS=1), so a
# test run leaves the work tree as it was
SCREENSHOT = ROOT / "docs" / "web-page.png"
UPLOAD_PREFIX = "chromodesk-upload-"


# -- the server -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(one_torch_thread):
    """The app with the shipped model (loaded once for the module) under uvicorn on a free loopback port."""
    from chromodesk.inference.classifier import Classifier
    from chromodesk.server import create_app

    classifier = Classifier(None, device="cpu")
    app = create_app(classifier=classifier, device="cpu")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the port is ours from here on: no race with other processes
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn-test")
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield SimpleNamespace(host="127.0.0.1", port=port, url=f"http://127.0.0.1:{port}", classifier=classifier,
                          service=app.state.service)
    srv.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def direct(server):
    """What the Python API answers for the sample, with the same classifier object."""
    from chromodesk.pipeline import analyze

    return analyze(IMAGE, XML, classifier=server.classifier, device="cpu")


def request(server, method: str, path: str, body=None, headers: dict | None = None, chunked: bool = False):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def multipart(**files: tuple[str, bytes]) -> tuple[bytes, dict]:
    """A multipart/form-data body: field name -> (file name, content)."""
    boundary = "chromodesk-" + secrets.token_hex(8)
    body = b""
    for field, (filename, data) in files.items():
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def post(server, path: str, **files: tuple[str, bytes]):
    body, headers = multipart(**files)
    return request(server, "POST", path, body, headers)


def error_of(status: int, headers: dict, body: bytes) -> str:
    """The refusal's message: JSON ``{"error": "one line"}``, nothing else."""
    assert headers["content-type"].startswith("application/json"), (status, body[:200])
    payload = json.loads(body)
    assert set(payload) == {"error"}, payload
    message = payload["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


def upload_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(UPLOAD_PREFIX + "*")}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR announcing width x height, without pixel data (nothing to decode)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + end


# -- analysis ---------------------------------------------------------------------------------------
def test_analyze_gives_the_pipeline_json_and_downloads(server, direct):
    """POST /api/analyze answers what `analyze --json` prints (same labels as the Python API), with
    links that download the annotated PNG, the karyogram PNG, the CSV and the VOC XML."""
    before = upload_dirs()
    status, headers, body = post(server, "/api/analyze", image=(IMAGE.name, IMAGE.read_bytes()),
                                 annotations=(XML.name, XML.read_bytes()))
    assert status == 200, body[:300]
    result = json.loads(body)
    expected = direct.to_json()
    assert result["count"] == 46 and result["boxes"] == 46
    assert [c["label"] for c in result["chromosomes"]] == [c["label"] for c in expected["chromosomes"]]
    assert [c["box"] for c in result["chromosomes"]] == [c["box"] for c in expected["chromosomes"]]
    assert result["iscn"] == expected["iscn"] and result["model_id"] == server.classifier.model_id
    assert set(expected) <= set(result)  # every key of `analyze --json`, plus result_id and outputs
    # the uploaded names, never the server's temporary paths
    assert (result["image"], result["annotations"]) == (IMAGE.name, XML.name)
    assert tempfile.gettempdir() not in body.decode()
    assert upload_dirs() <= before  # the private upload folder is gone with the request

    outputs = result["outputs"]
    assert set(outputs) == {"csv", "karyogram", "annotated", "voc"}
    downloads = {kind: request(server, "GET", url) for kind, url in outputs.items()}
    for kind, (status, headers, data) in downloads.items():
        assert status == 200, (kind, data[:200])
        assert "103201" in headers["content-disposition"]
    for kind in ("annotated", "karyogram"):
        _, headers, data = downloads[kind]
        assert headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 300
    with Image.open(io.BytesIO(downloads["annotated"][2])) as im:
        assert im.width == direct.image.width  # the whole image (with its legend below)
    csv_lines = downloads["csv"][2].decode("utf-8").strip().splitlines()
    assert len(csv_lines) == 1 + 46
    root = SafeET.fromstring(downloads["voc"][2])
    assert len(root.findall("object")) == 46 and root.findtext("filename") == IMAGE.name
    assert tempfile.gettempdir() not in downloads["voc"][2].decode()


def test_analyze_without_annotations_finds_the_chromosomes(server):
    """Only an image: the shipped detector (loaded once with the app) finds the boxes."""
    status, _, body = post(server, "/api/analyze", image=("raw cell.jpg", IMAGE.read_bytes()))
    assert status == 200, body[:300]
    result = json.loads(body)
    assert result["boxes_source"] == "detected" and result["annotations"] is None
    assert result["image"] == "raw cell.jpg"
    assert 40 <= result["count"] <= 52
    assert any("raw cell.jpg" in w and "detector" in w for w in result["warnings"])


def test_concurrent_analyses_share_one_model(server, direct, monkeypatch):
    """Two uploads at once are analysed in the worker threads with the one model loaded at start-up
    (no second load): both answers are complete and identical, each with its own result."""
    from chromodesk.inference.classifier import Classifier
    from chromodesk.inference.detector import Detector

    def no_second_load(self, *args, **kwargs):
        raise AssertionError("a model was loaded again while serving")

    monkeypatch.setattr(Classifier, "__init__", no_second_load)
    monkeypatch.setattr(Detector, "__init__", no_second_load)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: post(server, "/api/analyze", image=(IMAGE.name, IMAGE.read_bytes()),
                                               annotations=(XML.name, XML.read_bytes())), range(2)))
    assert [status for status, _, _ in answers] == [200, 200], [body[:200] for _, _, body in answers]
    results = [json.loads(body) for _, _, body in answers]
    labels = [c["label"] for c in direct.to_json()["chromosomes"]]
    assert all([c["label"] for c in r["chromosomes"]] == labels for r in results)
    assert results[0]["result_id"] != results[1]["result_id"]


def test_classify_one_chromosome(server):
    """POST /api/classify: one chromosome's picture -> its 24 probabilities (summing to 1), the same as
    the crop network gives it directly."""
    from chromodesk.core.imaging import load_gray
    from chromodesk.core.preprocess import preprocess_crops

    gray = load_gray(IMAGE).gray
    ann = read_voc(XML, (gray.shape[1], gray.shape[0]))
    obj = next(o for o in ann.objects if o.label == "1")  # the largest chromosome: an unambiguous picture
    b = obj.box
    crop = gray[b.ymin:b.ymax, b.xmin:b.xmax]
    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="PNG")
    status, _, body = post(server, "/api/classify", image=("chromosome-1.png", buf.getvalue()))
    assert status == 200, body[:300]
    result = json.loads(body)
    probs = result["probabilities"]
    assert list(probs) == list(CLASSES)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert result["label"] == max(probs, key=probs.get) and result["confidence"] == probs[result["label"]]
    assert 0.0 <= result["not_a_chromosome_probability"] <= 1.0 and result["not_a_chromosome"] is False
    clf = server.classifier
    cell = preprocess_crops([crop], clf.preprocess)
    expected = clf.predict_each(cell)[0]
    assert np.allclose([probs[c] for c in CLASSES], expected, atol=1e-5)
    assert result["label"] == "1"


# -- refusals -----------------------------------------------------------------------------------------
def test_refuses_a_text_file_named_jpg(server):
    status, headers, body = post(server, "/api/analyze", image=("cell.jpg", b"just some text, not a picture\n" * 10))
    assert status == 415
    message = error_of(status, headers, body)
    assert message.startswith("cell.jpg: not an image")


def test_refuses_malformed_xml_with_the_readers_message(server, tmp_path):
    bad = b"<annotation><object><name>1</name><bndbox><xmin>3</xmin></object>"
    status, headers, body = post(server, "/api/analyze", image=(IMAGE.name, IMAGE.read_bytes()),
                                 annotations=("cell.xml", bad))
    assert status == 400
    message = error_of(status, headers, body)
    (tmp_path / "cell.xml").write_bytes(bad)
    with pytest.raises(InputError) as exc:
        read_voc(tmp_path / "cell.xml")
    assert message == f"cell.xml: {exc.value.problem}"  # the reader's own message, naming the upload


@pytest.mark.parametrize("fields", [{}, {"annotations": ("103201.xml", b"<annotation/>")}], ids=["empty", "xml-only"])
def test_refuses_a_missing_image_field(server, fields):
    body, headers = multipart(**fields) if fields else (b"", {"Content-Type": "multipart/form-data; boundary=x"})
    status, headers, body = request(server, "POST", "/api/analyze", body, headers)
    assert status == 422
    assert "missing field 'image'" in error_of(status, headers, body)
    status, headers, body = request(server, "POST", "/api/classify")  # no body at all
    assert status == 422 and "missing field 'image'" in error_of(status, headers, body)


def test_refuses_an_oversized_upload(server):
    """Over the 50 MB body limit: refused from the declared length before anything is read, and a
    chunked body (no length announced) as soon as it passes the limit."""
    limit = server.service.max_upload_bytes
    assert limit == 50 << 20
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    conn.putrequest("POST", "/api/analyze")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(limit + 1))
    conn.endheaders()  # no body sent: the answer must not wait for it
    response = conn.getresponse()
    status, headers, body = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    assert status == 413
    assert "limit is 50 MB" in error_of(status, headers, body)

    head, _ = multipart(image=("big.jpg", b""))
    boundary = head.split(b"\r\n", 1)[0][2:].decode()
    part = head[: head.rindex(b"\r\n--")]  # the part's headers, then the file's bytes follow

    def stream():
        yield part
        chunk = b"\xff" * (1 << 20)
        for _ in range(limit // len(chunk) + 1):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    status, headers, body = request(server, "POST", "/api/analyze", stream(),
                                    {"Content-Type": f"multipart/form-data; boundary={boundary}"}, chunked=True)
    assert status == 413
    assert "limit is 50 MB" in error_of(status, headers, body)


def test_refuses_an_image_over_the_pixel_limit(server):
    side = int(MAX_PIXELS ** 0.5) + 1000
    status, headers, body = post(server, "/api/analyze", image=("huge.png", png_header_only(side, side)),
                                 annotations=(XML.name, XML.read_bytes()))
    assert status == 413
    message = error_of(status, headers, body)
    assert message.startswith("huge.png: image is") and f"{MAX_PIXELS:,}" in message


def test_refuses_a_damaged_image_naming_it(server):
    data = IMAGE.read_bytes()
    status, headers, body = post(server, "/api/analyze", image=("cut.jpg", data[: len(data) // 3]),
                                 annotations=(XML.name, XML.read_bytes()))
    assert status == 400
    assert error_of(status, headers, body).startswith("cut.jpg: damaged or truncated")


def test_unknown_results_and_foreign_hosts(server):
    status, headers, body = request(server, "GET", "/api/results/not-a-result/cell.csv")
    assert status == 404 and "result not found" in error_of(status, headers, body)
    status, headers, body = request(server, "GET", "/api/health", headers={"Host": f"evil.example:{server.port}"})
    assert status == 400 and "127.0.0.1" in error_of(status, headers, body)  # DNS rebinding


def test_no_upload_is_left_behind(server):
    """Every upload folder is removed, whatever the request's outcome."""
    before = upload_dirs()
    post(server, "/api/analyze", image=("x.jpg", b"not an image"))
    post(server, "/api/analyze", image=(IMAGE.name, IMAGE.read_bytes()), annotations=("x.xml", b"<oops"))
    post(server, "/api/classify", image=("x.png", png_header_only(20000, 20000)))
    assert upload_dirs() <= before


# -- health, schema, page ---------------------------------------------------------------------------
def test_health_and_openapi(server):
    status, _, body = request(server, "GET", "/api/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok"
    assert health["version"] == __version__
    assert health["model_id"] == server.classifier.model_id
    assert health["detector"]  # the shipped detector's id (or "classical" without its bundle)
    assert health["limits"] == {"upload_bytes": 50 << 20, "pixels": MAX_PIXELS}
    status, headers, body = request(server, "GET", "/openapi.json")
    schema = json.loads(body)
    assert status == 200 and schema["info"]["version"] == __version__
    assert {"/api/analyze", "/api/classify", "/api/health", "/api/results/{result_id}/{name}"} <= set(schema["paths"])
    assert request(server, "GET", "/docs")[0] == 404  # FastAPI's Swagger page would load from a CDN


def test_page_and_its_assets_are_served_locally(server):
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    page = body.decode()
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page
        assert request(server, "GET", asset)[0] == 200
    assert request(server, "GET", "/static/favicon.svg")[0] == 200  # else the browser asks for /favicon.ico: a 404
    web = ROOT / "chromodesk" / "web"
    for file in web.iterdir():  # no address elsewhere (an SVG's namespace name is not fetched)
        assert not re.findall(r'(?<!xmlns=")https?://', file.read_text()), file


# -- the command ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(*args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "chromodesk", "serve", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_serve_command_answers_on_loopback_and_stops_on_ctrl_c():
    port = _free_port()
    proc = _serve("--port", str(port), "--device", "cpu")
    try:
        deadline, health = time.monotonic() + 120, None
        while health is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/health")
                health = json.loads(conn.getresponse().read())
                conn.close()
            except OSError:
                time.sleep(0.2)
        assert health is not None, "no answer in 120 s"
        assert health["version"] == __version__ and health["device"] == "cpu"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert f"http://127.0.0.1:{port}" in out  # uvicorn says where it listens
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_serve_with_a_missing_model_is_a_one_line_usage_error(tmp_path):
    proc = _serve("--port", str(_free_port()), "--model", str(tmp_path / "nope.json"))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("chromodesk: ") and "nope.json" in lines[0], out


# -- the page in a real browser ---------------------------------------------------------------------
def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMODESK_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from the system (apt's ``chromium``), never one downloaded by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; no browser download is needed)")
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium executable (apt-get install chromium, or set CHROMODESK_CHROMIUM)")
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        instance = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(120_000)  # a loaded CI machine: waiting longer costs nothing when all is well
    tab.errors, tab.foreign = [], []
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.on("console", lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None)
    tab.on("request", lambda req: None if req.url.startswith(server.url) else tab.foreign.append(req.url))
    tab.goto(server.url + "/")
    yield tab
    context.close()


def _wait_until(page, expression: str, timeout_s: float = 120.0) -> None:
    """Poll a condition from here, not with ``wait_for_function``: the page's Content Security
    Policy (script-src 'self') forbids the eval that Playwright's in-page polling needs, which only
    shows when the condition is not already true at the first look (a slower model load)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(100)


def test_browser_uploads_and_shows_the_result(page, server, direct, tmp_path):
    """The real page in headless Chromium: choose the image and its XML, analyse, and see the ISCN,
    46 table rows, the annotated image and the karyogram; nothing is fetched from elsewhere.
    Saves a screenshot (docs/web-page.png with CHROMODESK_WRITE_DOCS=1)."""
    _wait_until(page, "document.getElementById('health').textContent.includes('model')")
    page.set_input_files("#image-input", str(IMAGE))
    page.set_input_files("#xml-input", str(XML))
    assert "103201.jpg" in page.inner_text("#chosen") and "103201.xml" in page.inner_text("#chosen")
    page.click("#analyse")
    page.wait_for_selector("#results", state="visible", timeout=120_000)
    assert page.inner_text("#iscn") == direct.cell.iscn
    rows = page.locator("#chromosomes tbody tr")
    assert rows.count() == 46
    table_labels = sorted(rows.nth(i).locator("td").nth(1).inner_text() for i in range(46))
    assert table_labels == sorted(r.label for r in direct.doc)
    for image in ("#annotated", "#karyogram"):
        _wait_until(page, f"document.querySelector('{image}').complete && document.querySelector('{image}').naturalWidth > 0")
    for link in ("#dl-csv", "#dl-karyogram", "#dl-annotated", "#dl-voc"):
        href = page.get_attribute(link, "href")
        assert href and href.startswith("/api/results/")
        assert request(server, "GET", href)[0] == 200
    assert page.is_hidden("#error") and page.is_hidden("#progress")
    assert not page.errors and not page.foreign
    page.click("#chromosomes th[data-key='label']")  # sorted by class: homologues side by side, as one reads a cell
    page.evaluate("window.scrollTo(0, 0)")
    shot = SCREENSHOT if os.environ.get("CHROMODESK_WRITE_DOCS") == "1" else tmp_path / "web-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_browser_drop_and_refusal(page):
    """Drag-and-drop takes the image and the XML apart by name; a text file named .jpg is refused and
    the server's one-line message shows on the page."""
    payload = {"text": base64.b64encode(b"not a picture at all\n").decode(), "xml": base64.b64encode(XML.read_bytes()).decode()}
    page.evaluate("""(p) => {
        const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes(p.text)], "notes.jpg", {type: "image/jpeg"}));
        dt.items.add(new File([bytes(p.xml)], "notes.xml", {type: "text/xml"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", payload)
    chosen = page.inner_text("#chosen")
    assert "image: notes.jpg" in chosen and "annotation: notes.xml" in chosen
    page.click("#analyse")
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    assert page.inner_text("#error").startswith("notes.jpg: not an image")
    assert page.is_hidden("#results")
