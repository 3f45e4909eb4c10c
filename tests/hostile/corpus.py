"""The hostile-input corpus: files a lab's shared drive, another program or an attacker could
hand ChromoDesk, each built here by the tests and paired with what the user must see.

Every case is (id, kind, build, expect, says):
- kind: image | voc | bundle | detector | orientation | segmenter | session | output — which entry point reads it;
- build(tmp) makes the input inside ``tmp`` and returns its path (for ``output``: the --out target);
- expect: "error" (one line naming the file and the problem), "ok" (analysed, nothing to warn
  about), "warn" (a documented repair: analysed, with a warning) or "same" (analysed, and the
  labels agree with the original sample's: a conversion must not change the answer);
- says: words the error or warning must contain (the problem, named).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "samples" / "103201.jpg"
SAMPLE_XML = SAMPLE.with_suffix(".xml")
MODEL = ROOT / "models" / "chromodesk-resnet18.json"


@dataclass(frozen=True)
class Hostile:
    id: str
    kind: str
    build: Callable[[Path], Path]
    expect: str
    says: str = ""


CASES: list[Hostile] = []


def case(kind: str, id: str, expect: str, says: str = ""):
    def register(fn):
        CASES.append(Hostile(f"{kind}:{id}", kind, fn, expect, says))
        return fn
    return register


def add(kind: str, id: str, expect: str, says: str, build: Callable[[Path], Path]) -> None:
    CASES.append(Hostile(f"{kind}:{id}", kind, build, expect, says))


# -- helpers ---------------------------------------------------------------------------------------
def sample_gray() -> np.ndarray:
    return np.asarray(Image.open(SAMPLE).convert("L"))


def with_annotation(path: Path) -> Path:
    """The sample's VOC file beside ``path`` (same stem), so the given boxes are used."""
    shutil.copy(SAMPLE_XML, path.with_suffix(".xml"))
    return path


def write_bytes(name: str, data: bytes, annotated: bool = False) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(data)
        return with_annotation(p) if annotated else p
    return build


def encoded(fmt: str, arr_or_img, **kw) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def saved(name: str, make: Callable[[], Image.Image | np.ndarray], annotated: bool = True, **kw):
    def build(tmp: Path) -> Path:
        p = tmp / name
        obj = make()
        img = obj if isinstance(obj, Image.Image) else Image.fromarray(obj)
        img.save(p, **kw)
        return with_annotation(p) if annotated else p
    return build


def png_header_only(width: int, height: int, bit_depth: int = 8, color: int = 0) -> bytes:
    """A PNG that declares a size and then holds (almost) nothing: a decompression-bomb header."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def zero_bomb_png(side: int) -> bytes:
    """A real PNG of side x side zeros: a few hundred kB on disk, side**2 pixels decoded."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    data = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


# -- images ------------------------------------------------------------------------------------------
JPEG = SAMPLE.read_bytes()
PNG = encoded("PNG", sample_gray())
TIFF = encoded("TIFF", sample_gray())
BMP = encoded("BMP", sample_gray())

for ext in ("jpg", "png", "tif", "bmp"):
    add("image", f"empty-{ext}", "error", "", write_bytes(f"empty.{ext}", b"", annotated=True))
for name, data, kind in (("jpg", JPEG, "JPEG"), ("png", PNG, "PNG"), ("tif", TIFF, "TIFF"), ("bmp", BMP, "BMP")):
    for frac in (0.001, 0.01, 0.1, 0.3, 0.5, 0.8, 0.95, 0.999):
        cut = max(2, int(len(data) * frac))
        add("image", f"truncated-{name}-{frac}", "error", "", write_bytes(f"cut{frac}.{name}", data[:cut], annotated=True))
add("image", "png-named-jpg", "same", "", write_bytes("cell.jpg", PNG, annotated=True))
add("image", "jpeg-named-tif", "same", "", write_bytes("cell.tif", JPEG, annotated=True))
add("image", "jpeg-named-bmp", "same", "", write_bytes("cell.bmp", JPEG, annotated=True))
add("image", "text-named-png", "error", "not an image", write_bytes("notes.png", b"patient 12, 46,XY\n" * 20, annotated=True))
add("image", "xml-named-jpg", "error", "not an image", write_bytes("cell.jpg", SAMPLE_XML.read_bytes(), annotated=True))
add("image", "pdf-named-png", "error", "not an image", write_bytes("cell.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", annotated=True))
add("image", "zip-named-tif", "error", "not an image", write_bytes("cell.tif", b"PK\x03\x04" + b"\x00" * 200, annotated=True))
add("image", "elf-named-jpg", "error", "not an image", write_bytes("cell.jpg", b"\x7fELF" + bytes(range(256)), annotated=True))
add("image", "unknown-extension", "same", "", write_bytes("cell.xyz", JPEG, annotated=True))
add("image", "no-extension", "same", "", write_bytes("cell", JPEG, annotated=True))
add("image", "bomb-header-png", "error", "pixels", write_bytes("bomb.png", png_header_only(100_000, 100_000), annotated=True))
add("image", "bomb-header-png-max", "error", "pixels", write_bytes("bomb2.png", png_header_only(2**31 - 1, 2**31 - 1), annotated=True))
add("image", "bomb-zeros-png", "error", "pixels", write_bytes("zeros.png", zero_bomb_png(10_500), annotated=True))
add("image", "sixteen-bit-png", "same", "", saved("cell16.png", lambda: Image.fromarray(sample_gray().astype(np.uint16) * 64 + 1000)))
add("image", "sixteen-bit-tiff", "same", "", saved("cell16.tif", lambda: Image.fromarray(sample_gray().astype(np.uint16) * 200)))
add("image", "thirtytwo-bit-int-tiff", "same", "", saved("cell32.tif", lambda: Image.fromarray(sample_gray().astype(np.int32) * 1000 - 5000)))
add("image", "float-tiff", "same", "", saved("cellf.tif", lambda: Image.fromarray(sample_gray().astype(np.float32) / 255.0, mode="F")))


