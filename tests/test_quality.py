"""Data-quality findings on small synthetic data, and the near-duplicate search itself."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest

from tunewise.task import quality
from tunewise.task.card import TaskCard
from tunewise.task.dataset import Dataset, Example
from tunewise.task.quality import (
    char_ngram_tfidf,
    encoding_damage,
    normalise_text,
    quality_findings,
    similar_pairs,
    training_count,
)


def make_card(kind: str = "classify", **fields) -> TaskCard:
    return TaskCard.model_validate({"name": "t", "kind": kind, "instruction": "x",
                                    "data": {"train": "train.jsonl", "test": "test.jsonl"}, **fields})


def rows(texts_and_outputs, source: str = "train.jsonl", **extra) -> list[Example]:
    return [Example(input=text, output=output, source=source, line=line, **extra)
            for line, (text, output) in enumerate(texts_and_outputs, 1)]


def make_dataset(card: TaskCard, train=(), validation=(), test=(), labels=None) -> Dataset:
    splits = {"train": list(train), "validation": list(validation), "test": list(test)}
    if labels is None and card.kind.value == "classify":
        labels = card.labels or sorted({ex.output for ex in splits["train"]})
    return Dataset(card=card, splits=splits, labels=labels, data_hashes={})


_rng = random.Random(0)
_WORDS = ["".join(_rng.choice(string.ascii_lowercase) for _ in range(_rng.randint(4, 9))) for _ in range(400)]


def distinct_sentences(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(_WORDS, 7)) for _ in range(n)]


def clean(n: int = 60, seed: int = 1, source: str = "train.jsonl", labels=("a", "b", "c")) -> list[Example]:
    return rows([(text, labels[i % len(labels)]) for i, text in enumerate(distinct_sentences(n, seed))], source)


def finding(findings, code):
    matches = [f for f in findings if f.code == code]
    return matches[0] if matches else None


# -- text helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b", [
    ("What's the weather?", "whats the  weather"),
    ("Book a FLIGHT — to Paris!", "book a flight to paris"),
    ("ｆｕｌｌ width", "full width"),  # NFKC
    ("it’s  here\n", "its here"),
])
def test_normalise_text_ignores_case_punctuation_and_spacing(a, b):
    assert normalise_text(a) == normalise_text(b)


def test_normalise_text_keeps_words_apart():
    assert normalise_text("hot dog") != normalise_text("hotdog")
    assert normalise_text("cat") != normalise_text("cats")


def test_inputs_of_only_symbols_stay_distinct():
    assert normalise_text("😀") != normalise_text("😢")
    assert normalise_text("?") != normalise_text("!")
    assert normalise_text(" ?? ") == normalise_text("??")


@pytest.mark.parametrize("text, kind", [
    ("Play ExpresiÃ³n from Mickey Finn", "mojibake"),
    ("itâ€™s late", "mojibake"),
    ("naÃ¯ve", "mojibake"),
    ("lost byte \ufffd here", "replacement character"),
    ("plain ascii", None),
    ("Beyoncé", None),
    ("Flow Español", None),
    ("naïve café", None),
    ("東京タワー", None),
    ("emoji 😀 ok", None),
])
def test_encoding_damage_finds_mojibake_and_replacement_characters(text, kind):
    assert encoding_damage(text) == kind


# -- the near-duplicate search -------------------------------------------------------------------


def test_char_ngram_tfidf_matches_scikit_learn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = distinct_sentences(50) + ["a b", "Hello,  World!", "café au lait", "x", "sentence with   gaps"]
    ours = char_ngram_tfidf(texts)
    theirs = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit_transform(texts)
    assert ours.shape == theirs.shape  # same vocabulary size
    np.testing.assert_allclose((ours @ ours.T).toarray(), (theirs @ theirs.T).toarray(), atol=1e-5)


def test_char_ngram_tfidf_of_texts_without_words_is_none():
    assert char_ngram_tfidf(["", "   "]) is None
    assert similar_pairs(["", " "]) == []
    assert similar_pairs(["only one"]) == []


def _brute_force(texts, threshold):
    matrix = char_ngram_tfidf(texts)
    sims = (matrix @ matrix.T).toarray()
    return {(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts)) if sims[i, j] >= threshold}


def _variants(n: int, seed: int) -> list[str]:
    """Sentences plus small edits of them, and many short texts made of common n-grams."""
    rng = random.Random(seed)
    base = distinct_sentences(n, seed)
    texts = list(base)
    for text in base[: n // 2]:
        words = text.split()
        words[rng.randrange(len(words))] = rng.choice(_WORDS)
        texts.append(" ".join(words))
        texts.append(text + rng.choice(["", " please", "?", " now"]))
    texts += [f"the the {w}" for w in ("a", "an", "the", "then", "them")]  # common-n-gram-only texts
    return texts


@pytest.mark.parametrize("rare_df, max_dense", [(200, 3000), (2, 3000), (1, 5)])
def test_similar_pairs_equals_comparing_every_pair(monkeypatch, rare_df, max_dense):
    # small cut-offs force the common-feature bound, the full block and the cut-off doubling
    monkeypatch.setattr(quality, "_RARE_DF", rare_df)
    monkeypatch.setattr(quality, "_MAX_DENSE_ROWS", max_dense)
    texts = _variants(120, seed=rare_df)
    for threshold in (0.6, 0.9):
        found = similar_pairs(texts, threshold)
        assert {(i, j) for i, j, _ in found} == _brute_force(texts, threshold)
        assert all(i < j and sim >= threshold - 1e-6 for i, j, sim in found)


# -- findings --------------------------------------------------------------------------------


def test_clean_data_has_no_findings():
    card = make_card()
    data = make_dataset(card, train=clean(60), validation=clean(10, 2, "val.jsonl"), test=clean(30, 3, "test.jsonl"))
    assert quality_findings(data) == []


def test_exact_duplicates_within_train_are_counted_as_extra_copies():
    train = clean(30) + rows([("hello there", "a"), ("hello there", "a"), ("hello there", "a")], "dup.jsonl")
    found = finding(quality_findings(make_dataset(make_card(), train=train, test=clean(20, 3, "test.jsonl"))),
                    "duplicate_input")
    assert found.count == 2 and found.severity == "warning"
    assert found.examples[0]["text"] == "hello there"
    assert (found.examples[0]["file"], found.examples[0]["line"]) == ("dup.jsonl", 1)
    assert found.examples[0]["also"] == ["dup.jsonl:2", "dup.jsonl:3"]


def test_near_duplicates_by_normalising_and_by_cosine():
    extra = rows([("What's the weather today?", "a"), ("whats the weather today", "a"),
                  ("please set a timer for ten minutes", "b"), ("please set a timer for ten minutes now", "b")],
                 "near.jsonl")
    data = make_dataset(make_card(), train=clean(40) + extra, test=clean(20, 3, "test.jsonl"))
    found = finding(quality_findings(data), "near_duplicate_input")
    assert found.count == 4 and found.severity == "info"
    pairs = {(e["line"], e["other"]["line"]) for e in found.examples}
    assert pairs == {(1, 2), (3, 4)}
    assert {e["similarity"] for e in found.examples if e["line"] == 1} == {1.0}
    assert 0.9 <= next(e["similarity"] for e in found.examples if e["line"] == 3) < 1.0


def test_conflicting_outputs_for_the_same_input():
    train = clean(30) + rows([("Cancel my order", "cancel"), ("cancel my order!", "refund")], "c.jsonl")
    found = finding(quality_findings(make_dataset(make_card(), train=train, test=clean(20, 3, "test.jsonl"))),
                    "conflicting_outputs")
    assert found.count == 1
    assert [o["output"] for o in found.examples[0]["outputs"]] == ["cancel", "refund"]
    assert found.examples[0]["outputs"][1]["rows"] == ["c.jsonl:2"]


def test_qa_rows_that_share_an_accepted_answer_do_not_conflict():
    card = make_card("qa")
    agree = [Example("Who wrote it?", "Smith", "train.jsonl", 1, references=("Smith", "J. Smith")),
             Example("who wrote it", "J. Smith", "train.jsonl", 2)]
    disagree = [Example("Where is it?", "Rome", "train.jsonl", 3), Example("where is it", "Paris", "train.jsonl", 4)]
    data = make_dataset(card, train=clean(30) + agree + disagree, test=clean(20, 3, "test.jsonl"))
    found = finding(quality_findings(data), "conflicting_outputs")
    assert found.count == 1 and found.examples[0]["text"] == "Where is it?"


def test_train_test_leakage_exact_normalised_and_similar():
    train = clean(40) + rows([("book a flight to paris", "a"), ("Play some jazz music", "b"),
                              ("what is the capital city of australia", "c")], "leak_train.jsonl")
    test = clean(20, 3, "test.jsonl") + rows([("book a flight to paris", "a"), ("play some jazz music!", "b"),
                                              ("what is the capital city of australia?!", "c"),
                                              ("so what is the capital city of australia", "c"),
                                              ("what is the capital city of austria", "c")], "leak_test.jsonl")
    found = finding(quality_findings(make_dataset(make_card(), train=train, test=test)), "train_test_leakage")
    matches = {e["line"]: e["match"] for e in found.examples}
    assert matches[1] == "exact" and matches[2] == "normalised" and matches[3] == "normalised"
    assert found.count == len(matches) == 4 and matches[4] == "similar"  # cosine 0.97
    assert 5 not in matches  # "austria" vs "australia": cosine 0.81, a different question
    assert "4 test rows of 25" in found.summary


def test_leakage_ignores_near_duplicates_within_test():
    test = clean(20, 3, "test.jsonl") + rows([("same question here", "a"), ("same question here", "a")], "t.jsonl")
    findings = quality_findings(make_dataset(make_card(), train=clean(40), test=test))
    assert finding(findings, "train_test_leakage") is None
    assert finding(findings, "duplicate_input").count == 1


def test_label_imbalance_in_train():
    train = rows([(text, "common") for text in distinct_sentences(100)] +
                 [(text, "rare") for text in distinct_sentences(5, 9)])
    found = finding(quality_findings(make_dataset(make_card(), train=train, test=clean(20, 3, "test.jsonl"))),
                    "label_imbalance")
    assert found.count == 1 and "20x" in found.summary
    assert found.examples[0] == {"label": "rare", "train_examples": 5}


def test_a_card_label_without_training_examples_is_imbalance():
    card = make_card(labels=["a", "b", "c", "never"])
    found = finding(quality_findings(make_dataset(card, train=clean(60), test=clean(20, 3, "test.jsonl"))),
                    "label_imbalance")
    assert "no training example (never)" in found.summary


def test_balanced_labels_raise_nothing():
    data = make_dataset(make_card(), train=clean(90), test=clean(20, 3, "test.jsonl"))
    assert finding(quality_findings(data), "label_imbalance") is None


def test_labels_only_in_test_are_unseen():
    test = clean(20, 3, "test.jsonl") + rows([("an unusual request entirely", "zz")], "odd.jsonl")
    found = finding(quality_findings(make_dataset(make_card(), train=clean(60), test=test)), "unseen_labels")
    assert found.count == 1 and found.examples[0]["label"] == "zz" and found.examples[0]["file"] == "odd.jsonl"


def test_encoding_damage_with_file_line_and_suggested_repair():
    train = clean(30) + rows([("Play ExpresiÃ³n now", "a"), ("fine text", "b"), ("broken \ufffd byte", "c")],
                             "enc.jsonl")
    found = finding(quality_findings(make_dataset(make_card(), train=train, test=clean(20, 3, "test.jsonl"))),
                    "encoding_damage")
    assert found.count == 2
    first, second = found.examples
    assert (first["file"], first["line"], first["damage"], first["suggested"]) == (
        "enc.jsonl", 1, "mojibake", "Play Expresión now")
    assert (second["line"], second["damage"]) == (3, "replacement character") and "suggested" not in second


def test_encoding_damage_in_the_output_counts_too():
    card = make_card("extract")
    train = clean(30) + [Example("Play the album", '{"album":"NoctÃ¡mbulo"}', "e.jsonl", 7)]
    found = finding(quality_findings(make_dataset(card, train=train, test=clean(20, 3, "test.jsonl"))),
                    "encoding_damage")
    assert found.count == 1 and found.examples[0]["field"] == "output" and found.examples[0]["line"] == 7


def test_length_outliers_show_the_extreme_rows():
    train = clean(60) + rows([("word " * 400, "a"), ("ok", "b")], "long.jsonl")
    found = finding(quality_findings(make_dataset(make_card(), train=train, test=clean(20, 3, "test.jsonl"))),
                    "length_outliers_input")
    assert found.count == 2 and found.severity == "info"
    assert [(e["line"], e["chars"]) for e in found.examples] == [(1, 2000), (2, 2)]


def test_output_lengths_are_checked_for_generate_not_classify():
    long_output = rows([(text, "short answer") for text in distinct_sentences(60)] +
                       [("one more question here", "a much longer answer " * 50)])
    test = rows([(text, "short answer") for text in distinct_sentences(20, 3)], "t.jsonl")
    gen = quality_findings(make_dataset(make_card("generate"), train=long_output, test=test))
    assert finding(gen, "length_outliers_output").count == 1
    classify = quality_findings(make_dataset(make_card(), train=long_output, test=test))
    assert finding(classify, "length_outliers_output") is None


def test_an_empty_test_split_is_a_warning():
    found = finding(quality_findings(make_dataset(make_card(), train=clean(30))), "empty_split")
    assert found.severity == "warning" and "test" in found.summary


def test_warnings_come_before_infos():
    train = clean(40) + rows([("dup", "a"), ("dup", "a"), ("word " * 300, "a")], "x.jsonl")
    findings = quality_findings(make_dataset(make_card(), train=train, test=clean(20, 3, "test.jsonl")))
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=lambda s: s != "warning") and "info" in severities


# -- usable training examples ------------------------------------------------------------------


def test_training_count_drops_damage_conflicts_and_duplicate_copies():
    train = clean(50) + rows([("same thing", "a"), ("Same thing!", "a"), ("same thing", "a"),
                              ("clash", "a"), ("clash", "b"), ("bad Ã© text", "a")], "x.jsonl")
    validation = clean(10, 2, "val.jsonl")
    count = training_count(make_dataset(make_card(), train=train, validation=validation, test=clean(5, 3)))
    assert (count.total, count.damaged, count.conflicting, count.duplicates) == (66, 1, 2, 2)
    assert count.usable == 61 == count.total - count.damaged - count.conflicting - count.duplicates
