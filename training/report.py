"""Run reports: confusion-matrix PNG and learning curves (loss and accuracy for
train/validation/test, as in the source report's figures 10-14)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from chromodesk.core.labels import CLASSES  # noqa: E402


def plot_confusion(confusion, path: Path, title: str = "Confusion matrix (test split)") -> None:
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8, 7), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASSES)), CLASSES, fontsize=7)
    ax.set_yticks(range(len(CLASSES)), CLASSES, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=5,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    if not history:
        return
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for key, ax in (("loss", axes[0]), ("acc", axes[1])):
        for part in ("train", "val", "test"):
            values = [h.get(f"{part}_{key}") for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], label=part, marker=".")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if key == "loss" else "accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_reports(metrics: dict, history: list[dict], run: Path) -> None:
    if metrics.get("test", {}).get("confusion"):
        plot_confusion(metrics["test"]["confusion"], run / "confusion.png")
    plot_curves(history, run / "curves.png", run.name)