def _float_with(value: float, count: int = 1) -> Callable[[], Image.Image]:
    def make() -> Image.Image:
        arr = sample_gray().astype(np.float32) / 255.0
        arr.reshape(-1)[:count] = value
        return Image.fromarray(arr, mode="F")
    return make


add("image", "float-one-nan", "error", "NaN", saved("nan.tif", _float_with(float("nan"))))
add("image", "float-one-inf", "error", "infinite", saved("inf.tif", _float_with(float("inf"))))
add("image", "float-minus-inf", "error", "infinite", saved("ninf.tif", _float_with(float("-inf"))))
add("image", "float-all-nan", "error", "NaN", saved("allnan.tif", _float_with(float("nan"), 10**9)))
add("image", "float-huge-values", "same", "", saved("huge.tif", lambda: Image.fromarray(sample_gray().astype(np.float32) * 1e30, mode="F")))
add("image", "sixteen-bit-constant", "error", "blank", saved("flat16.png", lambda: Image.fromarray(np.full((400, 400), 777, np.uint16))))
add("image", "cmyk-jpeg", "same", "", saved("cmyk.jpg", lambda: Image.fromarray(sample_gray()).convert("CMYK"), quality=95))
add("image", "cmyk-tiff", "same", "", saved("cmyk.tif", lambda: Image.fromarray(sample_gray()).convert("CMYK")))
add("image", "palette-png", "same", "", saved("pal.png", lambda: Image.fromarray(sample_gray()).convert("P")))
add("image", "rgb-png", "same", "", saved("rgb.png", lambda: Image.fromarray(sample_gray()).convert("RGB")))
add("image", "rgba-png", "same", "", saved("rgba.png", lambda: Image.fromarray(sample_gray()).convert("RGBA")))
add("image", "la-png", "same", "", saved("la.png", lambda: Image.fromarray(sample_gray()).convert("LA")))
add("image", "one-bit-png", "ok", "", saved("bw.png", lambda: Image.fromarray(sample_gray()).convert("1")))
add("image", "multipage-tiff", "warn", "pages", lambda tmp: _multipage(tmp))
add("image", "animated-gif", "warn", "pages", lambda tmp: _animated(tmp, "anim.gif", "GIF"))
add("image", "animated-png", "warn", "pages", lambda tmp: _animated(tmp, "anim.png", "PNG"))
add("image", "webp", "ok", "", saved("cell.webp", lambda: sample_gray()))
for w, h in ((1, 1), (2, 2), (1, 5000), (5000, 1), (3, 3000), (7, 7), (16, 16)):
    add("image", f"tiny-{w}x{h}-detect", "error", "", saved(f"px{w}x{h}.png", lambda w=w, h=h: np.full((h, w), 200, np.uint8), annotated=False))
add("image", "extreme-aspect-annotated", "error", "", saved("strip.png", lambda: np.full((2, 8000), 200, np.uint8)))
add("image", "noise-detect", "error", "no chromosomes", saved("noise.png", lambda: np.random.default_rng(0).integers(0, 256, (600, 600), dtype=np.uint8), annotated=False))
add("image", "white-detect", "error", "blank", saved("white.png", lambda: np.full((600, 600), 255, np.uint8), annotated=False))
add("image", "black-detect", "error", "blank", saved("black.png", lambda: np.zeros((600, 600), np.uint8), annotated=False))
add("image", "white-annotated", "error", "blank", saved("white2.png", lambda: np.full(sample_gray().shape, 255, np.uint8)))


def _multipage(tmp: Path) -> Path:
    p = tmp / "pages.tif"
    first = Image.fromarray(sample_gray())
    first.save(p, save_all=True, append_images=[Image.fromarray(255 - sample_gray())])
    return with_annotation(p)


def _animated(tmp: Path, name: str, fmt: str) -> Path:
    p = tmp / name
    frames = [Image.fromarray(sample_gray()), Image.fromarray(255 - sample_gray())]
    frames[0].save(p, format=fmt, save_all=True, append_images=frames[1:])
    return with_annotation(p)


def special(name: str, kind: str) -> Callable[[Path], Path]:
    """Not a regular file: a folder, a named pipe (a plain read would block) or a link to a device."""
    def build(tmp: Path) -> Path:
        p = tmp / name
        if kind == "folder":
            p.mkdir()
        elif kind == "fifo":
            os.mkfifo(p)
        else:
            p.symlink_to("/dev/zero")
        return p
    return build


def _broken_link(tmp: Path) -> Path:
    p = tmp / "gone.jpg"
    p.symlink_to(tmp / "nowhere.jpg")
    return p


