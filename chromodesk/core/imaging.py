"""Load any metaphase image as 8-bit grey, strictly: a damaged file is an error, never a dark picture.

Mapping to 8-bit grey (documented in the README):
- 8-bit grey: unchanged.  1-bit: 0/255.
- 16-bit or 32-bit grey: linear stretch of the image's own [min, max] to [0, 255]
  (scanners use a small part of the 16-bit range; a fixed >>8 would give a black image).
- RGB / palette: ITU-R BT.601 luma (Pillow's "L" conversion).
- RGBA / LA: composited over white first (transparent = empty slide background).
- Multi-page TIFF: the first page, with a warning.
"""

from __future__ import annotations

import hashlib
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError
from .limits import MAX_PIXELS  # re-exported: callers import it from here
from .safe_read import regular_file
SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

Image.MAX_IMAGE_PIXELS = None  # we apply our own limit, with our own message


@dataclass
class LoadedImage:
    path: str
    gray: np.ndarray  # uint8, H x W
    sha256: str
    warnings: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.gray.shape[0])

    @property
    def width(self) -> int:
        return int(self.gray.shape[1])


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_gray(path: str | Path, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read ``path`` as uint8 grey. Raises InputError naming the file on any problem."""
    path = regular_file(path, "image")
    notes: list[str] = []
    try:
        # Pillow's own warnings (e.g. "Corrupt EXIF data" while opening a cut TIFF) are
        # replaced by our checks; under ``-W error`` they would otherwise escape as exceptions
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise InputError(
                        path, f"image is {width}x{height} = {width * height:,} pixels, above the limit of {max_pixels:,}"
                    )
                if getattr(im, "n_frames", 1) > 1:
                    notes.append(f"{path.name}: {im.n_frames} pages, using the first")
                im.seek(0)
                im.load()  # strict: raises on truncated data (ImageFile.LOAD_TRUNCATED_IMAGES is False)
                gray = _to_gray8(im, path)
    except InputError:
        raise
    except UnidentifiedImageError:
        kind = image_signature(path)
        if kind is not None:  # e.g. a TIFF cut before its directory: the header is there, the rest is not
            problem = f"damaged or truncated {kind} image (the file starts like one but cannot be decoded)"
            raise InputError(path, problem) from None
        raise InputError(path, "not an image (unknown format; expected JPEG, PNG, TIFF or BMP)") from None
    except MemoryError:
        raise InputError(path, "image too large to decode in the memory available") from None
    except Exception as exc:  # noqa: BLE001 — Pillow's decoders raise many types on crafted files
        # (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error, ...): all mean "damaged"
        detail = (str(exc).splitlines() or [""])[0] or type(exc).__name__
        raise InputError(path, f"damaged or truncated image ({detail})") from None
    if gray.size == 0:
        raise InputError(path, "image has no pixels")
    if int(gray.min()) == int(gray.max()):  # nothing to see; classifying it would answer nonsense
        raise InputError(path, f"blank image: every pixel has the same grey value ({int(gray[0, 0])})")
    return LoadedImage(str(path), gray, file_sha256(path), notes)


_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"),
)


def image_signature(path: Path) -> str | None:
    """The image format a file's first bytes announce, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return next((kind for magic, kind in _SIGNATURES if head.startswith(magic)), None)


def _to_gray8(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(im, dtype=np.uint8) * 255
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(im)
        if mode == "F":
            bad = int(np.count_nonzero(~np.isfinite(values)))
            if bad:  # a stretch over NaN/inf gives a black picture that still "analyses"
                raise InputError(path, f"{bad:,} pixel value(s) are NaN or infinite; export the image again "
                                       "as 8- or 16-bit")
        return stretch_to_uint8(values)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.uint8).copy()
    return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    arr = values.astype(np.float64)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)
