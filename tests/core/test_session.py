"""Session files: the reviewer's work comes back exactly, and a wrong or damaged file is refused clearly."""

from __future__ import annotations

import json

import pytest

from chromodesk.core import atomic, session
from chromodesk.core.document import Box, Karyotype
from chromodesk.core.errors import InputError
from chromodesk.core.labels import CLASSES
from chromodesk.core.session import SCHEMA_VERSION, default_session_path, load_session, save_session

SHA = "0123456789abcdef" * 4
RECORD_FIELDS = [
    "id", "box", "file_label", "file_name", "predicted", "probabilities", "assigned", "final",
    "confirmed_by", "confirmed_at", "model_id", "angle", "p_up", "turned", "origin", "doubt",
]
P_UP = tuple(0.03 + 0.04 * i + 1e-13 * i for i in range(len(CLASSES)))  # P(p-arm up) per class, awkward floats


def make_doc() -> Karyotype:
    doc = Karyotype("/slides/cell 7/103082.jpg", SHA, 1134, 759, annotation_path="/slides/ann/103082.xml",
                    warnings=["103082.xml: object 3 has unknown name 'blob'; kept, flagged for review"])
    doc.add(Box(43, 378, 176, 478), record_id="c01", file_label="1", file_name="A1")
    doc.add(Box(10, 20, 40, 90), record_id="c02", file_name="blob", origin="detected", doubt=0.8109302162163288)
    doc.add(Box(300, 300, 330, 370), record_id="c03", file_label="X", file_name="X")
    probs = [(i + 1) / 300.0 + 1e-13 * i for i in range(len(CLASSES))]  # awkward floats on purpose
    probs[CLASSES.index("7")] = 1.0 - sum(probs) + probs[CLASSES.index("7")]
    doc.set_prediction("c01", probs, "bundle-2024.05 sha:1f2e", angle=-87.123456789, p_up=P_UP)
    doc.set_prediction("c03", list(reversed(probs)), "bundle-2024.05 sha:1f2e", angle=12.5, p_up=P_UP[::-1])
    doc.set_assignments({"c01": "7", "c03": "X"})
    doc.set_final("c01", "1", "Dr. Lí", when="2024-05-01T10:00:00+00:00")
    doc.set_turned("c03", True)
    return doc


def as_tuple(doc: Karyotype):
    head = (doc.image_path, doc.image_sha256, doc.width, doc.height, doc.annotation_path, doc.warnings)
    return head, [tuple(getattr(r, f) for f in RECORD_FIELDS) for r in doc]


def test_save_and_load_round_trip_exactly(tmp_path):
    doc = make_doc()
    path = save_session(doc, tmp_path / "cell.chromodesk.json")
    loaded = load_session(path, expected_sha256=SHA.upper())  # hex case does not matter
    assert as_tuple(loaded) == as_tuple(doc)
    assert loaded.get("c01").probabilities == doc.get("c01").probabilities  # bit-exact floats
    assert loaded.get("c01").confirmed and loaded.get("c02").unknown_name
    assert loaded.new_id() not in loaded.records  # new boxes never collide with restored ids
    assert json.loads(path.read_text("utf-8"))["schema_version"] == SCHEMA_VERSION


def test_which_end_is_up_comes_back_and_older_sessions_still_load(tmp_path):
    """The crop angle, P(p-arm up) per class and the technician's turn survive a save; a session
    saved before they existed loads with none of them (the karyogram then turns nothing)."""
    path = save_session(make_doc(), tmp_path / "cell.chromodesk.json")
    loaded = load_session(path)
    assert loaded.get("c01").p_up == P_UP and loaded.get("c01").angle == -87.123456789
    assert loaded.get("c03").turned is True and loaded.get("c03").shown_turned
    assert loaded.get("c01").turned is None and loaded.get("c02").p_up is None
    older = json.loads(path.read_text("utf-8"))
    for record in older["records"]:
        for key in ("angle", "p_up", "turned"):
            del record[key]
    path.write_text(json.dumps(older), "utf-8")
    old = load_session(path)
    assert all(r.angle is None and r.p_up is None and r.turned is None and not r.shown_turned for r in old)


def test_session_of_another_image_is_refused(tmp_path):
    path = save_session(make_doc(), tmp_path / "s.json")
    with pytest.raises(InputError, match=r"s\.json.*different image") as err:
        load_session(path, expected_sha256="f" * 64)
    assert "\n" not in str(err.value)


