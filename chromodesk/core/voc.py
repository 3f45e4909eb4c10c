"""Pascal VOC read/write: the one place that knows VOC's 1-based inclusive pixel boxes.

VOC ``xmin=1`` is the first pixel column; our boxes are 0-based with exclusive end, so
reading subtracts 1 from xmin/ymin and keeps xmax/ymax, writing does the reverse.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET  # only for *building* XML; parsing goes through defusedxml
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from .atomic import atomic_write_bytes
from .document import Box, Karyotype
from .errors import InputError
from .labels import denver_name, normalize_label
from .limits import MAX_ANNOTATION_BYTES, MAX_OBJECTS
from .safe_read import read_limited



@dataclass
class VocObject:
    name: str  # raw <name> text
    label: str | None  # normalised class, None if the name is unknown
    box: Box


@dataclass
class VocAnnotation:
    path: str
    filename: str | None
    width: int | None
    height: int | None
    objects: list[VocObject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _int(node, tag: str, path: Path, where: str) -> int:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise InputError(path, f"<{tag}> missing in {where}")
    try:
        return int(round(float(child.text.strip())))
    except (ValueError, OverflowError):  # OverflowError: "inf"
        raise InputError(path, f"<{tag}> in {where} is not a number: {child.text.strip()!r}") from None


def read_voc(path: str | Path, image_size: tuple[int, int] | None = None) -> VocAnnotation:
    """Parse a VOC file. ``image_size`` (width, height) clips boxes to the real image."""
    path = Path(path)
    root = _parse(path)
    if root.tag != "annotation":
        raise InputError(path, f"not a Pascal VOC file (root element <{root.tag}>, expected <annotation>)")

    width = height = None
    notes: list[str] = []
    if image_size is not None:
        width, height = image_size  # the real image wins; a broken <size> block does not matter then
    else:
        size = root.find("size")
        if size is not None and size.find("width") is not None and size.find("height") is not None:
            width, height = _int(size, "width", path, "<size>"), _int(size, "height", path, "<size>")
            if width <= 0 or height <= 0:  # some tools write 0x0 when they could not read the image
                notes.append(f"{path.name}: <size> is {width}x{height}; boxes not clipped")
                width = height = None
    ann = VocAnnotation(str(path), (root.findtext("filename") or "").strip() or None, width, height, warnings=notes)

    objects = list(root.iter("object"))
    if len(objects) > MAX_OBJECTS:
        raise InputError(path, f"has {len(objects):,} objects; a cell has at most {MAX_OBJECTS} chromosome boxes "
                               "(is this a whole-slide or another tool's file?)")
    kept: list[tuple[int, Box, str]] = []
    for index, obj in enumerate(objects, start=1):
        name = (obj.findtext("name") or "").strip()
        for tag in ("name", "bndbox"):
            if len(obj.findall(tag)) > 1:
                ann.warnings.append(f"{path.name}: object {index} has {len(obj.findall(tag))} <{tag}> elements; "
                                    "the first is used")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise InputError(path, f"object {index} ({name or 'no name'}) has no <bndbox>")
        where = f"the <bndbox> of object {index} ({name or 'no name'})"
        xmin, ymin, xmax, ymax = (_int(bnd, tag, path, where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        raw = Box(xmin - 1, ymin - 1, xmax, ymax)
        box = raw
        if width is not None and height is not None:
            box = raw.clipped(width, height)
            if box != raw and not box.is_empty():
                ann.warnings.append(f"{path.name}: object {index} ({name}) clipped to the image")
        if box.is_empty():
            ann.warnings.append(f"{path.name}: object {index} ({name or 'no name'}) has an empty box {raw.as_list()}, skipped")
            continue
        twin = next((i for i, b, n in kept if b == box and n == name), None)
        if twin is not None:  # listed twice, a chromosome would read as a trisomy
            ann.warnings.append(f"{path.name}: object {index} ({name or 'no name'}) repeats object {twin}: the same box "
                                "and name; ignored (a chromosome listed twice would count twice)")
            continue
        near = next((i for i, b, n in kept if n == name and box.iou(b) >= 0.9), None)
        if near is not None:  # crossing chromosomes can share a box: kept, but the reviewer is told
            ann.warnings.append(f"{path.name}: object {index} ({name or 'no name'}) has nearly the same box as object "
                                f"{near} and the same name; both kept: check that it is not listed twice")
        kept.append((index, box, name))
        label = normalize_label(name)
        if label is None:
            ann.warnings.append(f"{path.name}: object {index} has unknown name {name!r}; kept, flagged for review")
        ann.objects.append(VocObject(name, label, box))
    return ann


def _parse(path: Path):
    """The XML tree, decoded by us (BOM, then the declaration, else UTF-8) so that any encoding
    Python knows works (expat alone reads only a few) and an unknown one is named."""
    raw = read_limited(path, MAX_ANNOTATION_BYTES, "annotation file")
    if not raw.strip():
        raise InputError(path, "annotation file is empty")
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), None)
    declared = _DECLARATION.match(raw.lstrip(b"\xef\xbb\xbf"))
    if encoding is None:
        encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(path, f"declares an unknown character encoding {encoding!r}") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(path, f"is not valid {encoding} text (byte {exc.start}); saved in another encoding?") from None
    text = _DECLARATION_TEXT.sub("", text.lstrip("\ufeff"), count=1)  # decoded already: drop its encoding claim
    try:
        # VOC files never need a DTD: refusing any stops entity expansion and external fetches at once
        return SafeET.fromstring(text, forbid_dtd=True)
    except ET.ParseError as exc:
        line, col = getattr(exc, "position", (None, None))
        raise InputError(path, f"malformed XML at line {line}, column {col}") from None
    except DefusedXmlException as exc:
        raise InputError(path, f"refused unsafe XML ({type(exc).__name__}: DTDs and entities are not allowed)") from None
    except RecursionError:
        raise InputError(path, "XML nested too deeply to be an annotation") from None


_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xef\xbb\xbf", "utf-8"),
         (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"))
_DECLARATION = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
_DECLARATION_TEXT = re.compile(r"^\s*<\?xml[^>]*\?>")


def find_annotation(image_path: str | Path) -> Path | None:
    """``NAME.xml`` beside the image, or in a sibling ``annotations/`` folder."""
    image_path = Path(image_path)
    for candidate in (
        image_path.with_suffix(".xml"),
        image_path.parent / "annotations" / f"{image_path.stem}.xml",
        image_path.parent.parent / "annotations" / f"{image_path.stem}.xml",
    ):
        if candidate.is_file():
            return candidate
    return None


def voc_bytes(doc: Karyotype, denver: bool = True) -> bytes:
    """VOC XML of the final labels (unlabelled chromosomes keep their file name or 'unknown')."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = Path(doc.image_path).parent.name
    ET.SubElement(root, "filename").text = Path(doc.image_path).name
    ET.SubElement(root, "path").text = str(doc.image_path)
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "ChromoDesk"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(doc.width)
    ET.SubElement(size, "height").text = str(doc.height)
    ET.SubElement(size, "depth").text = "1"
    ET.SubElement(root, "segmented").text = "0"
    for record in doc:
        if record.rejected:  # not a chromosome: no object (reviewed files become training data)
            continue
        label = record.label
        obj = ET.SubElement(root, "object")
        if label is None:
            name = record.file_name or "unknown"
        else:
            name = denver_name(label) if denver else label
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        if record.confirmed:
            ET.SubElement(obj, "confirmed_by").text = record.confirmed_by
        bnd = ET.SubElement(obj, "bndbox")
        b = record.box
        for tag, value in (("xmin", b.xmin + 1), ("ymin", b.ymin + 1), ("xmax", b.xmax), ("ymax", b.ymax)):
            ET.SubElement(bnd, tag).text = str(value)
    ET.indent(root, space="   ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_voc(doc: Karyotype, path: str | Path, denver: bool = True) -> Path:
    return atomic_write_bytes(path, voc_bytes(doc, denver))
