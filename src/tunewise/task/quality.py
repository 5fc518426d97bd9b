"""Data-quality findings that do not stop the run, and the count of usable training examples.

Definitions (each finding's summary repeats the numbers):

- **Normalised input** (``normalise_text``): Unicode NFKC, case-folded, apostrophes dropped,
  every other run of punctuation, symbols and whitespace turned into one space, trimmed
  (an input of only punctuation or emoji keeps its characters). "What's the weather?" and
  "whats the  weather" normalise alike. Splitting hashes this
  text too, so normalised-equal inputs always land in the same split.
- **Duplicate input**: the very same input string twice within the training data
  (train + validation) or within test. Counted as the extra copies.
- **Near-duplicate input**: two different input strings in the same part (training data or
  test) that are equal once normalised, or whose TF-IDF vectors of character 3-5-grams
  (within word boundaries, sublinear tf, L2-normalised) have cosine similarity >= 0.9. The
  search is exact, not approximate (see ``similar_pairs``). 0.9 was picked by reading pairs
  from CLINC150 and SQuAD: at 0.9 and above they are rewordings ("i want to make a
  reservation ..." / "i need to make a reservation ..."; "Which group headlined the Super
  Bowl 50 halftime show?" / "Who headlined ..."); between 0.85 and 0.9 they start to ask
  different things ("... delta of the Rhine in the East?" / "... in the west?").
- **Conflicting outputs**: the same normalised input with expected outputs that share no
  accepted answer (for qa, each row's ``answers``; otherwise the output itself), anywhere in
  the data.
- **Train/test leakage**: a test row whose input is the same, normalised-equal or
  near-duplicate (as above) of an input in train or validation.
- **Label imbalance** (classify): in train, the rarest label has under a tenth of the
  examples of the most common one, or a label of the set has no training example.
- **Unseen labels** (classify, labels inferred from train): validation or test rows whose
  label never occurs in train, so no model trained on train can predict it.
- **Encoding damage**: text with mojibake (UTF-8 decoded as Latin-1 / Windows-1252, e.g.
  "canciÃ³n", "itâ€™s"; detected with ftfy's ``badness.is_bad``) or U+FFFD replacement
  characters (bytes lost in an earlier decode). ftfy's repair is shown as a suggestion.
- **Empty split**: train or test holds no example (too little data for ``data.split``).
- **Length outliers**: inputs (and, for extract/generate/qa, outputs) whose length in
  characters lies outside Tukey's far-out fences on the log scale (Q1 - 3 IQR, Q3 + 3 IQR).
  Log scale, because text lengths are skewed; far-out, so only the striking ones are shown.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunewise.task.card import Kind
from tunewise.task.dataset import Dataset, Example
from tunewise.task.findings import QualityFinding

NEAR_DUPLICATE_COSINE = 0.9
CHAR_NGRAMS = (3, 5)
IMBALANCE_RATIO = 10.0  # most common / rarest label in train at or above which we warn
OUTLIER_FENCE = 3.0  # Tukey's k for "far out"
MAX_EXAMPLES = 5
_TEXT_CHARS = 200  # characters of a text shown in an example

# -- normalisation and encoding damage ----------------------------------------------------

_APOSTROPHES = re.compile(r"['\u2019\u02bc`]")
_NON_WORD = re.compile(r"[\W_]+")


def normalise_text(text: str) -> str:
    """The text's identity for duplicate detection and split assignment (see module doc).

    Part of the split's contract: changing it moves examples between splits.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = _NON_WORD.sub(" ", _APOSTROPHES.sub("", folded)).strip()
    # inputs of only punctuation or emoji ("?", "😀") keep their characters, or all would be equal
    return words or folded.strip()


def encoding_damage(text: str) -> str | None:
    """What kind of encoding damage ``text`` shows ("mojibake", "replacement character"), or None."""
    if text.isascii():
        return None  # mojibake needs non-ASCII characters; this keeps the check cheap
    if "\ufffd" in text:
        return "replacement character"
    from ftfy.badness import is_bad

    return "mojibake" if is_bad(text) else None


def suggested_repair(text: str) -> str | None:
    """ftfy's repair of mojibake, when it changes the text."""
    from ftfy import fix_text

    fixed = fix_text(text)
    return fixed if fixed != text else None


