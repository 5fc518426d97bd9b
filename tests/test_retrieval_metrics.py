"""Retrieval metrics against gold sources, and groundedness of answers against retrieved text."""

from __future__ import annotations

import math

import pytest

from tunewise.scoring.groundedness import assess, is_abstention, occurs_verbatim, summarize_groundedness, support
from tunewise.scoring.retrieval import (
    GoldSource,
    detail_scores,
    gold_sources,
    hit_at_k,
    is_relevant,
    ndcg_at_k,
    paragraph_span,
    reciprocal_rank,
    relevant_ranks,
    score_retrieval,
    summarize_retrieval,
)


def chunk(source: str, paragraphs: list[int] | int | None, rank: int | None = None) -> dict:
    record: dict = {"source": source, "position": {} if paragraphs is None else {"paragraphs": paragraphs}}
    if rank is not None:
        record["rank"] = rank
    return record


# -- gold sources and relevance -----------------------------------------------------------------


def test_gold_sources_come_in_every_documented_form():
    assert gold_sources({"document": "Apollo_program.md", "paragraph": 14}) == [GoldSource("Apollo_program.md", 14)]
    assert gold_sources({"document": "./docs\\refunds.md"}) == [GoldSource("docs/refunds.md")]
    assert gold_sources("faq.md") == [GoldSource("faq.md")]
    assert gold_sources([{"document": "a.md", "paragraph": 0}, "b.md"]) == [GoldSource("a.md", 0), GoldSource("b.md")]


@pytest.mark.parametrize("value", [None, "", 7, {"paragraph": 3}, {"document": "  "}, [None, {}]])
def test_values_that_name_no_source_give_no_gold(value):
    assert gold_sources(value) == []


def test_a_bad_paragraph_value_falls_back_to_the_document():
    assert gold_sources({"document": "a.md", "paragraph": -1}) == [GoldSource("a.md")]
    assert gold_sources({"document": "a.md", "paragraph": True}) == [GoldSource("a.md")]
    assert gold_sources({"document": "a.md", "paragraph": "3"}) == [GoldSource("a.md")]


def test_paragraph_spans_are_read_from_the_knowledge_base_positions():
    assert paragraph_span({"paragraphs": [2, 4]}) == (2, 4)
    assert paragraph_span({"paragraph": 3}) == (3, 3)
    assert paragraph_span({"paragraph": {"start": 1, "end": 2}}) == (1, 2)
    assert paragraph_span({"heading": ["Refunds"]}) is None
    assert paragraph_span(None) is None


def test_a_chunk_is_relevant_when_its_paragraph_span_covers_the_gold_paragraph():
    gold = GoldSource("Apollo_program.md", 14)
    assert is_relevant(chunk("Apollo_program.md", [13, 15]), gold)
    assert is_relevant(chunk("Apollo_program.md", [14, 14]), gold)
    assert not is_relevant(chunk("Apollo_program.md", [15, 16]), gold)
    assert not is_relevant(chunk("Apollo_program.md", None), gold)  # position unknown: cannot claim the paragraph
    assert not is_relevant(chunk("Amazon_rainforest.md", [14, 14]), gold)
    assert is_relevant(chunk("Apollo_program.md", None), GoldSource("Apollo_program.md"))


# -- hit@k, MRR, nDCG ---------------------------------------------------------------------------


def test_scores_of_a_gold_paragraph_found_third():
    chunks = [chunk("a.md", [0, 0]), chunk("b.md", [5, 5]), chunk("gold.md", [2, 3]), chunk("gold.md", [2, 2])]
    scores = score_retrieval(chunks, {"document": "gold.md", "paragraph": 2})
    assert scores.ranks == (3,)  # the second chunk covering it is not a second success
    assert (scores.hit(1), scores.hit(5)) == (0.0, 1.0)
    assert scores.rr == pytest.approx(1 / 3)
    assert scores.ndcg(5) == pytest.approx(1 / math.log2(4))
    assert scores.ndcg(2) == 0.0


def test_recorded_ranks_decide_the_order_over_list_order():
    chunks = [chunk("x.md", [0, 0], rank=2), chunk("gold.md", [0, 0], rank=1)]
    assert relevant_ranks(chunks, [GoldSource("gold.md", 0)]) == [1]


def test_several_gold_sources_each_count_once_and_ndcg_stays_within_one():
    golds = [GoldSource("a.md"), GoldSource("b.md")]
    ranks = relevant_ranks([chunk("a.md", [0, 0]), chunk("a.md", [1, 1]), chunk("b.md", [0, 0])], golds)
    assert ranks == [1, 3]
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(ranks, 5, 2) == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert ndcg_at_k([1, 2], 5, 2) == pytest.approx(1.0)


