"""The prompting arms (zero-shot, few-shot random / nearest) and how they read answers.

Fast tests run the arms end to end on ScriptedBackend and a keyword embedder; one runs them
on the tiny random Llama of test_local_backend (real tokenizer, real prefix-cached scoring).
The slow tests run the bundled support-ticket task with the real SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

# The tiny random Llama of test_local_backend, its labels and inputs (its tokenizer's vocabulary).
from tiny_models import INPUTS as TINY_INPUTS
from tiny_models import LABELS as TINY_LABELS

from tunewise.arms.answers import (
    AnswerPlan,
    answer_batch,
    answer_token_limit,
    choose_label,
    json_validity_rate,
    read_json_answer,
    short_answer,
    softmax,
)
from tunewise.arms.base import ArmContext
from tunewise.arms.few_shot import FewShot
from tunewise.arms.prompts import PROMPT_VERSION, TRUNCATION_MARK
from tunewise.arms.zero_shot import ZeroShot
from tunewise.errors import TunewiseError
from tunewise.models.base import Chat, Message, OptionScores, Usage
from tunewise.models.scripted import ScriptedBackend
from tunewise.task.card import TaskCard
from tunewise.task.dataset import Dataset, Example

LABELS = ["billing", "shipping_delay", "account_access"]
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["queue", "order_id"],
    "properties": {
        "queue": {"enum": LABELS},
        "order_id": {"type": ["string", "null"], "pattern": "^LK-[0-9]{6}$"},
    },
}
TRAIN = [
    ("I was charged twice for my plan", "billing"),
    ("my invoice shows the wrong price", "billing"),
    ("the parcel has not arrived yet", "shipping_delay"),
    ("tracking says my parcel is stuck", "shipping_delay"),
    ("I cannot log in to the dashboard", "account_access"),
    ("password reset email never comes so I cannot log in", "account_access"),
]
TEST = [
    ("please refund, I was charged twice on my invoice", "billing"),
    ("where is my parcel", "shipping_delay"),
    ("log in fails with my password", "account_access"),
]


def examples(rows: Sequence[tuple[str, str]], source: str = "t.jsonl") -> list[Example]:
    return [Example(input=i, output=o, source=source, line=n) for n, (i, o) in enumerate(rows, 1)]


def dataset(kind: str = "classify", train=TRAIN, test=TEST, **card_fields) -> Dataset:
    if kind == "classify":
        card_fields.setdefault("labels", LABELS)
    card = TaskCard.model_validate(
        {"name": "t", "kind": kind, "instruction": "Route the support ticket.", "data": {"file": "t.jsonl"}, **card_fields}
    )
    return Dataset(card, {"train": examples(train), "validation": [], "test": examples(test)},
                   card_fields.get("labels"), {})


class KeywordEmbedder:
    """Encodes a text by the keywords it contains (L2-normalised counts): similarity is word overlap."""

    model_id = "fake:keywords"
    KEYWORDS = ("charged", "invoice", "price", "parcel", "tracking", "arrived", "log", "password")

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], *, use_cache: bool = True) -> np.ndarray:
        self.calls.append(list(texts))
        rows = np.array([[t.lower().split().count(k) for k in self.KEYWORDS] + [0.1] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class CountingBackend(ScriptedBackend):
    """ScriptedBackend that also counts calls (not prompts): an arm must call once per batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[str, int]] = []

    def generate(self, prompts, options=None):
        self.batches.append(("generate", len(prompts)))
        self.last_options = options
        return super().generate(prompts, options)

    def score_options(self, prompts, options):
        self.batches.append(("score_options", len(prompts)))
        return super().score_options(prompts, options)


def context(data: Dataset, backend, embedder=None, seed: int = 0) -> ArmContext:
    asked: list[str] = []

    def load(spec: str):
        asked.append(spec)
        return backend

    ctx = ArmContext(dataset=data, backend=load, embedder=lambda: embedder, seed=seed)
    ctx.asked = asked  # type: ignore[attr-defined]
    return ctx