# -- rows: the examples with where they sit ------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    example: Example
    part: str  # "fit" (train + validation: what a model learns from) or "test"
    key: str  # normalised input


def _rows(dataset: Dataset) -> list[_Row]:
    rows = []
    for split, examples in dataset.splits.items():
        part = "test" if split == "test" else "fit"
        rows.extend(_Row(ex, part, normalise_text(ex.input)) for ex in examples)
    return rows


def _place(ex: Example) -> str:
    return f"{ex.source}:{ex.line}"


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_CHARS else text[:_TEXT_CHARS] + "..."


def _example(ex: Example, **extra: Any) -> dict[str, Any]:
    return {"file": ex.source, "line": ex.line, "text": _short(ex.input), **extra}


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


# -- the findings -------------------------------------------------------------------------


def quality_findings(dataset: Dataset) -> list[QualityFinding]:
    """Every finding that applies to the dataset, most serious first. Empty when all is well."""
    rows = _rows(dataset)
    by_key: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        by_key[row.key].append(row)
    keys = list(by_key)
    pairs = similar_pairs([by_key[key][0].example.input for key in keys])
    similar = [(keys[i], keys[j], sim) for i, j, sim in pairs]

    found = [
        _empty_splits(dataset),
        _conflicting_outputs(by_key),
        _train_test_leakage(by_key, similar),
        _duplicates(rows),
        _near_duplicates(by_key, similar),
        _encoding_damage(rows),
    ]
    if dataset.card.kind is Kind.classify:
        found += [_label_imbalance(dataset), _unseen_labels(dataset)]
    found += _length_outliers(rows, dataset.card.kind)
    findings = [finding for finding in found if finding is not None]
    return sorted(findings, key=lambda f: f.severity != "warning")


def _empty_splits(dataset: Dataset) -> QualityFinding | None:
    # an empty validation split is allowed (a fraction of 0 is a choice); train and test are not
    empty = [name for name in ("train", "test") if not dataset.splits[name]]
    if not empty:
        return None
    return QualityFinding(
        "empty_split", "warning", len(empty),
        f"no examples in {', '.join(empty)}; add examples or adjust data.split",
        [{"split": name, "examples": 0} for name in empty],
    )


def _duplicates(rows: list[_Row]) -> QualityFinding | None:
    groups: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for row in rows:
        groups[(row.part, row.example.input)].append(row.example)
    repeated = [group for group in groups.values() if len(group) > 1]
    if not repeated:
        return None
    extra = sum(len(group) - 1 for group in repeated)
    repeated.sort(key=len, reverse=True)
    examples = [_example(group[0], also=[_place(ex) for ex in group[1:6]], copies=len(group))
                for group in repeated[:MAX_EXAMPLES]]
    return QualityFinding(
        "duplicate_input", "warning", extra,
        f"{_plural(extra, 'extra copy', 'extra copies')} of {_plural(len(repeated), 'input')} that appear more "
        "than once within train+validation or within test; duplicates over-weight those inputs",
        examples,
    )


def _near_duplicates(by_key: dict[str, list[_Row]], similar: list[tuple[str, str, float]]) -> QualityFinding | None:
    involved: set[int] = set()  # ids of rows with a near-duplicate partner
    examples: list[dict[str, Any]] = []
    n_pairs = 0

    def note(a: _Row, b: _Row, similarity: float) -> None:
        nonlocal n_pairs
        n_pairs += 1
        involved.update((id(a), id(b)))
        if len(examples) < MAX_EXAMPLES:
            examples.append(_example(a.example, other=_example(b.example), similarity=round(similarity, 3)))

    for group in by_key.values():  # normalised-equal, different strings
        for part in ("fit", "test"):
            first_by_text: dict[str, _Row] = {}
            for row in group:
                if row.part == part:
                    first_by_text.setdefault(row.example.input, row)
            distinct = list(first_by_text.values())
            for other in distinct[1:]:
                note(distinct[0], other, 1.0)
            if len(distinct) > 1:
                involved.update(id(row) for row in group if row.part == part)
    for key_a, key_b, sim in similar:  # TF-IDF neighbours
        for part in ("fit", "test"):
            a = next((row for row in by_key[key_a] if row.part == part), None)
            b = next((row for row in by_key[key_b] if row.part == part), None)
            if a is not None and b is not None:
                note(a, b, sim)
                involved.update(id(row) for row in by_key[key_a] + by_key[key_b] if row.part == part)
    if not involved:
        return None
    return QualityFinding(
        "near_duplicate_input", "info", len(involved),
        f"{_plural(len(involved), 'row')} in {_plural(n_pairs, 'pair')} of near-identical inputs (equal once "
        f"case and punctuation are ignored, or character-n-gram cosine >= {NEAR_DUPLICATE_COSINE}) within "
        "train+validation or within test",
        examples,
    )


