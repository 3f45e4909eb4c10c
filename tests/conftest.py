"""Shared test set-up: Qt offscreen, the shared datasets (tests that need them skip cleanly)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("CHROMODESK_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "chromodesk"))

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CHROMODESK_SHARED", ROOT.parent / "shared" / "datasets"))
METAPHASES = SHARED / "tseng2023-gband-metaphases"


@pytest.fixture
def metaphase_dir() -> Path:
    if not (METAPHASES / "images").is_dir():
        pytest.skip(f"shared metaphase data not found at {METAPHASES}")
    return METAPHASES


@pytest.fixture
def real_image(metaphase_dir) -> tuple[Path, Path]:
    """One real metaphase with its VOC file."""
    image = metaphase_dir / "images" / "103082.jpg"
    return image, metaphase_dir / "annotations" / "103082.xml"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a machine busy with other work, several threads spin-wait for each
    other (10x slower). torch is imported here, not at the top, so Qt/core tests never load it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
