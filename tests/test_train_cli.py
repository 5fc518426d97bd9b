"""`tunewise adapters list / merge / export` through click's CliRunner, on a tiny trained adapter;
the exported folder loads with PEFT and the merged one with transformers, both answering as
tunewise's own LoRA layers do."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from tiny_models import LABELS
from tiny_training import MAPPING, chat, load_tiny, one_torch_thread, tiny_pairs, validation_pairs

from tunewise.cli import cli
from tunewise.models.local import LocalBackend
from tunewise.train import LoraSettings, load_adapter, train_adapter
from tunewise.train.lora import attach

SETTINGS = LoraSettings(rank=4, learning_rate=2e-2, epochs=2, batch_size=4, threads=1)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture
def trained(tiny_llama):
    """A tiny adapter in this test's tunewise home, and the backend it was trained on."""
    backend = load_tiny(tiny_llama)
    result = train_adapter(backend, tiny_pairs(copies=2), validation_pairs(), SETTINGS, meta={"task": "tiny-intents"})
    return backend, result


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def logits(model, backend: LocalBackend) -> torch.Tensor:
    ids = torch.tensor([backend.format.ids(chat("book a flight to paris 1"))])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_list_shows_each_adapter_with_its_base_task_data_and_metrics(trained):
    backend, result = trained
    shown = invoke("adapters", "list")
    assert shown.exit_code == 0
    for text in (result.adapter_dir.name, "ready", backend.model_id, "tiny-intents",
                 result.manifest["data"]["train_sha256"][:12], "val "):
        assert text in shown.output
    [row] = json.loads(invoke("adapters", "list", "--json").output)
    assert row["name"] == result.adapter_dir.name and row["metrics"]["steps"] == result.steps


def test_list_without_adapters_says_how_to_get_one():
    assert "--arms lora" in invoke("adapters", "list").output


def test_export_loads_with_peft_and_answers_as_tunewise_does(trained, tiny_llama, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    backend, result = trained
    out = tmp_path / "peft"
    shown = invoke("adapters", "export", result.adapter_dir.name[:6], "--out", str(out))
    assert shown.exit_code == 0 and str(out) in shown.output
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                      "tunewise-adapter.json"]
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    tuned = load_adapter(backend, result.adapter_dir)  # merged weights
    torch.testing.assert_close(logits(peft_model, backend), logits(tuned.model, backend), rtol=1e-4, atol=1e-4)
    # ... and as tunewise's own LoRA layers do, attached to the base without merging.
    from safetensors.torch import load_file

    attached = attach(backend.model, rank=4, alpha=8.0, dropout=0.0)
    try:
        attached.load_state_dict(load_file(str(out / "adapter_model.safetensors")))
        torch.testing.assert_close(logits(backend.model, backend), logits(peft_model, backend), rtol=1e-4, atol=1e-4)
    finally:
        attached.detach()


def test_merge_writes_a_model_folder_that_loads_anywhere(trained, tmp_path):
    from transformers import AutoModelForCausalLM

    backend, result = trained
    out = tmp_path / "merged"
    shown = invoke("adapters", "merge", str(result.adapter_dir), "--out", str(out))
    assert shown.exit_code == 0
    merged = load_tiny(out)
    tuned = load_adapter(backend, result.adapter_dir)
    prompts = [chat(f"{text} 1") for text, _ in MAPPING]
    ours = [s.logprobs for s in tuned.score_options(prompts, LABELS)]
    theirs = [s.logprobs for s in merged.score_options(prompts, LABELS)]
    torch.testing.assert_close(torch.tensor(theirs), torch.tensor(ours), rtol=1e-5, atol=1e-5)
    plain = AutoModelForCausalLM.from_pretrained(str(out))
    torch.testing.assert_close(logits(plain, backend), logits(tuned.model, backend), rtol=1e-5, atol=1e-5)
    assert json.loads((out / "tunewise-merged.json").read_text())["merged_from"]["base"]["name"] == backend.name


def test_merge_and_export_refuse_a_used_folder_and_unknown_adapters(trained, tmp_path):
    _, result = trained
    used = tmp_path / "used"
    used.mkdir()
    (used / "file.txt").write_text("keep me")
    for command in ("merge", "export"):
        refused = CliRunner().invoke(cli, ["adapters", command, result.adapter_dir.name, "--out", str(used)])
        assert refused.exit_code == 2 and "not empty" in refused.output
    unknown = CliRunner().invoke(cli, ["adapters", "export", "zzz-no-such", "--out", str(tmp_path / "x")])
    assert unknown.exit_code == 2 and "no adapter named 'zzz-no-such'" in unknown.output
    assert (used / "file.txt").read_text() == "keep me"


def test_export_refuses_an_altered_adapter(trained, tmp_path):
    _, result = trained
    config = result.adapter_dir / "adapter_config.json"
    config.write_text(config.read_text().replace('"r": 4', '"r": 8'))
    refused = CliRunner().invoke(cli, ["adapters", "export", str(result.adapter_dir), "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "adapter_config.json does not match the sha256" in refused.output
    assert not (tmp_path / "x").exists()


def test_merge_refuses_when_the_base_model_changed(tiny_llama, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    backend = load_tiny(base)
    result = train_adapter(backend, tiny_pairs(copies=1), [], LoraSettings(rank=4, max_steps=2, threads=1))
    # The base folder still loads, but its weights are no longer those the adapter trained on.
    tensors = load_file(str(base / "model.safetensors"))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    refused = CliRunner().invoke(cli, ["adapters", "merge", str(result.adapter_dir), "--out", str(tmp_path / "m")])
    assert refused.exit_code == 2 and "this adapter was trained on" in refused.output


def test_the_same_seed_starts_from_the_same_adapter_as_peft(tiny_llama):
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    torch.manual_seed(5)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_llama)),
                                LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    theirs = get_peft_model_state_dict(peft_model)
    torch.manual_seed(5)
    ours = attach(AutoModelForCausalLM.from_pretrained(str(tiny_llama)), rank=4, alpha=8.0, dropout=0.0).state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