def keyword_scores(prompt: Chat, options: Sequence[str]) -> list[float]:
    """Scores the label whose keyword appears in the last user turn highest."""
    text = prompt[-1].content
    hints = {"billing": "charge", "shipping_delay": "parcel", "account_access": "log in"}
    return [-0.5 if hints[o] in text else -3.0 - i for i, o in enumerate(options)]


# -- reading answers ------------------------------------------------------------------------


def test_valid_json_is_compacted_like_the_references():
    answer = read_json_answer('  {"queue": "billing",\n "order_id": "LK-123456"}\n')
    assert answer.valid and not answer.fenced and answer.error is None
    assert answer.output == '{"queue":"billing","order_id":"LK-123456"}'


def test_invalid_json_keeps_the_raw_text_as_output():
    answer = read_json_answer('{"queue": "billing", "order_id": ')
    assert not answer.valid and answer.output == '{"queue": "billing", "order_id": '
    assert answer.error.startswith("not JSON")
    assert not read_json_answer("[1, 2]").valid  # JSON, but not an object
    assert not read_json_answer('{"price": NaN}').valid  # Python's json accepts it; JSON does not


def test_schema_violation_is_invalid_with_the_reason_and_nothing_repaired():
    plan = AnswerPlan(kind=dataset("extract", output_schema=SCHEMA).card.kind, schema=SCHEMA)
    answer = read_json_answer('{"queue": "billing", "order_id": "12345"}', plan.validator)
    assert not answer.valid
    assert answer.output == '{"queue":"billing","order_id":"12345"}'  # parsed, but not "fixed"
    assert "order_id" in answer.error and "does not match" in answer.error


def test_a_surrounding_code_fence_is_taken_off_and_reported():
    answer = read_json_answer('```json\n{"queue": "billing", "order_id": null}\n```')
    assert answer.valid and answer.fenced and answer.output == '{"queue":"billing","order_id":null}'
    assert not read_json_answer('Sure! ```json\n{"queue": "billing"}\n```').valid  # not around the whole reply


def test_qa_answers_stop_at_the_first_line_break():
    assert short_answer("  Paris\nIt is the capital of France.") == "Paris"
    assert short_answer("\n\n  Paris  ") == "Paris"
    assert short_answer("Answer: Paris\nQuestion: ...") == "Paris"
    assert short_answer("answer:\n Paris") == "Paris"  # the lead alone on its line
    assert short_answer("A: 1889") == "1889"
    assert short_answer("Answers vary: some say Paris") == "Answers vary: some say Paris"


def test_label_choice_records_confidence_and_margin():
    usage = Usage(10, 0, 0.1, 0.0)
    chosen = choose_label(OptionScores((math.log(0.2), math.log(0.7), math.log(0.1)), usage), LABELS)
    assert chosen.output == "shipping_delay" and chosen.valid and chosen.usage is usage
    assert chosen.extra["confidence"] == pytest.approx(0.7)
    assert chosen.extra["margin"] == pytest.approx(0.5)
    assert chosen.extra["runner_up"] == "billing"
    scripted = choose_label(OptionScores((-math.inf, 0.0, -math.inf), usage), LABELS)  # a model with no log-probs
    assert scripted.extra["confidence"] == 1.0 and scripted.extra["margin"] == 1.0
    impossible = choose_label(OptionScores((-math.inf,) * 3, usage), LABELS)
    assert impossible.output == "billing" and impossible.extra["logprob"] is None
    json.dumps(impossible.extra, allow_nan=False)  # stores as plain JSON
    assert softmax([0.0, 0.0]) == [0.5, 0.5]
    assert "bounded_labels" not in chosen.extra  # a backend that scores every label says nothing


def test_label_choice_with_bounded_scores_says_so_and_understates_confidence():
    from tunewise.models.local import BoundedOptionScores

    usage = Usage(10, 0, 0.1, 0.0)
    exact = [math.log(0.2), math.log(0.7), math.log(0.1)]
    bounded = BoundedOptionScores((math.log(0.25), exact[1], math.log(0.2)), usage, exact=(False, True, False))
    chosen = choose_label(bounded, LABELS)
    assert chosen.output == "shipping_delay" and chosen.extra["bounded_labels"] == 2
    assert chosen.extra["confidence"] < choose_label(OptionScores(tuple(exact), usage), LABELS).extra["confidence"]


