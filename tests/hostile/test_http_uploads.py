"""The same hostile images and annotations, uploaded to ``chromodesk serve``'s /api/analyze over
real loopback HTTP: a refusal is a 4xx with one JSON line naming the uploaded file, an accepted
upload gives the same answer as the command line. Folders, pipes and devices cannot be
uploaded, so they are left to the command-line test."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.test_server import error_of, multipart, request, server  # noqa: E402,F401  (server: the fixture)

from .corpus import CASES, SAMPLE, SAMPLE_XML, Hostile  # noqa: E402

pytestmark = pytest.mark.timeout(120)

UPLOADS = [h for h in CASES if h.kind in ("image", "voc") and h.id not in
           {"image:fifo", "image:directory-named-jpg", "image:symlink-to-dev-zero", "image:broken-symlink",
            "image:missing-file", "image:newline-in-name", "voc:directory", "voc:fifo", "voc:symlink-to-dev-zero"}]


# where HTTP answers otherwise, and why: the server takes only the four formats a microscope
# writes (judged by the first bytes), and its 50 MB body limit cuts a request before any file
# in it is read, so that refusal names the limit, not the file
OVER_HTTP = {"image:animated-gif": (415, "not an image"), "image:webp": (415, "not an image"),
             "voc:huge-comment": (413, "50 MB")}


@pytest.fixture(scope="module")
def reference(server):  # noqa: F811
    from chromodesk.pipeline import analyze

    return [r.label for r in analyze(SAMPLE, classifier=server.classifier, device="cpu").doc]


@pytest.mark.parametrize("h", UPLOADS, ids=[h.id for h in UPLOADS])
def test_hostile_uploads(h: Hostile, tmp_path, server, reference):  # noqa: F811
    path = h.build(tmp_path)
    if h.kind == "image":
        files = {"image": (path.name, path.read_bytes())}
        beside = path.with_suffix(".xml")
        if beside.is_file():
            files["annotations"] = (beside.name, beside.read_bytes())
        named = path.name
    else:
        files = {"image": (SAMPLE.name, SAMPLE.read_bytes()), "annotations": (path.name, path.read_bytes())}
        named = path.name
    body, headers = multipart(**files)
    status, response_headers, payload = request(server, "POST", "/api/analyze", body, headers)
    if h.id in OVER_HTTP:
        code, says = OVER_HTTP[h.id]
        assert status == code and says in error_of(status, response_headers, payload), payload[:300]
        return
    if h.expect == "error":
        assert 400 <= status < 500, f"{h.id}: status {status}: {payload[:300]!r}"
        message = error_of(status, response_headers, payload)
        assert named in message, f"{h.id}: the refusal does not name {named}: {message}"
        return
    assert status == 200, f"{h.id}: status {status}: {payload[:300]!r}"
    result = json.loads(payload)
    if h.expect == "warn":
        assert any(h.says.lower() in w.lower() for w in result["warnings"]), result["warnings"]
    if h.expect == "same":
        labels = [c["label"] for c in result["chromosomes"]]
        assert len(labels) == len(reference)
        assert sum(a == b for a, b in zip(labels, reference)) >= 0.9 * len(reference)


def test_the_xml_is_never_taken_from_the_sample_folder(server):  # noqa: F811
    """An upload is analysed with the annotation uploaded with it, or none: never a file that
    happens to sit on the server's disk next to a same-named image."""
    body, headers = multipart(image=(SAMPLE.name, SAMPLE.read_bytes()))
    status, _, payload = request(server, "POST", "/api/analyze", body, headers)
    assert status == 200 and json.loads(payload)["boxes_source"] == "detected"
    assert SAMPLE_XML.is_file()
