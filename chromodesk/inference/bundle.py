"""Model bundle = ``NAME.safetensors`` (weights) + ``NAME.json`` (everything needed to use them).

The JSON holds: format version, model id, class order, architecture, input size,
relative-feature names, the preprocessing config, the cell-context stage's size, members
and the assignment penalties they read (``null`` when the bundle has none), training summary and metrics, and the SHA-256 of
the weights file. Loading verifies the checksum, the class list and
every tensor shape, and never unpickles anything (safetensors only).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from chromodesk.bundled import models_dir
from chromodesk.core.atomic import atomic_write_text
from chromodesk.core.errors import InputError
from chromodesk.core.labels import CLASSES
from chromodesk.core.limits import MAX_BUNDLE_JSON_BYTES, MAX_WEIGHTS_BYTES, MB
from chromodesk.core.safe_read import read_json, regular_file
from chromodesk.core.preprocess import FEATURE_NAMES, PreprocessConfig

from .cell_context import ContextConfig
from .network import ARCHITECTURES, ChromosomeNet, RejectConfig

FORMAT_VERSION = 1
DEFAULT_MODEL = models_dir() / "chromodesk-resnet18.json"


@dataclass
class BundleMeta:
    model_id: str
    architecture: str
    input_size: int
    preprocess: PreprocessConfig
    classes: tuple[str, ...] = CLASSES
    feature_names: tuple[str, ...] = FEATURE_NAMES
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    weights_sha256: str = ""
    weights_file: str = ""
    context: ContextConfig | None = None  # the cell-context stage, when the bundle has one
    reject: RejectConfig | None = None  # the "not a chromosome" head, when the bundle has one
    # a second crop network whose probabilities are averaged with this one's before the cell
    # stages: {"bundle": file name beside this JSON, "weights_sha256": its weights, "weight": its share}
    companion: dict | None = None

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "model_id": self.model_id,
            "architecture": self.architecture,
            "input_size": self.input_size,
            "classes": list(self.classes),
            "feature_names": list(self.feature_names),
            "preprocess": self.preprocess.to_dict(),
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "context": self.context.to_dict() if self.context else None,
            "reject": self.reject.to_dict() if self.reject else None,
            **({"companion": self.companion} if self.companion else {}),
            "training": self.training,
            "metrics": self.metrics,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:  # in chunks: the file may be large, memory stays flat
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_paths(path: str | Path) -> tuple[Path, Path]:
    """Accept either file of a bundle (or its stem); return (json, safetensors)."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    elif path.suffix:  # e.g. evil.pt: say so about the file given, not about an evil.json never asked for
        raise InputError(path, "not a ChromoDesk model bundle (expected NAME.json with NAME.safetensors beside it; "
                               "pickled .pt/.pth/.pkl files are never loaded, they can run code)")
    return path.with_suffix(".json"), path.with_suffix(".safetensors")


def write_weights(model: torch.nn.Module, weights_path: Path, model_id: str) -> str:
    """The model's tensors as safetensors (written beside, then renamed over); returns their SHA-256."""
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights_path.with_suffix(".safetensors.tmp")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata={"model_id": model_id})
    tmp.replace(weights_path)
    return _sha256(weights_path)


def read_json_object(json_path: Path, what: str) -> dict:
    """A bundle's metadata file as a dict, or an InputError naming the file."""
    if not json_path.exists() and not json_path.is_symlink():
        raise InputError(json_path, f"{what} bundle not found")
    data = read_json(json_path, MAX_BUNDLE_JSON_BYTES, f"{what} metadata")
    if not isinstance(data, dict):
        raise InputError(json_path, f"{what} metadata is not a JSON object")
    return data


def read_verified_weights(json_path: Path, weights_file: str, sha256: str, what: str) -> tuple[Path, dict]:
    """The tensors of the weights file named in a bundle's metadata (always beside it: a name,
    never a path elsewhere), after its checksum matched."""
    weights_path = json_path.parent / Path(weights_file).name
    regular_file(weights_path, f"{what} weights file")
    size = weights_path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:  # checked before hashing: a crafted file must not cost minutes of reading
        raise InputError(weights_path, f"weights file is {size / MB:,.0f} MB; the limit is {MAX_WEIGHTS_BYTES / MB:,.0f} MB")
    if _sha256(weights_path) != sha256:
        raise InputError(weights_path, "checksum mismatch: the weights file is damaged or was replaced")
    try:
        return weights_path, load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise InputError(weights_path, f"cannot read weights ({exc})") from None