def _conflicting_outputs(by_key: dict[str, list[_Row]]) -> QualityFinding | None:
    conflicts = [group for group in by_key.values() if len(group) > 1 and _conflicting(group)]
    if not conflicts:
        return None
    n_rows = sum(len(group) for group in conflicts)
    examples = []
    for group in conflicts[:MAX_EXAMPLES]:
        outputs: dict[str, list[str]] = defaultdict(list)
        for row in group:
            outputs[row.example.output].append(_place(row.example))
        examples.append(_example(group[0].example,
                                 outputs=[{"output": _short(out), "rows": places[:5]}
                                          for out, places in list(outputs.items())[:5]]))
    return QualityFinding(
        "conflicting_outputs", "warning", len(conflicts),
        f"{_plural(len(conflicts), 'input')} ({_plural(n_rows, 'row')}) appear with different expected outputs; "
        "a model cannot get both right, so fix or drop them",
        examples,
    )


def _conflicting(group: list[_Row]) -> bool:
    shared = set(group[0].example.answers)
    for row in group[1:]:
        shared &= set(row.example.answers)
        if not shared:
            return True
    return False


def _train_test_leakage(by_key: dict[str, list[_Row]], similar: list[tuple[str, str, float]]) -> QualityFinding | None:
    n_test = sum(1 for group in by_key.values() for row in group if row.part == "test")
    leaked: dict[int, tuple[_Row, _Row, float, str]] = {}  # test row id -> (test row, fit row, similarity, how)
    for group in by_key.values():
        fit = [row for row in group if row.part == "fit"]
        if not fit:
            continue
        fit_texts = {row.example.input: row for row in fit}
        for row in group:
            if row.part == "test":
                same = fit_texts.get(row.example.input)
                leaked[id(row)] = (row, same, 1.0, "exact") if same else (row, fit[0], 1.0, "normalised")
    for key_a, key_b, sim in similar:
        for test_key, fit_key in ((key_a, key_b), (key_b, key_a)):
            fit_row = next((row for row in by_key[fit_key] if row.part == "fit"), None)
            if fit_row is None:
                continue
            for row in by_key[test_key]:
                if row.part == "test" and id(row) not in leaked:
                    leaked[id(row)] = (row, fit_row, sim, "similar")
    if not leaked:
        return None
    how = Counter(entry[3] for entry in leaked.values())
    examples = [_example(test.example, other=_example(fit.example), similarity=round(sim, 3), match=kind)
                for test, fit, sim, kind in list(leaked.values())[:MAX_EXAMPLES]]
    share = len(leaked) / n_test if n_test else 0.0
    return QualityFinding(
        "train_test_leakage", "warning", len(leaked),
        f"{_plural(len(leaked), 'test row')} of {n_test:,} ({share:.1%}) have the same or a near-identical input in "
        f"train/validation ({how['exact']:,} exact, {how['normalised']:,} equal once normalised, "
        f"{how['similar']:,} with cosine >= {NEAR_DUPLICATE_COSINE}); test scores on them overstate quality",
        examples,
    )


def _encoding_damage(rows: list[_Row]) -> QualityFinding | None:
    damaged: list[dict[str, Any]] = []
    count = 0
    for row in rows:
        ex = row.example
        for field_name, text in (("input", ex.input), ("output", ex.output)):
            kind = encoding_damage(text)
            if kind is None:
                continue
            count += 1
            if len(damaged) < MAX_EXAMPLES:
                example = {"file": ex.source, "line": ex.line, "field": field_name, "damage": kind,
                           "text": _short(text)}
                repair = suggested_repair(text) if kind == "mojibake" else None
                if repair is not None:
                    example["suggested"] = _short(repair)
                damaged.append(example)
            break  # one damaged field is enough to count the row
    if not count:
        return None
    return QualityFinding(
        "encoding_damage", "warning", count,
        f"{_plural(count, 'row')} with encoding damage (mojibake such as 'Ã³' or 'â€™', or U+FFFD); "
        "re-export the data as UTF-8, or repair it with ftfy.fix_text",
        damaged,
    )