def edited(data: bytes, change) -> bytes:
    content = json.loads(data)
    change(content)
    return json.dumps(content).encode()


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[: len(data) // 2], "corrupt session file"),
    (lambda data: b"\xff\xfe" + data, "not UTF-8"),
    (lambda data: b"[1, 2]", "not a ChromoDesk session"),
    (lambda data: data.replace(b'"schema_version": 1', b'"schema_version": 99'), "version 99.*newer"),
    (lambda data: data.replace(b'"final": "1"', b'"final": "23"'), "c01.final: unknown label '23'"),
    (lambda data: edited(data, lambda d: d["records"][0].update(box=["43", 378, 176, 478])), "c01.box"),
    (lambda data: edited(data, lambda d: d["records"][1].update(id="c01")), "duplicate chromosome id 'c01'"),
    (lambda data: edited(data, lambda d: d["records"][0].update(probabilities=[0.5])), "c01.probabilities"),
    (lambda data: edited(data, lambda d: d["image"].update(width=0)), "image.width"),
    (lambda data: edited(data, lambda d: d["records"][0].update(p_up=[0.5] * 23)), "c01.p_up"),
    (lambda data: edited(data, lambda d: d["records"][0].update(p_up=[0.5] * 23 + [1.5])), "c01.p_up"),
    (lambda data: edited(data, lambda d: d["records"][0].update(p_up=[0.5] * 23 + ["up"])), "c01.p_up"),
    (lambda data: edited(data, lambda d: d["records"][0].update(p_up=[0.5] * 23 + [10**400])), "c01.p_up"),
    (lambda data: edited(data, lambda d: d["records"][0].update(p_up=0.5)), "c01.p_up"),
    (lambda data: data.replace(b'"angle": 12.5', b'"angle": NaN'), "corrupt session file"),
    (lambda data: edited(data, lambda d: d["records"][2].update(angle="12.5")), "c03.angle"),
    (lambda data: edited(data, lambda d: d["records"][2].update(angle=720)), "c03.angle"),
    (lambda data: edited(data, lambda d: d["records"][2].update(turned="yes")), "c03.turned"),
    (lambda data: edited(data, lambda d: d["records"][2].update(turned=1)), "c03.turned"),
    (lambda data: edited(data, lambda d: d["records"][0].update(probabilities=[10**400] + [0] * 23)),
     "c01.probabilities"),
    (lambda data: edited(data, lambda d: d["records"][1].update(doubt=-1)), "c02.doubt"),
    (lambda data: edited(data, lambda d: d["records"][1].update(doubt="high")), "c02.doubt"),
    (lambda data: edited(data, lambda d: d["records"][1].update(doubt=True)), "c02.doubt"),
])
def test_damaged_session_raises_input_error_naming_the_file(tmp_path, damage, message):
    path = save_session(make_doc(), tmp_path / "cell.chromodesk.json")
    damaged = damage(path.read_bytes())
    assert damaged != path.read_bytes()
    path.write_bytes(damaged)
    with pytest.raises(InputError, match=message) as err:
        load_session(path)
    assert err.value.path == str(path)


def test_missing_session_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_session(tmp_path / "nope.json")


def test_failed_save_keeps_previous_session(tmp_path, monkeypatch):
    doc = make_doc()
    path = save_session(doc, tmp_path / "cell.chromodesk.json")
    before = path.read_bytes()
    doc.set_final("c03", "Y", "Dr. Lí")

    def refuse(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError):
        save_session(doc, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_session(path).get("c03").final is None
    assert [p.name for p in tmp_path.iterdir()] == ["cell.chromodesk.json"]


def test_default_session_path_beside_image_or_in_user_data(tmp_path, monkeypatch):
    image = tmp_path / "slides" / "103082.jpg"
    image.parent.mkdir()
    image.write_bytes(b"jpeg")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_session_path(image) == image.with_name("103082.jpg.chromodesk.json")

    monkeypatch.setattr(session, "_writable", lambda folder: False)  # a read-only slide folder
    fallback = default_session_path(image)
    assert fallback.parent == tmp_path / "data" / "chromodesk" / "sessions"
    assert fallback.suffix == ".json" and fallback == default_session_path(str(image))  # stable key
    other = tmp_path / "other" / "103082.jpg"
    assert default_session_path(other) != fallback  # same name elsewhere: a different session

    # work saved while the folder was read-only is found again once it becomes writable
    save_session(make_doc(), fallback)
    monkeypatch.setattr(session, "_writable", lambda folder: True)
    assert default_session_path(image) == fallback


def test_an_id_given_once_never_names_another_chromosome_after_a_save(tmp_path):
    """Delete c03, save, reopen, draw a box: the new one is not a second "c03" (an export or a
    report made before may already name c03)."""
    doc = Karyotype(image_path="cell.png", image_sha256="ab" * 32, width=100, height=100)
    for _ in range(3):
        doc.add(Box(1, 1, 10, 10))
    doc.remove("c03")
    back = load_session(save_session(doc, tmp_path / "s.json"))
    assert back.add(Box(5, 5, 20, 20)).id == "c04"
    # a session saved before the counter was kept: new ids still come after the ones in use
    data = json.loads((tmp_path / "s.json").read_text())
    del data["cell"]["next_id"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert load_session(tmp_path / "old.json").add(Box(5, 5, 20, 20)).id == "c03"


def test_a_crafted_next_id_is_refused_with_its_field_named(tmp_path):
    doc = Karyotype(image_path="cell.png", image_sha256="ab" * 32, width=100, height=100)
    data = json.loads(save_session(doc, tmp_path / "s.json").read_text())
    data["cell"]["next_id"] = "many"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="cell.next_id"):
        load_session(tmp_path / "bad.json")
