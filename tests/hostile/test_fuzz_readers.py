"""Property-based fuzzing of the three readers that take files from elsewhere: VOC XML, images
and review sessions. Whatever the bytes, a reader either returns something the rest of the
app can trust (boxes inside the image and not empty, an 8-bit picture that is not blank) or
raises InputError with one line that names the file. Nothing else may escape."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from chromodesk.core.errors import InputError

from .corpus import SAMPLE, valid_session

# 150 examples each on CI; CHROMODESK_FUZZ_EXAMPLES=2000 for a longer hunt
FUZZ = settings(max_examples=int(os.environ.get("CHROMODESK_FUZZ_EXAMPLES", "150")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(300)


def refused_cleanly(exc: InputError, path: Path) -> None:
    message = str(exc)
    assert str(path) in message and "\n" not in message, message


# -- VOC ---------------------------------------------------------------------------------------------
def text_field():
    return st.one_of(st.integers(-10**7, 10**7).map(str), st.floats().map(repr), st.text(max_size=10),
                     st.sampled_from(["", " ", "1e999", "-0", "0x1F", "１２", "NaN", "٣"]))


@st.composite
def voc_documents(draw) -> str:
    objects = []
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.one_of(st.sampled_from(["1", "A1", "X", "Y", "22", "chr7", "G21"]), st.text(max_size=6)))
        tags = draw(st.lists(st.sampled_from(["xmin", "ymin", "xmax", "ymax"]), min_size=0, max_size=5))
        tags = tags if draw(st.booleans()) else ["xmin", "ymin", "xmax", "ymax"]
        box = "".join(f"<{t}>{escape(draw(text_field()))}</{t}>" for t in tags)
        wrap = draw(st.sampled_from(["<bndbox>{}</bndbox>", "{}", "<bndbox>{}</bndbox><bndbox>{}</bndbox>"]))
        objects.append(f"<object><name>{escape(name)}</name>{wrap.format(box, box)}</object>")
    size = draw(st.sampled_from(["", "<size><width>1000</width><height>800</height></size>",
                                 "<size><width>0</width><height>-3</height></size>", "<size><width>x</width></size>"]))
    root = draw(st.sampled_from(["annotation", "annotation", "annotations", "svg"]))
    return f"<{root}>{size}{''.join(objects)}</{root}>"


@FUZZ
@given(doc=voc_documents(), encoding=st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-32"]))
def test_voc_reader_on_generated_annotations(tmp_path, doc, encoding):
    from chromodesk.core.voc import read_voc

    path = tmp_path / "fuzz.xml"
    try:
        path.write_bytes(f'<?xml version="1.0" encoding="{encoding}"?>{doc}'.encode(encoding))
    except UnicodeEncodeError:
        path.write_bytes(doc.encode("utf-8"))
    try:
        ann = read_voc(path, (1000, 800))
    except InputError as exc:
        refused_cleanly(exc, path)
        return
    for o in ann.objects:
        assert 0 <= o.box.xmin < o.box.xmax <= 1000 and 0 <= o.box.ymin < o.box.ymax <= 800


@FUZZ
@given(data=st.binary(max_size=2048))
def test_voc_reader_on_arbitrary_bytes(tmp_path, data):
    from chromodesk.core.voc import read_voc

    path = tmp_path / "bytes.xml"
    path.write_bytes(data)
    try:
        read_voc(path, (100, 100))
    except InputError as exc:
        refused_cleanly(exc, path)


# -- images --------------------------------------------------------------------------------------------
def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


VALID_IMAGES = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "TIFF", "BMP")}


@st.composite
def damaged_images(draw) -> bytes:
    data = bytearray(VALID_IMAGES[draw(st.sampled_from(sorted(VALID_IMAGES)))])
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "header"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[pos:]
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif len(data) > 24:  # damage the part that declares size and depth
            data[draw(st.integers(8, 24))] = draw(st.integers(0, 255))
    return bytes(data)


@FUZZ
@given(data=damaged_images(), suffix=st.sampled_from([".png", ".jpg", ".tif", ".bmp"]))
def test_image_reader_on_damaged_files(tmp_path, data, suffix):
    from chromodesk.core.imaging import load_gray

    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(data)
    try:
        image = load_gray(path)
    except InputError as exc:
        refused_cleanly(exc, path)
        return
    assert image.gray.dtype == np.uint8 and image.gray.ndim == 2
    assert image.gray.min() < image.gray.max()  # never a blank picture passed on as if it were a cell


# -- sessions ------------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@st.composite
def damaged_sessions(draw) -> dict:
    data = json.loads(json.dumps(valid_session()))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["top", "image", "record", "cell"]))
        if where == "top":
            data[draw(st.sampled_from(sorted(data)))] = draw(json_values)
        elif where == "image" and isinstance(data.get("image"), dict):
            data["image"][draw(st.sampled_from(["path", "width", "height", "sha256"]))] = draw(json_values)
        elif where == "record" and isinstance(data.get("records"), list) and data["records"]:
            record = data["records"][draw(st.integers(0, len(data["records"]) - 1))]
            if isinstance(record, dict):
                key = draw(st.sampled_from(sorted(record) + ["extra"]))
                record[key] = draw(st.one_of(json_values, st.lists(st.integers(-5000, 5000), min_size=4, max_size=4)))
        elif isinstance(data.get("cell"), dict):
            data["cell"][draw(st.sampled_from(["not_analysable", "comment", "in_report"]))] = draw(json_values)
    return data


@FUZZ
@given(data=damaged_sessions())
def test_session_reader_on_damaged_sessions(tmp_path, data):
    from chromodesk.core.imaging import file_sha256
    from chromodesk.core.session import load_session

    path = tmp_path / "fuzz.chromodesk.json"
    path.write_text(json.dumps(data))
    try:
        doc = load_session(path, expected_sha256=file_sha256(SAMPLE))
    except InputError as exc:
        refused_cleanly(exc, path)
        return
    for r in doc:
        assert 0 <= r.box.xmin < r.box.xmax <= doc.width and 0 <= r.box.ymin < r.box.ymax <= doc.height
        assert r.probabilities is None or (len(r.probabilities) == 24 and abs(sum(r.probabilities) - 1) <= 0.01)