def _label_imbalance(dataset: Dataset) -> QualityFinding | None:
    counts = Counter(ex.output for ex in dataset.train)
    labels = dataset.labels or sorted(counts)
    if not labels or not counts:
        return None
    per_label = {label: counts.get(label, 0) for label in labels}
    missing = [label for label, n in per_label.items() if n == 0]
    present = {label: n for label, n in per_label.items() if n > 0}
    most, least = max(present.values()), min(present.values())
    ratio = most / least
    if not missing and ratio < IMBALANCE_RATIO:
        return None
    rarest = sorted(per_label.items(), key=lambda item: item[1])
    examples = [{"label": label, "train_examples": n} for label, n in rarest[:MAX_EXAMPLES]]
    examples.append({"label": max(present, key=present.__getitem__), "train_examples": most})
    parts = []
    if missing:
        parts.append(f"{_plural(len(missing), 'label')} with no training example ({', '.join(missing[:5])})")
    if ratio >= IMBALANCE_RATIO:
        parts.append(f"the most common label has {ratio:.0f}x the examples of the rarest ({most:,} vs {least:,})")
    affected = len(missing) + sum(1 for n in present.values() if n * IMBALANCE_RATIO <= most)
    return QualityFinding("label_imbalance", "warning", affected,
                          "label imbalance in train: " + "; ".join(parts), examples)


def _unseen_labels(dataset: Dataset) -> QualityFinding | None:
    if dataset.card.labels is not None:
        return None  # with a label set in the card, outside labels are row errors
    known = {ex.output for ex in dataset.train}
    unseen = [ex for split in ("validation", "test") for ex in dataset.splits[split] if ex.output not in known]
    if not unseen:
        return None
    labels = sorted({ex.output for ex in unseen})
    return QualityFinding(
        "unseen_labels", "warning", len(unseen),
        f"{_plural(len(unseen), 'validation/test row')} carry {_plural(len(labels), 'label')} never seen in train "
        f"({', '.join(labels[:5])}); list every label in the card's `labels` or add training examples",
        [_example(ex, label=ex.output) for ex in unseen[:MAX_EXAMPLES]],
    )


def _length_outliers(rows: list[_Row], kind: Kind) -> list[QualityFinding | None]:
    fields = ("input",) if kind is Kind.classify else ("input", "output")
    return [_length_outliers_of(rows, field_name) for field_name in fields]


def _length_outliers_of(rows: list[_Row], field_name: str) -> QualityFinding | None:
    lengths = [len(getattr(row.example, field_name)) for row in rows]
    if len(lengths) < 20:
        return None  # quartiles of a handful of rows say nothing
    low, high = _far_out_fences(lengths)
    outliers = [(row, n) for row, n in zip(rows, lengths, strict=True) if n < low or n > high]
    if not outliers:
        return None
    centre = (math.log(low) + math.log(high)) / 2  # show the most extreme first, short or long
    outliers.sort(key=lambda item: abs(math.log(max(item[1], 1)) - centre), reverse=True)
    examples = [{"file": row.example.source, "line": row.example.line, "chars": n,
                 "text": _short(getattr(row.example, field_name))} for row, n in outliers[:MAX_EXAMPLES]]
    return QualityFinding(
        f"length_outliers_{field_name}", "info", len(outliers),
        f"{_plural(len(outliers), field_name)} with a length far outside the rest "
        f"(under {low:.0f} or over {high:.0f} characters)",
        examples,
    )


def _far_out_fences(lengths: Sequence[int]) -> tuple[float, float]:
    import numpy as np

    logs = np.log(np.maximum(np.asarray(lengths, dtype=float), 1.0))
    q1, q3 = np.percentile(logs, [25, 75])
    spread = OUTLIER_FENCE * (q3 - q1)
    return float(math.exp(q1 - spread)), float(math.exp(q3 + spread))


# -- usable training examples (readiness) ---------------------------------------------------


