"""A stand-in for ``chromodesk.inference.classifier.Classifier`` (same interface, no torch).

Probabilities come from the annotation file: the classification job tags every crop
with its box (``crops.raw[i]["box"]``), and the fake looks the box up in the VOC
labels. Boxes it does not know (drawn in a test) get a label from their length rank.
Every fifth known chromosome is made "unsure" (0.50 for the right label, 0.35 for the
next one) so that the views show all review states.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from chromodesk.core.labels import CLASS_INDEX, CLASSES
from chromodesk.core.preprocess import PreprocessConfig


class FakeOrienter:
    """A stand-in for ``chromodesk.inference.orientation.Orienter``: P(p-arm up) 0.2 for the odd
    classes (1, 3, 5, ...: drawn turned over) and 0.8 for the even ones, for every crop."""

    def __init__(self, crop_config: PreprocessConfig):
        self.crop_config = crop_config
        self.calls: list[int] = []

    def p_up(self, images) -> np.ndarray:
        self.calls.append(len(images))
        row = [0.2 if k % 2 == 0 else 0.8 for k in range(len(CLASSES))]
        return np.tile(np.array(row), (len(images), 1))


class FakeClassifier:
    device = "cpu"
    orienter: FakeOrienter | None = None  # no orientation network unless a test gives one

    def __init__(self, labels_by_box: dict[tuple[int, int, int, int], str] | None = None, *,
                 model_id: str = "fake-model", delay: float = 0.0, fail: str | None = None,
                 preprocess: PreprocessConfig = PreprocessConfig(nlm_h=0.0), has_context: bool = False):
        self.labels_by_box = dict(labels_by_box or {})
        self.model_id = model_id
        self.delay = delay
        self.fail = fail
        self.preprocess = preprocess
        self.has_context = has_context  # like a bundle with a cell-context stage: answers depend on the cell size
        self.calls: list[int] = []
        self.context_calls: list[int] = []  # sizes of the cells seen whole by the context stage
        self.started = threading.Event()

    @classmethod
    def from_voc(cls, xml: str | Path, image_size: tuple[int, int], **kwargs) -> "FakeClassifier":
        from chromodesk.core.voc import read_voc

        ann = read_voc(xml, image_size)
        return cls({tuple(o.box.as_list()): o.label for o in ann.objects if o.label}, **kwargs)

    def predict_each(self, crops) -> np.ndarray:
        self.started.set()
        self.calls.append(len(crops.images))
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError(self.fail)
        n = len(crops.images)
        out = np.full((n, len(CLASSES)), 0.004)
        known = sorted(self.labels_by_box)
        for i, info in enumerate(crops.raw):
            box = tuple(info.get("box", ()))
            label = self.labels_by_box.get(box)
            if label is None:
                rank = float(crops.features[i, 4]) if crops.features.shape[1] > 4 else 0.5
                idx = int(round((1.0 - rank) * 21))
                out[i, idx] = 0.7
            else:
                idx = CLASS_INDEX[label]
                if known.index(box) % 5 == 2:
                    out[i, idx] = 0.50
                    out[i, (idx + 1) % len(CLASSES)] = 0.35
                else:
                    out[i, idx] = 0.92
        return out / out.sum(axis=1, keepdims=True)

    def in_context(self, probs, features) -> np.ndarray:
        self.context_calls.append(len(probs))
        probs = np.array(probs, dtype=np.float64)
        if self.has_context and len(probs):
            probs[:, -1] += 0.001 * len(probs)  # a small pull that depends on the rest of the cell
            probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def predict(self, crops) -> np.ndarray:
        return self.in_context(self.predict_each(crops), crops.features)
