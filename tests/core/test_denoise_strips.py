"""Parallel strip denoising must equal one whole-image call, bit for bit (no train/serve skew)."""

import numpy as np
import pytest

from chromodesk.core.preprocess import PreprocessConfig, denoise


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_strips_give_the_same_pixels_as_one_call(workers):
    rng = np.random.default_rng(1)
    img = np.full((240, 180), 220, np.uint8)
    img[40:200, 60:80] = 60  # a dark "chromosome" crossing every strip boundary
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    cfg = PreprocessConfig()
    assert np.array_equal(denoise(img, cfg, workers=1), denoise(img, cfg, workers=workers))