@dataclass(frozen=True)
class TrainingCount:
    """Training examples (train + validation) and how many survive cleaning."""

    total: int
    damaged: int  # rows with encoding damage, dropped
    conflicting: int  # rows whose input has conflicting outputs, dropped
    duplicates: int  # extra copies of a normalised input, dropped
    usable: int  # what is left: total - damaged - conflicting - duplicates


def training_count(dataset: Dataset) -> TrainingCount:
    """Count the high-quality training examples: train + validation, less rows with encoding
    damage, less every row of an input with conflicting outputs, less duplicate copies."""
    fit = dataset.train + dataset.validation
    clean = [ex for ex in fit if encoding_damage(ex.input) is None and encoding_damage(ex.output) is None]
    by_key: dict[str, list[Example]] = defaultdict(list)
    for ex in clean:
        by_key[normalise_text(ex.input)].append(ex)
    groups = [group for group in by_key.values() if len(group) > 1]
    conflicting = sum(len(group) for group in groups if _conflicting_examples(group))
    duplicates = sum(len(group) - 1 for group in groups if not _conflicting_examples(group))
    usable = len(clean) - conflicting - duplicates
    return TrainingCount(len(fit), len(fit) - len(clean), conflicting, duplicates, usable)


def _conflicting_examples(group: list[Example]) -> bool:
    shared = set(group[0].answers)
    for ex in group[1:]:
        shared &= set(ex.answers)
        if not shared:
            return True
    return False


# -- near-duplicate search ------------------------------------------------------------------


def similar_pairs(texts: Sequence[str], threshold: float = NEAR_DUPLICATE_COSINE) -> list[tuple[int, int, float]]:
    """Every pair ``(i, j, cosine)`` with ``i < j`` whose TF-IDF character-n-gram vectors have
    cosine >= ``threshold``. Exact: it finds the same pairs as comparing all of them.

    Comparing all pairs with one sparse product is slow (17 s on CLINC150's 23,700 inputs),
    because frequent n-grams like "the" make almost every pair share a feature. So the
    search splits features by document frequency (the "prefix filtering" idea of Bayardo et
    al., "Scaling up all pairs similarity search", WWW 2007):

    - the cosine is the product over rare features plus the product over common ones, and
      the common part is at most ``|x_common| * |y_common|``;
    - so a pair that shares no rare feature reaches the threshold only if both rows' common
      parts have norm >= threshold. Those few rows are compared in full with each other;
    - every other candidate shares a rare feature (a cheap sparse product, since rare
      features have short posting lists) and is kept if the rare product plus the common
      bound can reach the threshold, then scored exactly.
    """
    if len(texts) < 2:
        return []
    matrix = char_ngram_tfidf(texts)
    if matrix is None:
        return []
    found: dict[tuple[int, int], float] = {}
    rare, common_norm, dense_rows = _split_features(matrix, threshold)
    for i, j in _rare_candidates(rare, common_norm, threshold):
        found[(i, j)] = 0.0
    _score_exactly(matrix, found)
    found = {pair: sim for pair, sim in found.items() if sim >= threshold}
    found.update(_all_pairs(matrix, dense_rows, threshold))
    return sorted((i, j, sim) for (i, j), sim in found.items())


