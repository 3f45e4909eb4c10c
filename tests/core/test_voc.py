"""Pascal VOC files as other labs write them: names, 1-based boxes, quirks, and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from chromodesk.core.document import Box, Karyotype
from chromodesk.core.errors import InputError
from chromodesk.core.voc import find_annotation, read_voc, voc_bytes, write_voc


def obj(name: str, xmin, ymin, xmax, ymax) -> str:
    return (
        f"  <object>\n    <name>{name}</name>\n    <bndbox>\n"
        f"      <xmin>{xmin}</xmin>\n      <ymin>{ymin}</ymin>\n"
        f"      <xmax>{xmax}</xmax>\n      <ymax>{ymax}</ymax>\n    </bndbox>\n  </object>\n"
    )


def voc(*objects: str, size=(200, 100), filename="cell.jpg") -> str:
    head = f"<annotation>\n  <filename>{filename}</filename>\n"
    if size is not None:
        head += f"  <size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>\n"
    return head + "".join(objects) + "</annotation>\n"


def write(tmp_path: Path, text: str, name: str = "cell.xml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read_one(tmp_path: Path, name: str):
    ann = read_voc(write(tmp_path, voc(obj(name, 11, 21, 30, 60))))
    assert len(ann.objects) == 1
    return ann, ann.objects[0]


# -- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, label", [("A1", "1"), ("C7", "7"), ("G22", "22"), ("X", "X"), ("Y", "Y"),
                                         ("7", "7"), ("22", "22"), ("chr7", "7"), ("ChrX", "X")])
def test_names_map_to_the_24_labels(tmp_path, name, label):
    ann, o = read_one(tmp_path, name)
    assert (o.name, o.label) == (name, label)
    assert ann.warnings == []


@pytest.mark.parametrize("name", ["A4", "marker", ""])
def test_unknown_name_is_kept_and_flagged(tmp_path, name):
    ann, o = read_one(tmp_path, name)
    assert o.label is None and o.name == name
    assert o.box == Box(10, 20, 30, 60)  # kept with its box, never dropped
    assert len(ann.warnings) == 1
    assert "cell.xml" in ann.warnings[0] and "unknown name" in ann.warnings[0] and repr(name) in ann.warnings[0]


def test_missing_name_element_is_kept_as_unknown(tmp_path):
    text = voc(obj("A1", 1, 1, 5, 5)).replace("<name>A1</name>", "")
    ann = read_voc(write(tmp_path, text))
    assert [(o.name, o.label) for o in ann.objects] == [("", None)]
    assert any("unknown name" in w for w in ann.warnings)


# -- boxes -----------------------------------------------------------------------------------
def test_vocs_one_based_inclusive_boxes_become_zero_based_exclusive(tmp_path):
    ann = read_voc(write(tmp_path, voc(obj("A1", 1, 1, 200, 100), obj("B4", 11, 21, 30, 60))))
    assert ann.objects[0].box == Box(0, 0, 200, 100)  # the whole 200 x 100 image
    assert ann.objects[1].box == Box(10, 20, 30, 60)
    assert ann.objects[1].box.width == 20  # VOC 11..30 inclusive is 20 pixels
    assert ann.warnings == []


def test_fractional_coordinates_are_rounded(tmp_path):
    ann = read_voc(write(tmp_path, voc(obj("A1", "10.6", "20.2", "30.4", "59.7"))))
    assert ann.objects[0].box == Box(10, 19, 30, 60)


def test_box_overshooting_the_image_is_clipped_with_a_warning(tmp_path):
    ann = read_voc(write(tmp_path, voc(obj("A1", 150, 0, 201, 90), obj("C7", -5, 50, 40, 130))))
    assert [o.box for o in ann.objects] == [Box(149, 0, 200, 90), Box(0, 49, 40, 100)]
    assert len(ann.warnings) == 2
    assert all("cell.xml" in w and "clipped" in w for w in ann.warnings)
    assert "object 1 (A1)" in ann.warnings[0] and "object 2 (C7)" in ann.warnings[1]


def test_real_image_size_wins_over_the_files_size(tmp_path):
    path = write(tmp_path, voc(obj("A1", 1, 1, 150, 90), size=(200, 100)))
    ann = read_voc(path, image_size=(120, 80))
    assert (ann.width, ann.height) == (120, 80)
    assert ann.objects[0].box == Box(0, 0, 120, 80)


def test_without_a_size_boxes_are_not_clipped(tmp_path):
    ann = read_voc(write(tmp_path, voc(obj("A1", 1, 1, 500, 400), size=None)))
    assert ann.width is None and ann.objects[0].box == Box(0, 0, 500, 400)


def test_zero_size_block_does_not_erase_every_box(tmp_path):
    # some labelling tools write <width>0</width> when they could not read the image
    ann = read_voc(write(tmp_path, voc(obj("A1", 11, 21, 30, 60), size=(0, 0))))
    assert [o.box for o in ann.objects] == [Box(10, 20, 30, 60)]
    assert any("0x0" in w for w in ann.warnings)


def test_broken_size_block_does_not_matter_when_the_image_size_is_known(tmp_path):
    text = voc(obj("A1", 11, 21, 30, 60)).replace("<width>200</width>", "<width></width>")
    assert read_voc(write(tmp_path, text), image_size=(200, 100)).objects[0].box == Box(10, 20, 30, 60)
    with pytest.raises(InputError, match=r"<width> missing in <size>"):
        read_voc(tmp_path / "cell.xml")


@pytest.mark.parametrize("coords", [(30, 21, 11, 60), (11, 60, 30, 21), (11, 21, 10, 60)])
def test_inverted_box_is_reported_and_skipped(tmp_path, coords):
    ann = read_voc(write(tmp_path, voc(obj("A1", 1, 1, 5, 5), obj("C7", *coords))))
    assert [o.name for o in ann.objects] == ["A1"]
    assert len(ann.warnings) == 1
    assert "cell.xml" in ann.warnings[0] and "object 2 (C7)" in ann.warnings[0] and "empty box" in ann.warnings[0]


def test_single_pixel_box_is_not_empty(tmp_path):
    # VOC is inclusive: xmin == xmax is one pixel wide
    ann = read_voc(write(tmp_path, voc(obj("A1", 5, 5, 5, 5))))
    assert ann.objects[0].box == Box(4, 4, 5, 5)


def test_box_entirely_outside_the_image_is_reported_and_skipped(tmp_path):
    ann = read_voc(write(tmp_path, voc(obj("A1", 300, 10, 320, 20))))
    assert ann.objects == []
    assert "empty box" in ann.warnings[0] and "skipped" in ann.warnings[0]


# -- bad files -----------------------------------------------------------------------------
def assert_error(path: Path, *fragments: str, image_size=None) -> str:
    with pytest.raises(InputError) as info:
        read_voc(path, image_size)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_malformed_xml_names_file_and_line(tmp_path):
    text = "<annotation>\n  <filename>a.jpg</filename>\n  <object>\n    <name>A1</name>\n  </objekt>\n</annotation>\n"
    assert_error(write(tmp_path, text), "malformed XML", "line 5")


def test_truncated_xml(tmp_path):
    text = voc(obj("A1", 1, 1, 5, 5), obj("A2", 1, 1, 5, 5))
    assert_error(write(tmp_path, text[: len(text) // 2]), "malformed XML", "line")


def test_empty_file(tmp_path):
    assert_error(write(tmp_path, ""), "annotation file is empty")


def test_billion_laughs_is_refused(tmp_path):
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
        + "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1 if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
        + "]>\n<annotation><filename>&lol9;</filename></annotation>\n"
    )
    assert_error(write(tmp_path, bomb), "unsafe XML")


def test_external_entity_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    text = (f'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
            "<annotation><object><name>&xxe;</name></object></annotation>\n")
    message = assert_error(write(tmp_path, text), "unsafe XML")
    assert "password" not in message


def test_not_a_voc_file(tmp_path):
    assert_error(write(tmp_path, "<svg><rect/></svg>"), "not a Pascal VOC file", "<svg>")


def test_object_without_bndbox(tmp_path):
    text = voc(obj("A1", 1, 1, 5, 5), "<object><name>C7</name></object>")
    assert_error(write(tmp_path, text), "object 2 (C7)", "no <bndbox>")


def test_missing_coordinate(tmp_path):
    text = voc(obj("A1", 1, 1, 5, 5)).replace("<ymax>5</ymax>", "")
    assert_error(write(tmp_path, text), "<ymax> missing", "object 1 (A1)")


@pytest.mark.parametrize("value", ["abc", "12px", "inf", "nan"])
def test_non_numeric_coordinate(tmp_path, value):
    assert_error(write(tmp_path, voc(obj("B5", 1, value, 5, 5))), "<ymin>", "object 1 (B5)", "not a number", repr(value))


def test_missing_file(tmp_path):
    assert_error(tmp_path / "absent.xml", "annotation file not found")


# -- finding and writing ---------------------------------------------------------------------
def test_find_annotation_beside_the_image(tmp_path):
    image = tmp_path / "cell.jpg"
    xml = write(tmp_path, voc())
    assert find_annotation(image) == xml


def test_find_annotation_in_sibling_annotations_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    xml = write(tmp_path / "annotations", voc())
    assert find_annotation(tmp_path / "images" / "cell.jpg") == xml


def test_find_annotation_in_annotations_subfolder(tmp_path):
    (tmp_path / "annotations").mkdir()
    xml = write(tmp_path / "annotations", voc())
    assert find_annotation(tmp_path / "cell.jpg") == xml


def test_find_annotation_prefers_the_file_beside_the_image(tmp_path):
    (tmp_path / "annotations").mkdir()
    write(tmp_path / "annotations", voc())
    beside = write(tmp_path, voc())
    assert find_annotation(tmp_path / "cell.jpg") == beside


def test_find_annotation_none(tmp_path):
    (tmp_path / "annotations").mkdir()
    write(tmp_path / "annotations", voc(), name="other.xml")
    assert find_annotation(tmp_path / "cell.jpg") is None


def make_doc() -> Karyotype:
    doc = Karyotype("/data/cells/cell.jpg", "0" * 64, 200, 100)
    doc.add(Box(0, 0, 200, 100), file_label="1", file_name="A1")  # whole image: VOC 1..200
    doc.add(Box(10, 20, 30, 60), file_label="4", file_name="B4", final="7", confirmed_by="ana")
    doc.add(Box(50, 5, 60, 15), file_name="marker")  # unknown: keeps its name
    doc.add(Box(70, 5, 80, 15))  # no name at all
    return doc


def test_write_voc_round_trip(tmp_path):
    doc = make_doc()
    path = write_voc(doc, tmp_path / "out" / "cell.xml")
    ann = read_voc(path)
    assert (ann.filename, ann.width, ann.height) == ("cell.jpg", 200, 100)
    assert [o.box for o in ann.objects] == [r.box for r in doc]
    assert [o.name for o in ann.objects] == ["A1", "C7", "marker", "unknown"]  # final label wins; Denver names
    assert [o.label for o in ann.objects] == ["1", "7", None, None]
    assert "<confirmed_by>ana</confirmed_by>" in path.read_text()
    assert "<xmin>1</xmin>" in path.read_text()  # 1-based on disk
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # atomic: no temp file left


def test_voc_bytes_plain_names():
    text = voc_bytes(make_doc(), denver=False).decode()
    assert "<name>1</name>" in text and "<name>7</name>" in text and "<name>A1</name>" not in text


# -- the shared data ---------------------------------------------------------------------------
def test_real_annotation(real_image):
    _, xml = real_image
    ann = read_voc(xml, image_size=(1134, 759))
    assert len(ann.objects) == 46
    assert all(o.label is not None for o in ann.objects)
    assert ann.warnings == []
    assert ann.objects[0].name == "A1" and ann.objects[0].label == "1"
    assert ann.objects[0].box == Box(42, 378, 176, 478)  # VOC 43..176 x 379..478


def test_real_box_at_the_image_edge_is_clipped(metaphase_dir):
    # 1050191.xml has an A1 box with <ymin>0</ymin>: one pixel beyond a 1-based image
    ann = read_voc(metaphase_dir / "annotations" / "1050191.xml", image_size=(858, 1022))
    clipped = [o for o in ann.objects if o.box == Box(398, 0, 482, 187)]
    assert len(clipped) == 1 and clipped[0].label == "1"
    assert any("1050191.xml" in w and "(A1) clipped" in w for w in ann.warnings)