def test_answer_length_comes_from_the_longest_reference():
    assert answer_token_limit(["a b c", "a"], lambda t: len(t.split())) == 2 * 3 + 16
    assert answer_token_limit([], len) == 256
    assert answer_token_limit(["x" * 5000], len) == 1024


# -- zero-shot ------------------------------------------------------------------------------


def test_zero_shot_classify_picks_the_top_scored_label_in_one_call():
    backend = CountingBackend(option_scores=keyword_scores, name="m")
    arm = ZeroShot(model="tiny-model")
    data = dataset()
    assert arm.name == "zero_shot@tiny-model" and arm.applies(data) is None
    candidate = arm.prepare(ctx := context(data, backend))
    assert ctx.asked == ["tiny-model"] and candidate.model_id == "scripted:m"
    assert candidate.config == {
        "arm": "zero_shot", "model": "tiny-model", "prompt_version": PROMPT_VERSION,
        "kind": "classify", "answer": "option_scores", "exact_label_scores": False,
    }
    predictions = candidate.predict(data.test)
    assert backend.batches == [("score_options", 3)]
    assert [p.output for p in predictions] == ["billing", "shipping_delay", "account_access"]  # in order
    assert all(p.valid and p.raw is None for p in predictions)
    assert predictions[0].extra["confidence"] > 0.8 and predictions[0].extra["runner_up"] in LABELS
    prompt = backend.calls[0]
    assert prompt[-1] == Message("user", data.test[0].input)
    assert all(label in prompt[0].content for label in LABELS)
    assert predictions[1].usage.tokens_in == sum(len(m.content.split()) for m in backend.calls[1])  # carried
    assert candidate.predict([]) == []


def test_zero_shot_prompts_share_everything_but_the_input():
    backend = ScriptedBackend(option_scores=keyword_scores)
    ZeroShot(model="m").prepare(context(dataset(), backend)).predict(dataset().test)
    assert len({call[:-1] for call in backend.calls}) == 1


def test_zero_shot_needs_a_label_set_for_classify():
    unlabelled = dataset(labels=None)
    assert "label set" in ZeroShot(model="m").applies(unlabelled)


def test_zero_shot_extract_validates_against_the_schema_without_repair():
    replies = {
        TEST[0][0]: '{"queue": "billing", "order_id": "LK-204817"}',
        TEST[1][0]: '{"queue": "shipping_delay", "order_id": "204817"}',  # breaks the pattern
        TEST[2][0]: 'The queue is account_access.',
    }
    backend = CountingBackend(replies, price=None)
    out = [(i, json.dumps({"queue": o, "order_id": None})) for i, o in TRAIN]
    data = dataset("extract", train=out, test=[(i, "{}") for i, _ in TEST], output_schema=SCHEMA)
    candidate = ZeroShot(model="m").prepare(context(data, backend))
    predictions = candidate.predict(data.test)
    assert backend.batches == [("generate", 3)]
    assert backend.last_options.json_mode and backend.last_options.stop == ("\n\n",)
    assert candidate.config["json_mode"] is True and candidate.config["max_new_tokens"] == backend.last_options.max_new_tokens
    assert [p.valid for p in predictions] == [True, False, False]
    assert predictions[0].output == '{"queue":"billing","order_id":"LK-204817"}'
    assert predictions[1].output == '{"queue":"shipping_delay","order_id":"204817"}' and "order_id" in predictions[1].extra["error"]
    assert predictions[2].output == "The queue is account_access." and predictions[2].raw is None
    assert predictions[1].raw == replies[TEST[1][0]]
    assert json_validity_rate(predictions) == pytest.approx(1 / 3)
    system = backend.calls[0][0].content
    assert json.loads(system[system.index("{") :]) == SCHEMA