add("image", "fifo", "error", "not a file", special("pipe.png", "fifo"))
add("image", "directory-named-jpg", "error", "", special("folder.jpg", "folder"))
add("image", "symlink-to-dev-zero", "error", "not a file", special("zero.png", "device"))
add("image", "broken-symlink", "error", "not found", _broken_link)
add("image", "missing-file", "error", "not found", lambda tmp: tmp / "absent.jpg")
add("image", "newline-in-name", "same", "", lambda tmp: with_annotation(_copy(tmp, "cell\nname.jpg")))
add("image", "non-ascii-name", "same", "", lambda tmp: with_annotation(_copy(tmp, "Zelle-\u00e9\u00df-\u67d3\u8272\u4f53.jpg")))
add("image", "leading-dash-name", "same", "", lambda tmp: with_annotation(_copy(tmp, "-cell.jpg")))


def _copy(tmp: Path, name: str) -> Path:
    p = tmp / name
    shutil.copy(SAMPLE, p)
    return p


# -- VOC annotations --------------------------------------------------------------------------------
SAMPLE_OBJECTS = SAMPLE_XML.read_text()
OBJ = "<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"


def voc(body: str, head: str = '<?xml version="1.0"?>', size: str = "<size><width>1000</width><height>1000</height><depth>1</depth></size>") -> str:
    return f"{head}<annotation><filename>cell.jpg</filename>{size}{body}</annotation>"


def obj(name="A1", x0=10, y0=10, x1=40, y1=90) -> str:
    return OBJ.format(name=name, x0=x0, y0=y0, x1=x1, y1=y1)


def xml_case(id: str, expect: str, says: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text

    def build(tmp: Path) -> Path:
        p = tmp / "cell.xml"
        p.write_bytes(data)
        return p
    add("voc", id, expect, says, build)


def sample_voc_with(transform: Callable[[str], str]) -> str:
    return transform(SAMPLE_OBJECTS)


xml_case("xxe-file", "error", "unsafe", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         '<annotation><filename>&x;</filename></annotation>')
xml_case("billion-laughs", "error", "unsafe", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa">'
         + "".join(f'<!ENTITY a{i} "{"&a;" * 10 if i == 1 else f"&a{i - 1};" * 10}">' for i in range(1, 9))
         + ']><annotation><filename>&a8;</filename></annotation>')
xml_case("quadratic-blowup", "error", "unsafe", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "' + "x" * 50000 + '">]>'
         "<annotation><filename>" + "&x;" * 5000 + "</filename></annotation>")
xml_case("external-dtd", "error", "unsafe", '<?xml version="1.0"?><!DOCTYPE annotation SYSTEM "http://example.com/evil.dtd">'
         "<annotation></annotation>")
xml_case("parameter-entity", "error", "unsafe", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
         "<annotation></annotation>")
xml_case("unknown-encoding", "error", "encoding", '<?xml version="1.0" encoding="x-bogus-8"?>' + voc(obj())[21:])
xml_case("utf16-bom", "ok", "", SAMPLE_OBJECTS.replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")
         if 'encoding="utf-8"' in SAMPLE_OBJECTS else SAMPLE_OBJECTS.encode("utf-16"))
xml_case("latin1-declared", "ok", "", sample_voc_with(lambda s: s.replace("<annotation>", "<annotation><owner>J\u00fcrgen M\u00fcller</owner>", 1))
         .replace('<?xml version="1.0" encoding="utf-8"?>', "").lstrip().join(['<?xml version="1.0" encoding="latin-1"?>\n', ""])
         .encode("latin-1"))
xml_case("utf8-declared-latin1-bytes", "error", "", ('<?xml version="1.0" encoding="utf-8"?><annotation><owner>J\u00fcrgen</owner>'
         + obj() + "</annotation>").encode("latin-1"))
xml_case("utf32", "ok", "", SAMPLE_OBJECTS.encode("utf-32") if "encoding" not in SAMPLE_OBJECTS.split("\n")[0] else
         SAMPLE_OBJECTS.split("?>", 1)[1].encode("utf-32"))
xml_case("shift-jis-names", "ok", "", ('<?xml version="1.0" encoding="shift_jis"?><annotation><owner>\u67d3\u8272\u4f53</owner>'
                                       + obj() + "</annotation>").encode("shift_jis"))
