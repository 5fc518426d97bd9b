"""A trained adapter on disk: its manifest, and loading, merging, exporting and listing adapters.

An adapter folder (``<tunewise home>/adapters/<name>/`` by default) holds

    adapter_model.safetensors   the LoRA weights at the best validation loss, PEFT's tensor names
    adapter_config.json         PEFT's LoRA config
    tunewise-adapter.json       the manifest, written last: base model (name, id, path, weights
                                hash), data hashes, settings, seed, metrics, loss histories,
                                tunewise version, and the sha256 of the two files above
    checkpoints/                while training, or when a time budget cut it short

Only adapters tunewise wrote are loaded: the manifest must be there and every file must match
its recorded hash; only safetensors are read (no pickle, whatever else the folder holds); and
the base model's weights must hash to what the adapter was trained on.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunewise.errors import TunewiseError
from tunewise.train.checkpoint import file_sha256, newest_step, write_atomic
from tunewise.train.lora import merge_into

MANIFEST = "tunewise-adapter.json"
WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
FORMAT = "tunewise-adapter/1"
_FIX_RETRAIN = "train it again (the bake-off does so by itself), or delete the folder"


class AdapterError(TunewiseError):
    """An adapter folder is missing, incomplete, altered, or for another base model."""


@dataclass(frozen=True)
class AdapterInfo:
    """One row of ``tunewise adapters list``."""

    name: str
    path: Path
    status: str  # ready | partial (a budget cut training short) | training / interrupted (checkpoints only)
    base_model: str
    task: str | None
    data_sha256: str | None
    metrics: dict[str, Any]
    created: str | None


def adapters_root() -> Path:
    from tunewise.models.catalog import tunewise_home

    return tunewise_home() / "adapters"


# -- writing -----------------------------------------------------------------------------------


def write_adapter(folder: Path, tensors: dict[str, torch.Tensor], peft_config: dict[str, Any],
                  manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the adapter files, then the manifest (with their hashes) last. Returns the manifest."""
    from safetensors.torch import save as save_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        WEIGHTS: save_safetensors(tensors, metadata={"format": "pt"}),
        PEFT_CONFIG: json.dumps(peft_config, indent=2, sort_keys=True).encode("utf-8"),
    }
    for name, data in files.items():
        write_atomic(folder / name, data)
    manifest = {**manifest, "format": FORMAT,
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
    return manifest


# -- reading and checking ----------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest as written (unverified), or None when there is none or it is unreadable."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def verify_adapter(folder: Path) -> dict[str, Any]:
    """The manifest of an intact tunewise adapter; AdapterError says what is wrong otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterError("no such adapter folder", where=str(folder), fix="see `tunewise adapters list`")
    manifest = read_manifest(folder)
    if manifest is None:
        raise AdapterError(
            f"not an adapter tunewise wrote (no readable {MANIFEST}); tunewise loads only its own adapters",
            where=str(folder),
            fix="train it with tunewise; an adapter from elsewhere loads with PEFT's PeftModel.from_pretrained",
        )
    if manifest.get("format") != FORMAT:
        raise AdapterError(f"unknown adapter format {manifest.get('format')!r} (this tunewise reads {FORMAT})",
                           where=str(folder), fix="upgrade tunewise, or train the adapter again")
    files = manifest.get("files") or {}
    if set(files) != {WEIGHTS, PEFT_CONFIG}:
        raise AdapterError(f"the manifest lists {sorted(files)}, expected {[PEFT_CONFIG, WEIGHTS]}",
                           where=str(folder / MANIFEST), fix=_FIX_RETRAIN)
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise AdapterError(f"{name} is missing", where=str(folder), fix=_FIX_RETRAIN)
        if file_sha256(path) != expected:
            raise AdapterError(f"{name} does not match the sha256 in the manifest: altered or truncated "
                               "since tunewise wrote it", where=str(path), fix=_FIX_RETRAIN)
    return manifest


def read_weights(folder: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The adapter tensors, from bytes whose hash is checked in the same read (no pickle)."""
    from safetensors.torch import load as load_safetensors

    data = (Path(folder) / WEIGHTS).read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest["files"][WEIGHTS]:
        raise AdapterError(f"{WEIGHTS} changed while being read", where=str(folder), fix=_FIX_RETRAIN)
    return load_safetensors(data)


_WEIGHT_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of a model's tensors (names, dtypes, shapes, bytes), as loaded in memory.

    Computed from the loaded tensors rather than files, so it names exactly what training saw
    (the same files loaded in bf16 are another base). Cached per model until its weights change.
    """
    version = sum(p._version for p in model.parameters())
    cached = _WEIGHT_HASHES.get(model)
    if cached is not None and cached[0] == version:
        return cached[1]
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    value = digest.hexdigest()
    _WEIGHT_HASHES[model] = (version, value)
    return value


# -- using an adapter --------------------------------------------------------------------------


def load_adapter(base, adapter_dir: Path):
    """A LocalBackend answering with the adapter merged into a copy of ``base``'s weights.

    ``base``: a loaded LocalBackend (left unchanged: its weights are copied) or a model spec
    (loaded here, in the dtype the adapter was trained in). Merged rather than attached: inference then costs exactly what the base
    model costs, and the copy keeps the adapter out of any arm that shares ``base``.
    """
    from tunewise.models.local import LocalBackend

    adapter_dir = Path(adapter_dir)
    manifest = verify_adapter(adapter_dir)
    tensors = read_weights(adapter_dir, manifest)
    if isinstance(base, str):
        backend = LocalBackend.load(base, dtype=manifest["base"].get("dtype"))
        model = backend.model
    else:
        backend = base
        model = None
    _check_base(manifest, backend, adapter_dir)
    if model is None:
        model = copy.deepcopy(backend.model)
    merge_into(model, tensors, rank=manifest["settings"]["rank"], alpha=manifest["settings"]["alpha"])
    return LocalBackend(
        model,
        backend.tokenizer,
        name=f"{backend.name}+lora-{adapter_dir.name}",
        kind=backend.kind,
        fingerprint=manifest["files"][WEIGHTS],
        price_per_hour=backend.price_per_hour,
        max_batch_size=backend.max_batch_size,
        reuse_prefix=backend.reuse_prefix,
    )


def merge_adapter(adapter_dir: Path, out: Path) -> Path:
    """Write the base model with the adapter merged in (full weights, safetensors) and its
    tokenizer to ``out``: a model folder for transformers, vLLM, or ``LocalBackend.load``."""
    adapter_dir, out = Path(adapter_dir), Path(out)
    _require_empty(out)
    manifest = verify_adapter(adapter_dir)
    backend = load_base(manifest)
    tuned = load_adapter(backend, adapter_dir)
    out.mkdir(parents=True, exist_ok=True)
    tuned.model.save_pretrained(out)
    tuned.tokenizer.save_pretrained(out)
    note = {"merged_from": {"adapter": str(adapter_dir.resolve()), "adapter_sha256": manifest["files"][WEIGHTS],
                            "base": manifest["base"]}, "tunewise_version": _version()}
    (out / "tunewise-merged.json").write_text(json.dumps(note, indent=2, sort_keys=True), encoding="utf-8")
    return out


def export_adapter(adapter_dir: Path, out: Path) -> Path:
    """Copy the adapter to ``out`` as a plain PEFT folder (``PeftModel.from_pretrained(base, out)``),
    the manifest beside it for provenance."""
    adapter_dir, out = Path(adapter_dir), Path(out)
    _require_empty(out)
    manifest = verify_adapter(adapter_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(adapter_dir / WEIGHTS, out / WEIGHTS)
    config = json.loads((adapter_dir / PEFT_CONFIG).read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = manifest["base"].get("path") or manifest["base"]["name"]
    (out / PEFT_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    shutil.copyfile(adapter_dir / MANIFEST, out / MANIFEST)
    return out


def load_base(manifest: dict[str, Any]):
    """The base model an adapter was trained on, loaded as its manifest describes it."""
    from tunewise.models.catalog import CATALOG
    from tunewise.models.local import LocalBackend

    base = manifest["base"]
    spec = base["name"] if base["name"] in CATALOG else base.get("path") or base["name"]
    return LocalBackend.load(spec, dtype=base.get("dtype"))


def list_adapters(root: Path | None = None) -> list[AdapterInfo]:
    """Every adapter folder under ``root`` (default: the tunewise home's), newest first."""
    root = Path(root) if root is not None else adapters_root()
    if not root.is_dir():
        return []
    infos = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        manifest = read_manifest(folder)
        if manifest is None:
            step = newest_step(folder / "checkpoints")
            if step is None:
                continue
            state = "training" if _being_trained(folder) else "interrupted"
            infos.append(AdapterInfo(folder.name, folder, f"{state} (checkpoint at step {step})", "?", None, None,
                                     {}, None))
            continue
        metrics = manifest.get("metrics", {})
        infos.append(AdapterInfo(
            name=folder.name,
            path=folder,
            status="partial" if metrics.get("stopped") == "budget" else "ready",
            base_model=manifest.get("base", {}).get("model_id", "?"),
            task=(manifest.get("meta") or {}).get("task"),
            data_sha256=manifest.get("data", {}).get("train_sha256"),
            metrics=metrics,
            created=manifest.get("created"),
        ))
    return sorted(infos, key=lambda info: info.created or "", reverse=True)


def find_adapter(reference: str, root: Path | None = None) -> Path:
    """An adapter folder from a path, a name, or a unique prefix of a name."""
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    root = Path(root) if root is not None else adapters_root()
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    matches = [n for n in names if n == reference] or [n for n in names if n.startswith(reference)]
    if len(matches) == 1:
        return root / matches[0]
    if not matches:
        raise AdapterError(f"no adapter named {reference!r}", where=str(root), fix="see `tunewise adapters list`")
    raise AdapterError(f"{reference!r} names {len(matches)} adapters: {', '.join(matches[:5])}", where=str(root),
                       fix="give more of the name")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _version() -> str:
    from tunewise import __version__

    return __version__


def _check_base(manifest: dict[str, Any], backend, adapter_dir: Path) -> None:
    """The base must be the model the adapter was trained on: the same tensors in memory, or
    the same weight files (the model id carries their hash) loaded in another dtype."""
    base = manifest.get("base", {})
    expected = base.get("weights_sha256")
    actual = weights_sha256(backend.model)
    same_files = "@" in backend.model_id and backend.model_id == base.get("model_id")
    if expected != actual and not same_files:
        raise AdapterError(
            f"this adapter was trained on {manifest.get('base', {}).get('model_id', '?')} (weights sha256 "
            f"{str(expected)[:12]}), not on the model given (weights sha256 {actual[:12]})",
            where=str(adapter_dir),
            fix="load it onto the base model (and dtype) it was trained on",
        )


def _being_trained(folder: Path) -> bool:
    """Whether a process holds the folder's training lock right now (see run._locked)."""
    try:
        import fcntl
    except ImportError:
        return False
    lock = folder / ".lock"
    if not lock.is_file():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _require_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AdapterError("the output folder exists and is not empty", where=str(out),
                           fix="choose a new folder, or empty this one")