def test_strict_validity_rate_counts_fenced_replies_as_invalid():
    backend = ScriptedBackend(default='```json\n{"queue": "billing", "order_id": null}\n```')
    data = dataset("extract", train=[("t", '{"queue": "billing", "order_id": null}')], test=TEST[:2], output_schema=SCHEMA)
    predictions = ZeroShot(model="m").prepare(context(data, backend)).predict(data.test)
    assert json_validity_rate(predictions) == 1.0
    assert json_validity_rate(predictions, count_fenced=False) == 0.0


def test_zero_shot_qa_and_generate_answers():
    backend = CountingBackend({"who shipped it?": "Acme Freight\nThey ship on Mondays."}, default="  A reply.  ")
    qa = dataset("qa", train=[("q", "Acme")], test=[("who shipped it?", "Acme Freight")])
    answer = ZeroShot(model="m").prepare(context(qa, backend)).predict(qa.test)[0]
    assert answer.output == "Acme Freight" and answer.raw.startswith("Acme Freight\n")
    assert backend.last_options.stop == ("\n",)
    gen = dataset("generate", train=[("q", "a reply")], test=[("write", "x")])
    reply = ZeroShot(model="m").prepare(context(gen, backend)).predict(gen.test)[0]
    assert reply.output == "A reply." and reply.extra["finish_reason"] == "stop"
    assert backend.last_options.stop == () and not backend.last_options.json_mode


# -- few-shot -------------------------------------------------------------------------------


def test_few_shot_random_uses_the_same_seeded_examples_for_every_input():
    backend = ScriptedBackend(option_scores=keyword_scores)
    arm = FewShot(model="m", k=3)
    assert arm.name == "few_shot_random_k3@m" and FewShot(model="m").name == "few_shot_random@m"
    candidate = arm.prepare(context(dataset(), backend, seed=4))
    predictions = candidate.predict(dataset().test)
    assert [p.output for p in predictions] == [o for _, o in TEST]
    prefixes = {call[:-1] for call in backend.calls}
    assert len(prefixes) == 1
    (prefix,) = prefixes
    assert [m.role for m in prefix] == ["system"] + ["user", "assistant"] * 3
    shown = [m.content for m in prefix if m.role == "user"]
    train_inputs = [i for i, _ in TRAIN]
    assert all(text in train_inputs for text in shown)
    config = candidate.config
    assert config["k"] == 3 and config["k_used"] == 3 and config["seed"] == 4 and config["selection"] == "random"
    assert config["examples"] == [f"t.jsonl:{train_inputs.index(t) + 1}" for t in shown]
    assert config["prompt_version"] == PROMPT_VERSION and config["model"] == "m"
    # Seeded: the same seed picks the same examples, and the arm's own seed wins over the context's.
    again = FewShot(model="m", k=3).prepare(context(dataset(), backend, seed=4)).config["examples"]
    own_seed = FewShot(model="m", k=3, seed=4).prepare(context(dataset(), backend, seed=99)).config["examples"]
    assert again == own_seed == config["examples"]
    others = {tuple(FewShot(model="m", k=3).prepare(context(dataset(), backend, seed=s)).config["examples"]) for s in range(6)}
    assert len(others) > 1


def test_few_shot_nearest_picks_the_most_similar_training_examples():
    backend = ScriptedBackend(option_scores=keyword_scores)
    embedder = KeywordEmbedder()
    arm = FewShot(model="m", k=2, selection="nearest")
    assert arm.name == "few_shot_nearest_k2@m"
    candidate = arm.prepare(context(dataset(), backend, embedder))
    assert candidate.config["embedder"] == "fake:keywords" and candidate.config["selection"] == "nearest"
    assert candidate.prepare_usage is not None and candidate.prepare_usage.latency_s >= 0
    predictions = candidate.predict(dataset().test)
    assert [p.output for p in predictions] == [o for _, o in TEST]
    assert embedder.calls[-1] == [i for i, _ in TEST]  # one encode call per batch
    shown = [[m.content for m in call[1:-1] if m.role == "user"] for call in backend.calls]
    assert shown[0] == ["my invoice shows the wrong price", "I was charged twice for my plan"]
    assert set(shown[1]) == {"the parcel has not arrived yet", "tracking says my parcel is stuck"}
    assert shown[2][-1] == "password reset email never comes so I cannot log in"  # the most similar goes last
    assert predictions[0].extra["examples"] == ["t.jsonl:2", "t.jsonl:1"]
    assert all(call[0] == backend.calls[0][0] for call in backend.calls)  # the instruction still heads every prompt