xml_case("no-bndbox", "error", "bndbox", voc("<object><name>A1</name></object>"))
xml_case("missing-xmin", "error", "xmin", voc("<object><name>A1</name><bndbox><ymin>1</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>"))
xml_case("empty-xmin", "error", "xmin", voc(obj(x0="")))
xml_case("no-name", "warn", "unknown name", sample_voc_with(lambda s: s.replace("<name>", "<nothing>", 1).replace("</name>", "</nothing>", 1)))
xml_case("empty-name", "warn", "unknown name", sample_voc_with(lambda s: s.replace(s[s.index("<name>"):s.index("</name>") + 7], "<name></name>", 1)))
xml_case("no-objects", "error", "no usable", voc(""))
xml_case("no-size", "ok", "", sample_voc_with(lambda s: s[: s.index("<size>")] + s[s.index("</size>") + 7:]))
xml_case("size-zero", "ok", "", sample_voc_with(lambda s: s[: s.index("<size>")] + "<size><width>0</width><height>0</height></size>" + s[s.index("</size>") + 7:]))
xml_case("size-negative", "ok", "", sample_voc_with(lambda s: s[: s.index("<size>")] + "<size><width>-5</width><height>-5</height></size>" + s[s.index("</size>") + 7:]))
xml_case("size-contradicts-image", "ok", "", sample_voc_with(lambda s: s[: s.index("<size>")] + "<size><width>99999</width><height>3</height></size>" + s[s.index("</size>") + 7:]))
xml_case("size-not-a-number", "ok", "", sample_voc_with(lambda s: s[: s.index("<size>")] + "<size><width>wide</width><height>tall</height></size>" + s[s.index("</size>") + 7:]))
for label, value in (("nan", "NaN"), ("inf", "inf"), ("minus-inf", "-inf"), ("hex", "0x10"), ("comma-decimal", "10,5"),
                     ("words", "ten"), ("huge", "1e30"), ("huge-int", "9" * 400)):
    xml_case(f"coordinate-{label}", "error", "not a number" if label not in ("huge", "huge-int") else "",
             voc(obj(x0=value)))
xml_case("coordinate-negative-all", "error", "no usable", voc(obj(x0=-50, y0=-50, x1=-10, y1=-10)))
xml_case("coordinate-inverted", "error", "no usable", voc(obj(x0=40, x1=10)))
xml_case("coordinate-zero-area", "error", "no usable", voc(obj(x0=10, x1=9)))
xml_case("coordinate-outside-image", "error", "no usable", voc(obj(x0=50000, y0=50000, x1=50100, y1=50200)))
xml_case("coordinate-fraction", "ok", "", sample_voc_with(lambda s: s.replace("</xmin>", ".4</xmin>")))
xml_case("coordinate-exponent", "ok", "", sample_voc_with(lambda s: s.replace("<xmin>", "<xmin> ", 1)))
xml_case("coordinate-whitespace", "ok", "", sample_voc_with(lambda s: s.replace("<ymin>", "<ymin>\n\t ")))
xml_case("some-boxes-inverted", "warn", "empty box", sample_voc_with(lambda s: s.replace("<xmin>", "<xmin>9999", 1)))
xml_case("some-boxes-clipped", "warn", "clipped", sample_voc_with(lambda s: s.replace("<xmax>", "<xmax>9", 1)))


def _duplicate_first_object(s: str) -> str:
    first = s[s.index("<object>"): s.index("</object>") + 9]
    return s.replace("</annotation>", first + "</annotation>")


def _near_duplicate_first_object(s: str) -> str:
    first = s[s.index("<object>"): s.index("</object>") + 9]
    xmin = first[first.index("<xmin>") + 6: first.index("</xmin>")]
    moved = first.replace(f"<xmin>{xmin}</xmin>", f"<xmin>{int(xmin) + 1}</xmin>")
    return s.replace("</annotation>", moved + "</annotation>")


xml_case("duplicate-object", "warn", "same box", sample_voc_with(_duplicate_first_object))
xml_case("near-duplicate-object", "warn", "same box", sample_voc_with(_near_duplicate_first_object))
xml_case("every-object-twice", "warn", "same box", sample_voc_with(
    lambda s: s.replace("</annotation>", "".join(s.split("<object>")[i].join(["<object>", ""]) for i in range(1, s.count("<object>") + 1))
                        .replace("</annotation>", "") + "</annotation>")))