def load_checked_state(model: torch.nn.Module, state: dict, weights_path: Path, network: str) -> torch.nn.Module:
    """``model`` with ``state`` loaded, in eval mode, after every tensor's name and shape matched:
    a mismatch is an InputError naming the weights file and ``network`` (e.g. "the small detector")."""
    expected = model.state_dict()
    problems = sorted(set(expected) ^ set(state)) + [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if problems:
        raise InputError(weights_path, f"weights do not fit {network}: {len(problems)} tensors differ, e.g. {problems[0]}")
    model.load_state_dict(state)
    return model.eval()


def save_bundle(model: torch.nn.Module, meta, path: str | Path) -> Path:
    """Weights + metadata (a ``BundleMeta`` or a ``DetectorMeta``: anything with model_id,
    weights_file, weights_sha256 and to_json)."""
    json_path, weights_path = bundle_paths(path)
    meta.weights_sha256 = write_weights(model, weights_path, meta.model_id)
    meta.weights_file = weights_path.name
    atomic_write_text(json_path, json.dumps(meta.to_json(), indent=2))
    return json_path


def read_meta(path: str | Path) -> BundleMeta:
    json_path, _ = bundle_paths(path)
    data = read_json_object(json_path, "model")
    try:
        if data.get("format_version") != FORMAT_VERSION:
            raise InputError(json_path, f"unsupported bundle format {data.get('format_version')!r}")
        if tuple(data["classes"]) != CLASSES:
            raise InputError(json_path, f"class list differs from ChromoDesk's 24 classes: {data['classes']}")
        if data["architecture"] not in ARCHITECTURES:
            raise InputError(json_path, f"unknown architecture {data['architecture']!r}")
        return BundleMeta(
            model_id=data["model_id"], architecture=data["architecture"], input_size=int(data["input_size"]),
            preprocess=PreprocessConfig.from_dict(data["preprocess"]), classes=tuple(data["classes"]),
            feature_names=tuple(data["feature_names"]), training=data.get("training", {}),
            metrics=data.get("metrics", {}), weights_sha256=data["weights_sha256"],
            weights_file=data.get("weights_file") or json_path.with_suffix(".safetensors").name,
            context=ContextConfig.from_dict(data["context"]) if data.get("context") else None,
            reject=RejectConfig.from_dict(data["reject"]) if data.get("reject") else None,
            companion=_companion_entry(json_path, data.get("companion")),
        )
    except KeyError as exc:
        raise InputError(json_path, f"model metadata lacks the key {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:  # e.g. "input_size": "large", "preprocess": [1, 2]
        raise InputError(json_path, f"model metadata has a malformed value ({exc})") from None


def _companion_entry(json_path: Path, entry) -> dict | None:
    if entry is None:
        return None
    if not (isinstance(entry, dict) and isinstance(entry.get("bundle"), str) and isinstance(entry.get("weights_sha256"), str)
            and isinstance(entry.get("weight", 0.5), (int, float)) and 0 < float(entry.get("weight", 0.5)) < 1):
        raise InputError(json_path, "the companion entry needs 'bundle', 'weights_sha256' and a 'weight' between 0 and 1")
    if Path(entry["bundle"]).name != entry["bundle"]:
        raise InputError(json_path, "the companion bundle must lie beside the model (a file name, not a path)")
    return {"bundle": entry["bundle"], "weights_sha256": entry["weights_sha256"], "weight": float(entry.get("weight", 0.5))}


def load_companion(path: str | Path, meta: BundleMeta, device: str | torch.device = "cpu") -> ChromosomeNet | None:
    """The crop network a bundle averages with its own (None when it has none): the file its JSON
    names, beside it, with the recorded weights, reading this bundle's crops without the outline cut."""
    if not meta.companion:
        return None
    from chromodesk.core.preprocess import companion_config

    json_path, _ = bundle_paths(path)
    other = json_path.parent / meta.companion["bundle"]
    model, other_meta = load_bundle(other, device)
    if other_meta.weights_sha256 != meta.companion["weights_sha256"]:
        raise InputError(other, f"is not the companion {json_path.name} was fitted with (weights differ)")
    if other_meta.preprocess != companion_config(meta.preprocess) or other_meta.feature_names != meta.feature_names:
        raise InputError(other, f"reads other crops than {json_path.name}'s companion must")
    model.context = model.reject = None  # only its crop network takes part
    return model


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[ChromosomeNet, BundleMeta]:
    """Verified load. Any mismatch raises InputError naming the file."""
    meta = read_meta(path)
    json_path, _ = bundle_paths(path)
    weights_path, state = read_verified_weights(json_path, meta.weights_file, meta.weights_sha256, "model")
    if meta.preprocess.size != meta.input_size:
        raise InputError(json_path, "input_size and preprocess.size disagree")
    # built on the meta device: no memory and no random initialisation for weights that are
    # replaced at once (vgg16 would otherwise initialise ~138M parameters just to discard them)
    with torch.device("meta"):
        model = ChromosomeNet(meta.architecture, len(meta.classes), len(meta.feature_names), context=meta.context,
                              reject=meta.reject)
    expected = model.state_dict()
    problems = [k for k in expected if k not in state] + [k for k in state if k not in expected]
    problems += [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if problems:
        raise InputError(weights_path, f"weights do not fit {meta.architecture}: {len(problems)} tensors differ, e.g. {problems[0]}")
    # copy=True: load_file's tensors are mapped from the file; the model must not change if the file is overwritten
    model.load_state_dict({k: v.to(dtype=expected[k].dtype, copy=True) for k, v in state.items()}, assign=True)
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        raise InputError(weights_path, f"weights leave part of {meta.architecture} unset")
    model.eval()
    return model.to(device), meta