def test_few_shot_stays_within_the_token_budget():
    many = [f"label_{i}" for i in range(40)]
    long_input = " ".join(["word"] * 300)
    train = [(long_input, many[i % 40]) for i in range(10)]
    data = dataset(train=train, test=[("short", "label_1")], labels=many)
    backend = ScriptedBackend(default="label_1")
    brief_tokens = len(ZeroShot(model="m").prepare(context(data, backend)).prefix[0].content.split())
    arm = FewShot(model="m", k=8, max_prompt_tokens=brief_tokens + 200, max_example_tokens=50)
    candidate = arm.prepare(context(data, backend))
    candidate.predict(data.test)
    prompt = backend.calls[-1]
    users = [m.content for m in prompt[1:-1] if m.role == "user"]
    assert all(len(u.split()) <= 50 and u.endswith(TRUNCATION_MARK) for u in users)
    assert candidate.config["k_used"] == len(users) == 3  # 3 x (50 + 1 + 8) fit in 200, 4 do not
    assert sum(len(m.content.split()) for m in prompt[:-1]) <= brief_tokens + 200


def test_few_shot_applies_only_with_enough_training_examples():
    arm = FewShot(model="m", k=10)
    reason = arm.applies(dataset())
    assert "at least 10 training examples" in reason and "has 6" in reason
    with pytest.raises(TunewiseError, match="at least 10"):
        arm.prepare(context(dataset(), ScriptedBackend(default="billing")))
    assert FewShot(model="m", k=6).applies(dataset()) is None


def test_few_shot_settings_are_checked_with_the_bad_value():
    with pytest.raises(TunewiseError, match="selection 'closest'"):
        FewShot(model="m", selection="closest")  # type: ignore[arg-type]
    with pytest.raises(TunewiseError, match="k must be a positive integer, got 0"):
        FewShot(model="m", k=0)


def test_few_shot_extract_shows_the_reference_json_as_the_answer():
    rows = [(i, json.dumps({"queue": o, "order_id": None})) for i, o in TRAIN]
    data = dataset("extract", train=rows, test=[("where is my parcel", "{}")], output_schema=SCHEMA)
    backend = ScriptedBackend(default='{"queue": "shipping_delay", "order_id": null}')
    prediction = FewShot(model="m", k=2).prepare(context(data, backend)).predict(data.test)[0]
    assert prediction.valid
    answers = [m.content for m in backend.calls[0] if m.role == "assistant"]
    assert all(json.loads(a)["queue"] in LABELS for a in answers)


# -- a real (tiny, random) model: tokenizer, chat template, prefix-cached scoring -------------


