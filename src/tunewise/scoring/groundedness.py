"""Groundedness: is an answer supported by the text that was retrieved for it?

A cheap, deterministic, model-free check, so it can run on every answer (and on every
request in service). The words compared are SQuAD-normalised tokens (lowercase, no
punctuation, no articles), as for exact match and token F1, less a short list of function
words, so "in the year 1969" and "1969" claim the same thing.

    support      the share of the answer's content words found in the retrieved passages
                 (None when the answer claims nothing: empty, or function words only)
    grounded     support >= 0.8, and the answer is not an abstention ("I don't know"). For an
                 answer of up to four content words that means every word is in the passages;
                 a long answer may rephrase a word or two.
    verbatim     the whole normalised answer occurs as one run of tokens in a single passage
                 (what an extractive reader would have produced)
    abstained    the answer says the documents do not hold the answer
    citations    the [n] markers the answer carries. ``citations_valid``: at least one, and
                 each names a passage that was shown. ``cited_support``: the support by the
                 cited passages alone; ``citation_ok`` = valid and cited_support >= 0.8, i.e.
                 the sources the answer names really hold what it says.

Word containment is a floor, not a proof: a grounded answer can still misread its source
("not approved" vs "approved"), and an ungrounded one can be right from the model's own
knowledge. It tells a RAG answer that comes from the documents from one that does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tunewise.scoring.metrics import normalize_answer

GROUNDED_SUPPORT = 0.8

# Function words that carry no claim; a short list on purpose (a longer one starts dropping
# words that do, such as "not" or "before").
FUNCTION_WORDS = frozenset(
    "of in on at to for by with from as and or is are was were be been it its this that these those "
    "which who whom what there their they he she his her him we our you your i".split()
)

_ABSTENTION = re.compile(
    r"^(?:i (?:do not|dont|cannot|cant) (?:know|answer|tell|find)|unknown|no answer|cannot answer|"
    r"not (?:stated|mentioned|given|found|provided|specified)|"
    r"(?:documents|references|sources) do not (?:say|mention|contain|state))"
)


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def content_tokens(text: str) -> list[str]:
    """The answer's words less function words (all of them when nothing else is left)."""
    tokens = answer_tokens(text)
    content = [token for token in tokens if token not in FUNCTION_WORDS]
    return content or tokens


def is_abstention(answer: str) -> bool:
    return bool(_ABSTENTION.match(normalize_answer(answer)))


def support(answer: str, passages: Iterable[str]) -> float | None:
    """The share of the answer's content words that occur in the passages (None: no words)."""
    words = content_tokens(answer)
    if not words:
        return None
    vocabulary = {token for passage in passages for token in answer_tokens(passage)}
    return sum(word in vocabulary for word in words) / len(words)


def occurs_verbatim(answer: str, passages: Iterable[str]) -> bool:
    """Whether the normalised answer is one contiguous run of a single passage's tokens."""
    needle = answer_tokens(answer)
    if not needle:
        return False
    joined = " " + " ".join(needle) + " "
    return any(joined in " " + " ".join(answer_tokens(passage)) + " " for passage in passages)


@dataclass(frozen=True)
class Groundedness:
    """One answer's groundedness (see the module doc); stored as a dict in Prediction.extra."""

    support: float | None
    grounded: bool
    verbatim: bool
    abstained: bool
    citations: tuple[int, ...] = ()
    citations_valid: bool | None = None  # None: citations were not asked for
    cited_support: float | None = None
    citation_ok: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["citations"] = list(self.citations)
        return data


def assess(answer: str, passages: Sequence[str], citations: Sequence[int] | None = None) -> Groundedness:
    """The groundedness of ``answer`` given the passages shown (numbered from 1 in the prompt)
    and, when citations were asked for, the passage numbers it cites (None: not asked)."""
    abstained = is_abstention(answer)
    share = support(answer, passages)
    grounded = not abstained and share is not None and share >= GROUNDED_SUPPORT
    result = Groundedness(share, grounded, occurs_verbatim(answer, passages), abstained)
    if citations is None:
        return result
    cited = tuple(dict.fromkeys(citations))  # unique, in the order cited
    valid = bool(cited) and all(1 <= number <= len(passages) for number in cited)
    cited_share = support(answer, [passages[n - 1] for n in cited]) if valid else None
    ok = valid and not abstained and cited_share is not None and cited_share >= GROUNDED_SUPPORT
    return Groundedness(share, grounded, result.verbatim, abstained, cited, valid, cited_share, ok)


def summarize_groundedness(records: Iterable[Mapping[str, Any] | None]) -> dict[str, float]:
    """Rates over the answers that carry a groundedness record (retrieval arms) and do not
    abstain (an abstention claims nothing, so it is neither grounded nor not):

    grounded    share of those answers that are grounded
    cited       share of those answers whose citations hold up (``citation_ok``; only when
                citations were asked for)

    Empty when no answer carries a record (closed-book arms) or every answer abstains. How
    often answers abstain is in each record (``abstained``).
    """
    answered = [record for record in records if record and not record.get("abstained")]
    if not answered:
        return {}
    summary = {"grounded": sum(bool(record.get("grounded")) for record in answered) / len(answered)}
    asked = [record for record in answered if record.get("citations_valid") is not None]
    if asked:
        summary["cited"] = sum(bool(record.get("citation_ok")) for record in asked) / len(asked)
    return summary