def test_nothing_relevant_retrieved_scores_zero():
    assert hit_at_k([], 5) == 0.0 and reciprocal_rank([]) == 0.0 and ndcg_at_k([], 5, 1) == 0.0


def test_summary_averages_only_the_examples_that_name_a_gold_source():
    found_first = score_retrieval([chunk("g.md", [0, 0])], "g.md")
    found_fourth = score_retrieval([chunk("x.md", [0, 0])] * 3 + [chunk("g.md", [0, 0])], "g.md")
    summary = summarize_retrieval([found_first, None, found_fourth])
    assert summary["hit@1"] == 0.5 and summary["hit@5"] == 1.0
    assert summary["mrr"] == pytest.approx((1 + 0.25) / 2)
    assert summary["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / 2)
    assert summarize_retrieval([None, None]) == {}


# -- groundedness -------------------------------------------------------------------------------

PASSAGES = ["The Apollo program landed the first humans on the Moon in 1969.",
            "Larkspur refunds hardware returned within 30 days of delivery."]


def test_support_is_the_share_of_content_words_found_in_the_passages():
    assert support("in 1969", PASSAGES) == 1.0  # "in" is a function word: the claim is 1969
    assert support("the Moon in 1972", PASSAGES) == 0.5
    assert support("", PASSAGES) is None
    assert support("the", PASSAGES) is None


def test_grounded_needs_every_word_of_a_short_answer():
    assert assess("30 days", PASSAGES).grounded
    assert not assess("30 business days", PASSAGES).grounded  # 2 of 3 content words
    long_answer = "hardware returned within 30 days of delivery is refunded by Larkspur"
    assert assess(long_answer, PASSAGES).support == pytest.approx(7 / 8)  # "refunded" is not "refunds"
    assert assess(long_answer, PASSAGES).grounded


def test_verbatim_means_one_run_of_a_single_passage():
    assert occurs_verbatim("first humans on the Moon", PASSAGES)
    assert not occurs_verbatim("Moon refunds", PASSAGES)


@pytest.mark.parametrize("answer", ["I don't know", "I do not know.", "Unknown", "The documents do not say."])
def test_abstentions_are_recognised_and_never_grounded(answer):
    assert is_abstention(answer)
    assert not assess(answer, PASSAGES).grounded


def test_citations_must_name_shown_passages_that_hold_the_answer():
    right = assess("1969", PASSAGES, citations=[1])
    assert right.citations_valid and right.citation_ok and right.cited_support == 1.0
    wrong_source = assess("1969", PASSAGES, citations=[2])
    assert wrong_source.citations_valid and not wrong_source.citation_ok
    out_of_range = assess("1969", PASSAGES, citations=[3])
    assert out_of_range.citations_valid is False and not out_of_range.citation_ok
    none_given = assess("1969", PASSAGES, citations=[])
    assert none_given.citations_valid is False
    not_asked = assess("1969", PASSAGES)
    assert not_asked.citations_valid is None and not_asked.citation_ok is None


def test_groundedness_summary_leaves_abstentions_out():
    records = [assess("1969", PASSAGES, [1]).to_dict(), assess("1972", PASSAGES, [1]).to_dict(),
               assess("I don't know", PASSAGES, []).to_dict(), None]
    assert summarize_groundedness(records) == {"grounded": 0.5, "cited": 0.5}
    assert summarize_groundedness([assess("1969", PASSAGES).to_dict()]) == {"grounded": 1.0}  # citations not asked
    assert summarize_groundedness([None, {}, assess("Unknown", PASSAGES).to_dict()]) == {}


def test_detail_scores_combine_retrieval_and_groundedness_and_skip_closed_book_arms():
    details = [
        {"retrieved": [chunk("g.md", [1, 1], rank=1)], "groundedness": assess("1969", PASSAGES, [1]).to_dict()},
        {"retrieved": [chunk("x.md", [0, 0], rank=1)], "groundedness": assess("1972", PASSAGES, [1]).to_dict()},
    ]
    scores = detail_scores(details, [{"document": "g.md", "paragraph": 1}, {"document": "g.md", "paragraph": 1}])
    assert scores["hit@1"] == 0.5 and scores["mrr"] == 0.5 and scores["grounded"] == 0.5
    assert detail_scores([{"finish_reason": "stop"}, None], ["g.md", "g.md"]) == {}