xml_case("ten-thousand-objects", "error", "objects", voc("".join(obj(x0=1 + i % 900, y0=1 + i // 900 * 5, x1=20 + i % 900, y1=60 + i // 900 * 5) for i in range(10_000))))
xml_case("one-thousand-objects", "error", "objects", voc("".join(obj(x0=1 + i % 900, y0=1 + i // 900 * 5, x1=20 + i % 900, y1=60 + i // 900 * 5) for i in range(1_000))))
xml_case("deep-nesting", "error", "", voc("<a>" * 100_000 + "</a>" * 100_000))
xml_case("chinese-names", "warn", "unknown name", sample_voc_with(lambda s: s.replace("<name>", "<name>\u67d3\u8272\u4f53", 1)))
xml_case("arabic-rtl-names", "warn", "unknown name", sample_voc_with(lambda s: s.replace("<name>", "<name>\u0643\u0631\u0648\u0645\u0648\u0633\u0648\u0645\u200f", 1)))
xml_case("emoji-names", "warn", "unknown name", sample_voc_with(lambda s: s.replace("<name>", "<name>\U0001f9ec", 1)))
xml_case("control-chars", "error", "malformed", voc(obj(name="A\x01")))
xml_case("coco-json", "error", "", json.dumps({"images": [], "annotations": [], "categories": []}))
xml_case("labelme-json", "error", "", json.dumps({"shapes": [{"label": "1", "points": [[1, 2], [3, 4]]}], "imagePath": "cell.jpg"}))
xml_case("cvat-xml", "error", "not a Pascal VOC", '<?xml version="1.0"?><annotations><image id="0" name="cell.jpg"><box label="1" xtl="1" ytl="1" xbr="9" ybr="9"/></image></annotations>')
xml_case("html", "error", "", "<!DOCTYPE html><html><body><p>46,XY</body></html>")
xml_case("svg", "error", "not a Pascal VOC", '<svg xmlns="http://www.w3.org/2000/svg"><rect x="1" y="1" width="9" height="9"/></svg>')
xml_case("empty-file", "error", "", b"")
xml_case("whitespace-only", "error", "", b"   \n\t\n")
xml_case("bom-only", "error", "", b"\xef\xbb\xbf")
xml_case("binary-garbage", "error", "", bytes(range(256)) * 4)
xml_case("truncated", "error", "malformed", SAMPLE_OBJECTS[: len(SAMPLE_OBJECTS) // 2])
xml_case("namespaced-root", "error", "not a Pascal VOC", '<?xml version="1.0"?><v:annotation xmlns:v="urn:x">' + obj() + "</v:annotation>")
xml_case("two-bndboxes", "warn", "bndbox", sample_voc_with(lambda s: s.replace("</bndbox>", "</bndbox><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>", 1)))
xml_case("two-names", "warn", "name", sample_voc_with(lambda s: s.replace("</name>", "</name><name>Y</name>", 1)))
xml_case("two-sizes", "ok", "", sample_voc_with(lambda s: s.replace("</size>", "</size><size><width>3</width><height>3</height></size>", 1)))
xml_case("huge-comment", "error", "MB", voc(obj(), head='<?xml version="1.0"?><!--' + " " * (60 << 20) + "-->"))
xml_case("cdata-coordinates", "ok", "", sample_voc_with(lambda s: s.replace("<xmin>", "<xmin><![CDATA[", 1).replace("</xmin>", "]]></xmin>", 1)))
xml_case("processing-instruction", "ok", "", sample_voc_with(lambda s: s.replace("<annotation>", "<annotation><?evil run='rm -rf /'?>", 1)))


add("voc", "directory", "error", "", special("cell.xml", "folder"))
add("voc", "fifo", "error", "not a file", special("cell.xml", "fifo"))
add("voc", "symlink-to-dev-zero", "error", "not a file", special("cell.xml", "device"))


# -- model bundles ---------------------------------------------------------------------------------
def bundle_case(id: str, says: str, mutate: Callable[[Path, dict], str | None], expect: str = "error") -> None:
    """A copy of the shipped bundle, changed by ``mutate(folder, meta)``; returns the path to pass
    as --model (default: the copied .json)."""
    def build(tmp: Path) -> Path:
        folder = tmp / "bundle"
        folder.mkdir()
        meta = json.loads(MODEL.read_text())
        weights = folder / meta["weights_file"]
        os.symlink(MODEL.with_name(meta["weights_file"]), weights)  # shared weights: no 45 MB copy per case
        if meta.get("companion"):  # the companion crop network the bundle names, beside it
            other = MODEL.with_name(meta["companion"]["bundle"])
            (folder / other.name).write_text(other.read_text())
            other_weights = json.loads(other.read_text())["weights_file"]
            os.symlink(MODEL.with_name(other_weights), folder / other_weights)
        target = mutate(folder, meta)
        if not (folder / MODEL.name).exists():
            (folder / MODEL.name).write_text(json.dumps(meta))
        return folder / (target or MODEL.name)
    add("bundle", id, expect, says, build)


def _set(key, value):
    def mutate(folder, meta):
        meta[key] = value
    return mutate


def _del(key):
    def mutate(folder, meta):
        del meta[key]
    return mutate


def _replace_weights(data: bytes | None = None, size: int | None = None):
    def mutate(folder, meta):
        w = folder / meta["weights_file"]
        w.unlink()
        if size is not None:
            with open(w, "wb") as fh:
                fh.truncate(size)  # sparse: a huge file without the disk space
        else:
            w.write_bytes(data)
    return mutate


def _truncated_weights(folder, meta):
    w = folder / meta["weights_file"]
    data = MODEL.with_name(meta["weights_file"]).read_bytes()[: 1 << 20]
    w.unlink()
    w.write_bytes(data)


def _raw_json(text: str):
    def mutate(folder, meta):
        (folder / MODEL.name).write_text(text)
    return mutate


def _pickle_bundle(name: str):
    def mutate(folder, meta):
        import pickle

        class Evil:
            def __reduce__(self):
                return (os.system, ("touch PWNED",))
        (folder / name).write_bytes(pickle.dumps(Evil()))
        return name
    return mutate


def _retarget_weights(name: str):
    def mutate(folder, meta):
        meta["weights_file"] = name
    return mutate


def _shape_mismatch(folder, meta):
    meta["architecture"] = "resnet50"


def _safetensors_huge_header(folder, meta):
    w = folder / meta["weights_file"]
    w.unlink()
    w.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    import hashlib
    meta["weights_sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()


def _safetensors_bad_json(folder, meta):
    w = folder / meta["weights_file"]
    w.unlink()
    body = b'{"x": {"dtype": "F32", "shape": [100000000000], "data_offsets": [0, 4]}}'
    w.write_bytes(struct.pack("<Q", len(body)) + body + b"\x00" * 4)
    import hashlib
    meta["weights_sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()


bundle_case("json-corrupt", "invalid JSON", _raw_json('{"format_version": 1, "model_id": '))
bundle_case("json-empty", "invalid JSON", _raw_json(""))
bundle_case("json-array", "not a JSON object", _raw_json("[1, 2, 3]"))
bundle_case("json-deep", "", _raw_json("[" * 100_000 + "]" * 100_000))
bundle_case("json-huge-number", "", _raw_json('{"format_version": ' + "9" * 5000 + "}"))
bundle_case("format-version-99", "unsupported bundle format", _set("format_version", 99))
bundle_case("classes-23", "class list", lambda f, m: m.__setitem__("classes", m["classes"][:23]))
bundle_case("classes-reordered", "class list", lambda f, m: m.__setitem__("classes", m["classes"][::-1]))
bundle_case("classes-null", "malformed", _set("classes", None))
bundle_case("unknown-architecture", "unknown architecture", _set("architecture", "transformer9000"))
bundle_case("architecture-shapes", "do not fit", _shape_mismatch)
bundle_case("input-size-zero", "input_size", _set("input_size", 0))
bundle_case("input-size-huge", "input_size", _set("input_size", 10**9))
bundle_case("input-size-text", "malformed", _set("input_size", "large"))
bundle_case("no-weights-sha", "weights_sha256", _del("weights_sha256"))
bundle_case("no-model-id", "model_id", _del("model_id"))
bundle_case("weights-missing", "not found", lambda f, m: (f / m["weights_file"]).unlink())
bundle_case("weights-truncated", "checksum", _truncated_weights)
bundle_case("weights-random-bytes", "checksum", _replace_weights(os.urandom(4096)))
bundle_case("weights-empty", "checksum", _replace_weights(b""))
bundle_case("weights-huge-sparse", "MB", _replace_weights(size=3 << 30))
bundle_case("checksum-mismatch", "checksum", _set("weights_sha256", "0" * 64))
bundle_case("weights-path-escape", "not found", _retarget_weights("../../../../etc/passwd"))
bundle_case("weights-absolute-path", "not found", _retarget_weights("/etc/passwd"))
bundle_case("pickle-pt-given", "", _pickle_bundle("evil.pt"))
bundle_case("pickle-as-safetensors", "checksum", lambda f, m: (_replace_weights(__import__("pickle").dumps({"a": 1}))(f, m)))
bundle_case("safetensors-huge-header", "cannot read weights", _safetensors_huge_header)
bundle_case("safetensors-lying-shape", "cannot read weights", _safetensors_bad_json)
bundle_case("model-is-directory", "", lambda f, m: (f / "dir.json").mkdir() or "dir.json")
bundle_case("preprocess-missing", "preprocess", _del("preprocess"))
bundle_case("preprocess-not-object", "malformed", _set("preprocess", [1, 2]))
bundle_case("companion-missing", "not found", lambda f, m: (f / m["companion"]["bundle"]).unlink())
bundle_case("companion-other-weights", "weights differ", lambda f, m: m["companion"].__setitem__("weights_sha256", "0" * 64))
bundle_case("companion-path-escape", "beside the model", lambda f, m: m["companion"].__setitem__("bundle", "../../etc/passwd"))
bundle_case("companion-not-object", "companion entry", _set("companion", [1, 2]))
bundle_case("companion-weight-one", "companion entry", lambda f, m: m["companion"].__setitem__("weight", 1.0))


# detector bundles share the loader's checks; a few through --detector to prove it
DETECTOR = ROOT / "models" / "chromodesk-detector.json"


def detector_case(id: str, says: str, text: str | None = None, name: str = "chromodesk-detector.json") -> None:
    def build(tmp: Path) -> Path:
        folder = tmp / "detector"
        folder.mkdir()
        meta = json.loads(DETECTOR.read_text())
        os.symlink(DETECTOR.with_name(meta["weights_file"]), folder / meta["weights_file"])
        (folder / name).write_text(text if text is not None else json.dumps(meta))
        return folder / name
    add("detector", id, "error", says, build)


detector_case("json-corrupt", "invalid JSON", '{"kind": "detector", ')
detector_case("classifier-given", "not a detector bundle", MODEL.read_text())
detector_case("pickle-pt-given", "never loaded", "not really a pickle", name="detector.pt")
detector_case("checksum-mismatch", "checksum", json.dumps({**json.loads(DETECTOR.read_text()), "weights_sha256": "0" * 64}))


# the p-arm orientation bundle (loaded beside the classifier): the same checks, through its own loader
ORIENTATION = ROOT / "models" / "chromodesk-orientation.json"


def companion_case(kind: str, shipped: Path, id: str, says: str, mutate: Callable[[Path, dict], str | None]) -> None:
    """A copy of a shipped companion bundle (loaded beside the classifier) changed by
    ``mutate(folder, meta)`` (as bundle_case)."""
    def build(tmp: Path) -> Path:
        folder = tmp / kind
        folder.mkdir()
        meta = json.loads(shipped.read_text())
        os.symlink(shipped.with_name(meta["weights_file"]), folder / meta["weights_file"])
        target = mutate(folder, meta)
        if not (folder / shipped.name).exists():
            (folder / shipped.name).write_text(json.dumps(meta))
        return folder / (target or shipped.name)
    add(kind, id, "error", says, build)


def _companion_json(shipped: Path, text: str):
    def mutate(folder, meta):
        (folder / shipped.name).write_text(text)
    return mutate


# the two companion bundles (loaded beside the classifier) go through the same checks, each
# through its own loader: the cases common to both, then each one's own
SEGMENTER = ROOT / "models" / "chromodesk-masks.json"
COMPANIONS = {"orientation": ORIENTATION, "segmenter": SEGMENTER}


def _companion_cases(kind: str, shipped: Path) -> None:
    def case(id: str, says: str, mutate: Callable[[Path, dict], str | None]) -> None:
        companion_case(kind, shipped, id, says, mutate)

    def truncated(f, m):
        _replace_weights(shipped.with_name(m["weights_file"]).read_bytes()[: 400_000])(f, m)

    case("json-corrupt", "invalid JSON", _companion_json(shipped, '{"kind": "%s", ' % kind))
    case("json-array", "not a JSON object", _companion_json(shipped, "[1, 2, 3]"))
    case("json-deep", "", _companion_json(shipped, "[" * 100_000 + "]" * 100_000))
    case("format-version-99", f"unsupported {kind} bundle format", _set("format_version", 99))
    case("no-weights-sha", "weights_sha256", _del("weights_sha256"))
    case("weights-missing", "not found", lambda f, m: (f / m["weights_file"]).unlink())
    case("weights-truncated", "checksum", truncated)
    case("weights-huge-sparse", "MB", _replace_weights(size=3 << 30))
    case("checksum-mismatch", "checksum", _set("weights_sha256", "0" * 64))
    case("weights-path-escape", "not found", _retarget_weights("../../../../etc/passwd"))
    case("pickle-pt-given", "never loaded", _pickle_bundle("evil.pt"))
    case("safetensors-lying-shape", "cannot read weights", _safetensors_bad_json)


for _kind, _shipped in COMPANIONS.items():
    _companion_cases(_kind, _shipped)


def orientation_case(id: str, says: str, mutate: Callable[[Path, dict], str | None]) -> None:
    companion_case("orientation", ORIENTATION, id, says, mutate)


def segmenter_case(id: str, says: str, mutate: Callable[[Path, dict], str | None]) -> None:
    companion_case("segmenter", SEGMENTER, id, says, mutate)


orientation_case("classifier-given", "not an orientation bundle", _companion_json(ORIENTATION, MODEL.read_text()))
orientation_case("detector-given", "not an orientation bundle", _companion_json(ORIENTATION, DETECTOR.read_text()))
orientation_case("classes-reordered", "class list", lambda f, m: m.__setitem__("classes", m["classes"][::-1]))
orientation_case("classes-null", "malformed", _set("classes", None))
orientation_case("width-huge", "width", _set("width", 10**9))
orientation_case("width-text", "width", _set("width", "24"))
orientation_case("width-other", "do not fit", _set("width", 32))
orientation_case("input-size-other", "input_size", _set("input_size", 128))
orientation_case("preprocess-not-object", "malformed", _set("preprocess", [1, 2]))
orientation_case("weights-random-bytes", "checksum", _replace_weights(os.urandom(4096)))
orientation_case("safetensors-huge-header", "cannot read weights", _safetensors_huge_header)

segmenter_case("classifier-given", "not a mask", _companion_json(SEGMENTER, MODEL.read_text()))
segmenter_case("orientation-given", "not a mask", _companion_json(SEGMENTER, ORIENTATION.read_text()))
segmenter_case("width-unknown", "unknown segmenter width", _set("width", "huge"))
segmenter_case("input-size-huge", "out of range", _set("input_size", 10**6))
segmenter_case("input-size-text", "malformed", _set("input_size", "sixty-four"))
segmenter_case("window-scale-nan", "NaN", _set("window_scale", float("nan")))
segmenter_case("window-scale-huge", "out of range", _set("window_scale", 1e9))
segmenter_case("threshold-one", "out of range", _set("threshold", 1.0))


# -- sessions -------------------------------------------------------------------------------------
def session_case(id: str, expect: str, says: str, make: Callable[[dict], str | bytes]) -> None:
    """A session of the sample, as the app saves it, changed by ``make(valid_session_dict)``."""
    def build(tmp: Path) -> Path:
        p = tmp / "cell.chromodesk.json"
        data = make(json.loads(json.dumps(valid_session())))
        p.write_bytes(data if isinstance(data, bytes) else data.encode() if isinstance(data, str) else json.dumps(data).encode())
        return p
    add("session", id, expect, says, build)


_VALID: dict | None = None


def valid_session() -> dict:
    global _VALID
    if _VALID is None:
        from chromodesk.core.imaging import file_sha256
        from chromodesk.core.session import session_to_dict
        from chromodesk.pipeline import open_cell

        doc, _image, _src = open_cell(SAMPLE)
        assert file_sha256(SAMPLE) == doc.image_sha256
        _VALID = session_to_dict(doc)
    return _VALID


def _chromosomes(d: dict) -> list:
    return d["records"]


def _mutate_first(**changes):
    def make(d):
        _chromosomes(d)[0].update(changes)
        return d
    return make


session_case("valid", "ok", "", lambda d: d)
session_case("empty", "error", "corrupt", lambda d: b"")
session_case("truncated", "error", "corrupt", lambda d: json.dumps(d)[:500])
session_case("not-json", "error", "corrupt", lambda d: b"\x89PNG\r\n\x1a\n")
session_case("json-array", "error", "not a ChromoDesk session", lambda d: "[]")
session_case("json-null", "error", "not a ChromoDesk session", lambda d: "null")
session_case("nested-deep", "error", "", lambda d: "[" * 100_000 + "]" * 100_000)
session_case("nested-deep-object", "error", "", lambda d: '{"a":' * 100_000 + "1" + "}" * 100_000)
session_case("number-5000-digits", "error", "", lambda d: json.dumps(d).replace('"width": ', '"width": ' + "9" * 5000 + "0*", 1).replace("0*", "", 1))
session_case("float-overflow", "error", "", lambda d: json.dumps(d).replace('"width": ', '"width": 1e400, "x": ', 1))
session_case("nan-literal", "error", "", lambda d: json.dumps(d).replace('"height": ', '"height": NaN, "y": ', 1))
session_case("schema-version-0", "error", "schema version", lambda d: {**d, "schema_version": 0})
session_case("schema-version-99", "error", "schema version", lambda d: {**d, "schema_version": 99})
session_case("schema-version-string", "error", "schema version", lambda d: {**d, "schema_version": str(d["schema_version"])})
session_case("another-image", "error", "different image", lambda d: {**d, "image": {**d["image"], "sha256": "ab" * 32}})
session_case("box-outside-image", "error", "outside the image", _mutate_first(box=[5000, 5000, 5100, 5200]))
session_case("box-inverted", "error", "box", _mutate_first(box=[40, 40, 10, 10]))
session_case("box-negative", "error", "box", _mutate_first(box=[-10, -10, -1, -1]))
session_case("box-three-numbers", "error", "box", _mutate_first(box=[1, 2, 3]))
session_case("box-strings", "error", "box", _mutate_first(box=["a", "b", "c", "d"]))
session_case("box-huge-int", "error", "box", _mutate_first(box=[0, 0, 10**30, 10**30]))
session_case("box-bool", "error", "box", _mutate_first(box=[True, True, 30, 30]))
session_case("duplicate-ids", "error", "duplicate", lambda d: {**d, "records": d["records"][:1] * 2 + d["records"][2:]})
session_case("probabilities-short", "error", "probabilities", _mutate_first(probabilities=[0.5, 0.5]))
session_case("probabilities-negative", "error", "probabilities", _mutate_first(probabilities=[-1.0] + [0.0] * 23))
session_case("probabilities-nan", "error", "", lambda d: json.dumps(_mutate_first(probabilities=[0.5] * 24)(d)).replace("0.5", "NaN", 1))
session_case("probabilities-400-digits", "error", "probabilities", _mutate_first(probabilities=[10**400] + [0] * 23))
session_case("p-up-short", "error", "p_up", _mutate_first(p_up=[0.5] * 23))
session_case("p-up-above-one", "error", "p_up", _mutate_first(p_up=[0.5] * 23 + [2.0]))
session_case("p-up-400-digits", "error", "p_up", _mutate_first(p_up=[0.5] * 23 + [10**400]))
session_case("angle-text", "error", "angle", _mutate_first(angle="90"))
session_case("angle-huge", "error", "angle", _mutate_first(angle=1e300))
session_case("turned-text", "error", "turned", _mutate_first(turned="yes"))
session_case("mirrored-text", "error", "mirrored", _mutate_first(mirrored="yes"))
session_case("mirrored-null", "error", "mirrored", _mutate_first(mirrored=None))
session_case("unknown-label", "error", "label", _mutate_first(final="25"))
session_case("records-not-list", "error", "", lambda d: {**d, "records": {"a": 1}})
session_case("records-missing", "error", "", lambda d: {k: v for k, v in d.items() if k != "records"})
session_case("utf16", "error", "", lambda d: json.dumps(d).encode("utf-16"))
session_case("bom-prefixed", "ok", "", lambda d: b"\xef\xbb\xbf" + json.dumps(d).encode())
session_case("huge-file", "error", "MB", lambda d: json.dumps(d) + " " * (70 << 20))
session_case("ten-thousand-records", "error", "records", lambda d: {**d, "records": [
    {**d["records"][0], "id": f"c{i}"} for i in range(10_000)]})


# -- output targets --------------------------------------------------------------------------------
def _out_file(tmp: Path) -> Path:
    p = tmp / "results"
    p.write_text("a file, not a folder")
    return p


def _out_under_file(tmp: Path) -> Path:
    f = tmp / "results"
    f.write_text("a file")
    return f / "inner"


def _out_name_is_folder(which: str):
    def build(tmp: Path) -> Path:
        out = tmp / "out"
        (out / f"{SAMPLE.stem}{which}").mkdir(parents=True)
        return out
    return build


add("output", "out-is-a-file", "error", "not a folder", _out_file)
add("output", "out-under-a-file", "error", "", _out_under_file)
add("output", "csv-name-is-a-folder", "error", "folder", _out_name_is_folder(".csv"))
add("output", "karyogram-name-is-a-folder", "error", "folder", _out_name_is_folder(".karyogram.png"))
add("output", "voc-name-is-a-folder", "error", "folder", _out_name_is_folder(".xml"))
add("output", "read-only-filesystem", "error", "", lambda tmp: Path("/proc/chromodesk-out"))
add("output", "name-too-long", "error", "", lambda tmp: tmp / ("x" * 300))
add("output", "disk-full", "error", "No space left", lambda tmp: tmp / "full")