def char_ngram_tfidf(texts: Sequence[str]) -> Any:
    """TF-IDF vectors (scipy CSR, float32, rows L2-normalised) of character 3-5-grams taken
    within words padded by one space, with sublinear tf and smoothed idf.

    The same vectors as scikit-learn's ``TfidfVectorizer(analyzer="char_wb",
    ngram_range=(3, 5), sublinear_tf=True)`` (a test holds them equal), built with numpy in
    about a third of the time and without importing scikit-learn (seconds on a cold start).
    N-grams are identified by a 64-bit polynomial hash of their code points; at a few million
    distinct n-grams a collision has a chance of about 1e-7 and would only nudge a cosine.
    Returns None when no text has a word.
    """
    import numpy as np
    import scipy.sparse as sp

    words_per_text, words = [], []
    for text in texts:
        split = text.lower().split()
        words_per_text.append(len(split))
        words.extend(split)
    if not words:
        return None
    corpus = "".join(f" {word} " for word in words)
    codes = np.frombuffer(corpus.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    word_at = np.repeat(np.arange(len(words)), [len(word) + 2 for word in words])  # word of each code point
    text_of_word = np.repeat(np.arange(len(texts)), words_per_text)
    rows, keys = [], []
    multiplier = np.uint64(_HASH_MULTIPLIER)
    with np.errstate(over="ignore"):  # the hash wraps modulo 2**64 on purpose
        for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1):
            starts = len(codes) - n + 1
            if starts <= 0:
                continue
            inside_word = word_at[:starts] == word_at[n - 1:n - 1 + starts]
            key = np.full(starts, n, dtype=np.uint64)
            for k in range(n):
                key = key * multiplier + codes[k:k + starts]
            rows.append(text_of_word[word_at[:starts][inside_word]])
            keys.append(key[inside_word])
    vocabulary, columns = np.unique(np.concatenate(keys), return_inverse=True)
    row_index = np.concatenate(rows)
    matrix = sp.csr_matrix((np.ones(len(columns), dtype=np.float32), (row_index, columns.ravel())),
                           shape=(len(texts), len(vocabulary)))
    matrix.sum_duplicates()
    matrix.data = 1 + np.log(matrix.data)  # sublinear tf
    doc_freq = np.bincount(matrix.indices, minlength=len(vocabulary))
    idf = (np.log((1 + len(texts)) / (1 + doc_freq)) + 1).astype(np.float32)
    matrix.data *= idf[matrix.indices]
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1
    matrix.data /= np.repeat(norms, np.diff(matrix.indptr)).astype(np.float32)
    return matrix


_HASH_MULTIPLIER = 0x9E3779B97F4A7C15  # odd 64-bit constant (golden ratio); spreads n-grams over the hash space


_RARE_DF = 200  # starting cut-off between rare and common features
_MAX_DENSE_ROWS = 3000  # rows compared all-against-all; raise the cut-off until fewer


def _split_features(matrix: Any, threshold: float) -> tuple[Any, Any, Any]:
    import numpy as np

    n_rows = matrix.shape[0]
    doc_freq = np.bincount(matrix.indices, minlength=matrix.shape[1])
    cut = _RARE_DF
    while True:
        common = doc_freq > cut
        common_part = matrix[:, common]
        common_norm = np.sqrt(np.asarray(common_part.multiply(common_part).sum(axis=1)).ravel())
        dense_rows = np.flatnonzero(common_norm >= threshold - 1e-4)
        if len(dense_rows) <= _MAX_DENSE_ROWS or cut >= n_rows:
            break
        cut *= 2  # fewer common features -> fewer rows that need the full comparison
    return matrix[:, ~common].tocsr(), common_norm, dense_rows


def _rare_candidates(rare: Any, common_norm: Any, threshold: float, chunk: int = 4000) -> list[tuple[int, int]]:
    transposed = rare.T.tocsr()
    candidates = []
    for start in range(0, rare.shape[0], chunk):
        product = (rare[start:start + chunk] @ transposed).tocoo()
        rows = product.row + start
        upper = product.col > rows
        rows, cols, shared = rows[upper], product.col[upper], product.data[upper]
        reachable = shared + common_norm[rows] * common_norm[cols] >= threshold - 1e-4
        candidates.extend(zip(rows[reachable].tolist(), cols[reachable].tolist(), strict=True))
    return candidates


def _score_exactly(matrix: Any, pairs: dict[tuple[int, int], float], batch: int = 200_000) -> None:
    import numpy as np

    keys = list(pairs)
    for start in range(0, len(keys), batch):
        part = np.array(keys[start:start + batch])
        sims = np.asarray(matrix[part[:, 0]].multiply(matrix[part[:, 1]]).sum(axis=1)).ravel()
        for (i, j), sim in zip(keys[start:start + batch], sims.tolist(), strict=True):
            pairs[(i, j)] = sim


def _all_pairs(matrix: Any, rows: Any, threshold: float) -> dict[tuple[int, int], float]:
    if len(rows) < 2:
        return {}
    block = matrix[rows]
    product = (block @ block.T).tocoo()
    keep = (product.col > product.row) & (product.data >= threshold)
    return {(int(rows[i]), int(rows[j])): float(sim)
            for i, j, sim in zip(product.row[keep], product.col[keep], product.data[keep], strict=True)}