def test_prompt_arms_on_a_tiny_real_model(tiny_llama):
    from tunewise.models.local import LocalBackend

    backend = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32")
    train = [(text, TINY_LABELS[i % len(TINY_LABELS)]) for i, text in enumerate(TINY_INPUTS)]
    data = dataset(train=train, test=[(t, TINY_LABELS[0]) for t in TINY_INPUTS], labels=TINY_LABELS)
    for arm in (ZeroShot(model="tiny"), FewShot(model="tiny", k=2)):
        candidate = arm.prepare(context(data, backend))
        assert candidate.model_id == backend.model_id
        predictions = candidate.predict(data.test)
        direct = backend.score_options(candidate.prompts(data.test), TINY_LABELS, exact=True)
        assert [p.output for p in predictions] == [TINY_LABELS[s.best] for s in direct]
        assert all(p.usage.tokens_in > 0 and 0 < p.extra["confidence"] <= 1 for p in predictions)
        assert all(0 <= p.extra["bounded_labels"] < len(TINY_LABELS) for p in predictions)
        assert candidate.config["exact_label_scores"] is False
    exact_plan = dataclasses.replace(candidate.plan, exact_scores=True)
    exact = answer_batch(backend, candidate.prompts(data.test), exact_plan)
    assert [p.output for p in exact] == [p.output for p in predictions]
    assert all(p.extra["bounded_labels"] == 0 for p in exact) and exact_plan.config()["exact_label_scores"]
    # A backend that always scores every label takes no flag: the plan still works with it.
    flat = ScriptedBackend(option_scores=lambda prompt, options: [-1.0] * len(options))
    assert answer_batch(flat, candidate.prompts(data.test[:1]), exact_plan)[0].output == TINY_LABELS[0]
    generated = dataset("qa", train=[("q", "a b")], test=[(TINY_INPUTS[0], "x")])
    answer = ZeroShot(model="tiny").prepare(context(generated, backend)).predict(generated.test)[0]
    assert "\n" not in answer.output and answer.usage.tokens_out >= 1


def test_nearest_few_shot_with_the_real_embedder():
    from tunewise.knowledge.embed import Embedder

    embedder = Embedder.load()  # the bundled all-MiniLM-L6-v2
    backend = ScriptedBackend(option_scores=keyword_scores)
    candidate = FewShot(model="m", k=2, selection="nearest").prepare(context(dataset(), backend, embedder))
    assert candidate.config["embedder"] == embedder.model_id
    candidate.predict(dataset().test)
    shown = [m.content for m in backend.calls[1][1:-1] if m.role == "user"]
    assert set(shown) == {"the parcel has not arrived yet", "tracking says my parcel is stuck"}


# -- the bundled example with the real SmolLM2-135M-Instruct (slow) ---------------------------

SMOLLM = "smollm2-135m-instruct"
N_TEST = 40


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    from tunewise.models.local import LocalBackend

    with pytest.MonkeyPatch.context() as patch:  # the per-test home would dequantize per test
        patch.setenv("TUNEWISE_HOME", str(tmp_path_factory.mktemp("smollm-home")))
        backend = LocalBackend.load(SMOLLM, device="cpu")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def support_tickets():
    from conftest import EXAMPLES

    from tunewise.task import load_card, load_task

    return load_task(load_card(EXAMPLES / "support-tickets" / "task.yaml"))


def _run(candidate, test: list[Example]):
    began = time.perf_counter()
    predictions = []
    for start in range(0, len(test), candidate.batch_size()):
        predictions += candidate.predict(test[start : start + candidate.batch_size()])
    return predictions, time.perf_counter() - began


@pytest.fixture(scope="module")
def minilm():
    from tunewise.knowledge.embed import Embedder

    return Embedder.load()


@pytest.mark.slow
@pytest.mark.parametrize(
    "arm",
    [ZeroShot(model=SMOLLM), FewShot(model=SMOLLM), FewShot(model=SMOLLM, selection="nearest")],
    ids=lambda a: a.name,
)
def test_prompt_arms_on_the_bundled_example(arm, smollm, minilm, support_tickets):
    test = support_tickets.test[:N_TEST]
    candidate = arm.prepare(context(support_tickets, smollm, minilm))
    predictions, seconds = _run(candidate, test)
    outputs = [p.output for p in predictions]
    assert len(outputs) == N_TEST and set(outputs) <= set(support_tickets.labels)
    accuracy = sum(o == e.output for o, e in zip(outputs, test)) / N_TEST
    print(
        f"\n{arm.name}: accuracy {accuracy:.3f} on {N_TEST}, {seconds:.1f} s ({1000 * seconds / N_TEST:.0f} ms/example), "
        f"{np.mean([p.usage.tokens_in for p in predictions]):.0f} prompt tokens, "
        f"mean confidence {np.mean([p.extra['confidence'] for p in predictions]):.2f}, "
        f"predicted {Counter(outputs).most_common(3)}"
    )
