"""train_adapter on the tiny Llama: it learns, reuses, stops early, keeps to a budget and resumes,
and its adapters are verified before they are loaded."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from tiny_models import LABELS
from tiny_training import (
    FAST,
    MAPPING,
    adapter_tensors,
    chat,
    load_tiny,
    one_torch_thread,
    tiny_pairs,
    validation_pairs,
)

from tunewise.models.local import LocalBackend
from tunewise.train import (
    AdapterError,
    LoraSettings,
    TrainingPair,
    list_adapters,
    load_adapter,
    train_adapter,
    verify_adapter,
)
from tunewise.train.adapter import weights_sha256
from tunewise.train.checkpoint import (
    Checkpoint,
    load_latest,
    optimizer_tensors,
    rng_tensors,
    write_checkpoint,
)
from tunewise.train.lora import LoraLinear


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def llama(tiny_llama) -> LocalBackend:
    return load_tiny(tiny_llama)


@pytest.fixture(scope="module")
def reference(llama, tmp_path_factory) -> dict:
    """One uninterrupted FAST run: the adapter every interrupted run must end up equal to."""
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:  # a module fixture runs outside the per-test home
        patch.setenv("TUNEWISE_HOME", str(tmp_path_factory.mktemp("reference-home")))
        result = train_adapter(llama, tiny_pairs(), validation_pairs(), FAST, out_dir=out)
    return {"result": result, "tensors": adapter_tensors(out)}


def assert_same_adapter(folder: Path, expected: dict) -> None:
    tensors = adapter_tensors(folder)
    assert tensors.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(tensors[name], value, rtol=0, atol=1e-6)


def test_training_teaches_the_tiny_model_the_mapping(llama, reference):
    result = reference["result"]
    prompts = [chat(f"{text} 1") for text, _ in MAPPING]
    before = [LABELS[s.best] for s in llama.score_options(prompts, LABELS)]
    tuned = load_adapter(llama, result.adapter_dir)
    after = [LABELS[s.best] for s in tuned.score_options(prompts, LABELS)]
    assert after == [label for _, label in MAPPING] and before != after
    assert result.val_loss[0][1] > 5 * result.val_loss[-1][1]  # validation loss falls
    assert result.stopped == "converged" and result.steps == FAST.resolve(len(tiny_pairs())).total_steps
    assert result.train_tokens > 0 and result.tokens_per_s > 0 and not result.reused


def test_the_base_backend_is_left_exactly_as_it_was(llama, reference):
    # Training attached LoRA layers to llama.model in place; they must be gone, and the
    # weights untouched (the same hash as a fresh load).
    assert not any(isinstance(m, LoraLinear) for m in llama.model.modules())
    assert all(p.requires_grad for p in llama.model.parameters())
    fresh = load_tiny(llama.model.name_or_path)
    assert weights_sha256(llama.model) == weights_sha256(fresh.model)
    assert not llama.model.training


def test_the_manifest_records_base_data_settings_metrics_and_file_hashes(llama, reference):
    result = reference["result"]
    manifest = verify_adapter(result.adapter_dir)
    assert manifest["base"]["model_id"] == llama.model_id
    assert manifest["base"]["weights_sha256"] == weights_sha256(llama.model)
    assert manifest["data"]["n_train"] == len(tiny_pairs()) and len(manifest["data"]["train_sha256"]) == 64
    assert manifest["settings"]["rank"] == 4 and manifest["seed"] == 0
    assert manifest["metrics"]["best_val_loss"] == min(loss for _, loss in result.val_loss)
    assert set(manifest["files"]) == {"adapter_model.safetensors", "adapter_config.json"}
    assert manifest["tunewise_version"]
    assert not (result.adapter_dir / "checkpoints").exists()  # finished: nothing left to resume


def test_the_same_training_again_reuses_the_finished_adapter(llama):
    pairs, validation = tiny_pairs(copies=2), validation_pairs()
    settings = LoraSettings(rank=4, epochs=1, batch_size=4, threads=1)
    first = train_adapter(llama, pairs, validation, settings)
    again = train_adapter(llama, pairs, validation, settings)
    assert again.reused and again.adapter_dir == first.adapter_dir and again.steps == first.steps
    assert first.adapter_dir.parent.name == "adapters"  # <tunewise home>/adapters/<key>
    other_seed = train_adapter(llama, pairs, validation, settings, seed=1)
    assert not other_seed.reused and other_seed.adapter_dir != first.adapter_dir
    names = {info.name for info in list_adapters()}
    assert {first.adapter_dir.name, other_seed.adapter_dir.name} <= names


def test_early_stopping_keeps_the_best_adapter(llama, tmp_path):
    # Validation answers contradict the training answers: the better training goes, the worse
    # the validation loss gets, so training stops early and keeps the weights of the best evaluation.
    contradicting = [TrainingPair(chat(f"{text} 0"), LABELS[(LABELS.index(label) + 1) % len(LABELS)])
                     for text, label in MAPPING]
    settings = LoraSettings(rank=4, learning_rate=2e-2, epochs=20, batch_size=4, eval_every=3, patience=2, threads=1)
    result = train_adapter(llama, tiny_pairs(), contradicting, settings, out_dir=tmp_path / "a")
    assert result.stopped == "early_stop"
    assert result.steps < settings.resolve(len(tiny_pairs())).total_steps
    best_step, best_loss = min(result.val_loss, key=lambda point: point[1])
    assert result.best_step == best_step and result.best_step < result.steps
    assert result.manifest["metrics"]["best_val_loss"] == best_loss


def test_without_validation_the_last_weights_are_the_adapter(llama, tmp_path):
    result = train_adapter(llama, tiny_pairs(copies=1), [], LoraSettings(rank=4, max_steps=3, threads=1),
                           out_dir=tmp_path / "a")
    assert result.val_loss == [] and result.best_step == 3 and result.stopped == "max_steps"


def test_a_budget_stops_training_and_the_next_call_resumes_to_the_same_adapter(llama, reference, tmp_path):
    out = tmp_path / "budgeted"

    def slow_steps(progress):
        if progress.event == "step":
            time.sleep(0.2)

    cut = train_adapter(llama, tiny_pairs(), validation_pairs(), FAST, out_dir=out, budget_s=1.0, progress=slow_steps)
    assert cut.stopped == "budget" and 0 < cut.steps < reference["result"].steps
    assert verify_adapter(out)["metrics"]["stopped"] == "budget"  # usable meanwhile
    assert [info.status for info in list_adapters(tmp_path)] == ["partial"]
    finished = train_adapter(llama, tiny_pairs(), validation_pairs(), FAST, out_dir=out)
    assert finished.resumed_from == cut.steps and finished.stopped == "converged" and not finished.reused
    assert_same_adapter(out, reference["tensors"])


def test_an_altered_checkpoint_is_refused_and_the_previous_one_resumed(llama, reference, tmp_path):
    out = tmp_path / "crashed"

    class Crash(Exception):
        pass

    def crash_at_step_13(progress):
        if progress.event == "step" and progress.step == 13:
            raise Crash

    with pytest.raises(Crash):
        train_adapter(llama, tiny_pairs(), validation_pairs(), FAST, out_dir=out, progress=crash_at_step_13)
    assert not any(isinstance(m, LoraLinear) for m in llama.model.modules())  # detached despite the crash
    assert [info.status for info in list_adapters(tmp_path)] == ["interrupted (checkpoint at step 12)"]
    newest = out / "checkpoints" / "step-000012"
    weights = newest / "adapter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    weights.write_bytes(bytes(data))
    notes = []
    resumed = train_adapter(llama, tiny_pairs(), validation_pairs(), FAST, out_dir=out,
                            progress=lambda p: notes.append(p.message) if p.event == "note" else None)
    assert resumed.resumed_from == 8
    assert any("step-000012 refused: adapter.safetensors does not match" in note for note in notes)
    assert_same_adapter(out, reference["tensors"])


def test_checkpoints_without_a_completion_marker_or_truncated_are_skipped(tmp_path):
    def checkpoint(step: int) -> Checkpoint:
        tensors = {"w": torch.full((3,), float(step))}
        return Checkpoint(step, tensors, None, {"0.step": torch.tensor(float(step))}, rng_tensors(), {"step": step})

    root = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        write_checkpoint(root, checkpoint(step), keep=3)
    (root / "step-000006" / "COMPLETE.json").unlink()  # killed before the marker
    truncated = root / "step-000004" / "optimizer.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:10])
    notes: list[str] = []
    loaded = load_latest(root, notes)
    assert loaded.step == 2 and loaded.adapter["w"].tolist() == [2.0, 2.0, 2.0]
    assert "incomplete" in notes[0] and "optimizer.safetensors does not match" in notes[1]
    # Pruning keeps the newest two with a marker (hashes are checked when loading, not here)
    # and drops the rest, the unfinished step 6 included.
    write_checkpoint(root, checkpoint(8), keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["step-000004", "step-000008"]


def test_optimizer_state_round_trips_through_safetensors():
    parameter = torch.nn.Parameter(torch.randn(4, 3))
    optimizer = torch.optim.AdamW([parameter], lr=0.1)
    parameter.grad = torch.randn(4, 3)
    optimizer.step()
    saved = optimizer_tensors(optimizer)
    from tunewise.train.checkpoint import load_optimizer

    other = torch.optim.AdamW([torch.nn.Parameter(parameter.detach().clone())], lr=0.1)
    load_optimizer(other, saved)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        torch.testing.assert_close(other.state_dict()["state"][0][key], optimizer.state_dict()["state"][0][key])


# -- loading only what tunewise wrote -----------------------------------------------------------


def copy_adapter(reference, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(reference["result"].adapter_dir, folder)
    return folder


def test_an_altered_adapter_is_refused(llama, reference, tmp_path):
    folder = copy_adapter(reference, tmp_path)
    weights = folder / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterError, match="does not match the sha256 in the manifest"):
        load_adapter(llama, folder)


def test_a_folder_without_the_manifest_is_refused(llama, reference, tmp_path):
    folder = copy_adapter(reference, tmp_path)
    (folder / "tunewise-adapter.json").unlink()
    with pytest.raises(AdapterError, match="not an adapter tunewise wrote") as error:
        load_adapter(llama, folder)
    assert "PeftModel.from_pretrained" in error.value.fix


def test_an_adapter_is_refused_on_another_base_model(reference, tmp_path):
    from tiny_models import write_qwen3, write_tokenizer

    other = tmp_path / "qwen"
    write_tokenizer(other)
    write_qwen3(other)
    with pytest.raises(AdapterError, match="trained on local:"):
        load_adapter(load_tiny(other), reference["result"].adapter_dir)


def test_a_manifest_listing_other_files_is_refused(llama, reference, tmp_path):
    folder = copy_adapter(reference, tmp_path)
    manifest = json.loads((folder / "tunewise-adapter.json").read_text())
    manifest["files"]["adapter_model.bin"] = "0" * 64
    (folder / "tunewise-adapter.json").write_text(json.dumps(manifest))
    with pytest.raises(AdapterError, match="the manifest lists"):
        verify_adapter(folder)


def test_a_remote_backend_cannot_be_trained():
    from tunewise.errors import TunewiseError
    from tunewise.models.scripted import ScriptedBackend

    with pytest.raises(TunewiseError, match="not a local model"):
        train_adapter(ScriptedBackend(), tiny_pairs(copies=1), [])


def test_no_pair_fits_the_sequence_limit(llama):
    from tunewise.errors import TunewiseError

    with pytest.raises(TunewiseError, match="max_sequence_tokens"):
        train_adapter(llama, tiny_pairs(copies=1), [], LoraSettings(max_sequence_tokens=8))


def test_a_model_spec_loads_with_the_adapter_too(tiny_llama, reference):
    tuned = load_adapter(str(tiny_llama), reference["result"].adapter_dir)
    prompts = [chat(f"{text} 1") for text, _ in MAPPING]
    assert [LABELS[s.best] for s in tuned.score_options(prompts, LABELS)] == [label for _, label in MAPPING]


def test_checkpoints_of_another_run_in_the_folder_are_not_resumed(llama, tmp_path):
    out = tmp_path / "shared-folder"

    def stop_at_5(progress):
        if progress.event == "step" and progress.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_adapter(llama, tiny_pairs(copies=2), [], LoraSettings(rank=4, checkpoint_every=2, threads=1),
                      out_dir=out, progress=stop_at_5)
    notes = []
    result = train_adapter(llama, tiny_pairs(copies=2), [], LoraSettings(rank=8, max_steps=2, threads=1), out_dir=out,
                           progress=lambda p: notes.append(p.message) if p.event == "note" else None)
    assert result.resumed_from is None and result.steps == 2
    assert any("belong to another training run" in note for note in notes)


def test_a_base_model_learns_answers_in_its_plain_text_format(tiny_llama, tmp_path):
    # No chat template: the prompt is plain paragraphs and an answer ends with a blank line.
    base = tmp_path / "base-model"
    shutil.copytree(tiny_llama, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    (base / "chat_template.jinja").unlink(missing_ok=True)
    backend = load_tiny(base)
    assert backend.kind == "base"
    settings = LoraSettings(rank=4, learning_rate=2e-2, epochs=4, batch_size=4, threads=1)
    result = train_adapter(backend, tiny_pairs(), validation_pairs(), settings, out_dir=tmp_path / "a")
    tuned = load_adapter(backend, result.adapter_dir)
    prompts = [chat(f"{text} 1") for text, _ in MAPPING]
    assert [LABELS[s.best] for s in tuned.score_options(prompts, LABELS)] == [label for _, label in MAPPING]
    paragraph_end = backend.tokenizer("\n\n", add_special_tokens=False)["input_ids"][-1]
    assert backend.option_token_ids(["oos"], prompt=prompts[0])[0][-1] == paragraph_end


def test_lora_layers_keep_fp32_weights_on_a_bf16_base():
    base = torch.nn.Linear(8, 6).to(torch.bfloat16)
    layer = LoraLinear(base, rank=2, alpha=4.0, dropout=0.0)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    out = layer(x)
    assert out.dtype == torch.bfloat16 and layer.lora_A.dtype == torch.float32
    expected = base(x).float() + 2.0 * (x.float() @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


def test_the_same_weight_files_in_another_dtype_are_accepted(tiny_llama, reference):
    bf16 = LocalBackend.load(str(tiny_llama), device="cpu", dtype="bfloat16")
    tuned = load_adapter(bf16, reference["result"].adapter_dir)  # same files (model id), other tensors
    assert tuned.model.dtype == torch.bfloat16 and tuned.kind == bf16.kind
