"""content-analyzer: keywords, topics, reading level, sentiment, a summary and counts for each
document.

Input (``input_schema.json``): ``{"documents": [{"id": "...", "text": "..."}]}``.
Output: ``{"backend", "documents": [{"id", "analysis" | "error"}], "summary"}``.

Backends:
- ``OfflineAnalyzer`` (no model configured): key phrases: n-grams of RAKE candidate runs (Rose
  et al., 2010) ranked by a C-value score (Frantzi et al., 2000), topics as clusters
  of key phrases that occur in the same sentences, Flesch reading ease and Flesch-Kincaid
  grade with a syllable heuristic, lexicon polarity with negation for sentiment, and an
  extractive summary (``workers.runtime.text.rank_sentences``).
- ``BedrockAnalyzer`` (``BATCH_MODEL_ID`` set): the model proposes keywords, topics,
  sentiment and a summary as JSON; counts and reading level stay local (arithmetic, not
  judgement), and any field the model's answer lacks or garbles falls back to the offline
  result, marked in ``fallback``. A model call that fails is not papered over with offline
  output: it fails that document (``ModelError``), or the whole job when the model cannot
  be called at all (``ModelUnavailableError``). Offline output only with
  ``BATCH_MODEL_BACKEND=offline``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from workers.runtime import JobContext, ModelClient, PermanentError, worker
from workers.runtime.text import (
    STOPWORDS,
    pack_sentences,
    rank_sentences,
    sentences,
    syllables,
    trim,
    words,
)

MAX_KEYWORDS = 10
MAX_TOPICS = 5
MAX_PHRASE_WORDS = 3
WORDS_PER_MINUTE = 238  # average adult silent reading speed (Brysbaert, 2019)
MAX_MODEL_CHARS = 12_000  # prompt budget per document; counts still use the whole text

Analysis = dict[str, Any]


class Analyzer(Protocol):
    name: str

    def analyze(self, text: str) -> Analysis: ...


# --- counts and reading level ------------------------------------------------------------
def reading_level(text: str) -> dict[str, Any]:
    """Flesch reading ease, Flesch-Kincaid grade and the counts they are computed from."""
    sents = sentences(text)
    tokens = words(text)
    n_words, n_sents = len(tokens), max(1, len(sents))
    n_syll = sum(syllables(w) for w in tokens)
    if n_words == 0:
        raise PermanentError("document has no words")
    wps, spw = n_words / n_sents, n_syll / n_words
    ease = 206.835 - 1.015 * wps - 84.6 * spw
    grade = 0.39 * wps + 11.8 * spw - 15.59
    return {
        "word_count": n_words,
        "sentence_count": len(sents),
        "character_count": len(text),
        "unique_words": len({w.lower() for w in tokens}),
        "avg_words_per_sentence": round(wps, 2),
        "avg_syllables_per_word": round(spw, 2),
        "flesch_reading_ease": round(ease, 1),
        "flesch_kincaid_grade": round(max(0.0, grade), 1),
        "reading_level": ease_label(ease),
        "reading_time_seconds": math.ceil(n_words / WORDS_PER_MINUTE * 60),
    }


def ease_label(ease: float) -> str:
    """Flesch's own bands."""
    for floor, label in (
        (90, "very easy"),
        (80, "easy"),
        (70, "fairly easy"),
        (60, "standard"),
        (50, "fairly difficult"),
        (30, "difficult"),
    ):
        if ease >= floor:
            return label
    return "very difficult"


# --- keywords ---------------------------------------------------------------------------------
_SPLIT = re.compile(r"[^\w\s'\u2019-]|\s-\s|--")


def content_runs(sentence: str) -> list[tuple[str, ...]]:
    """Runs of content words between stop words and punctuation (RAKE's candidates)."""
    runs: list[tuple[str, ...]] = []
    for chunk in _SPLIT.split(sentence):
        current: list[str] = []
        for token in (w.lower() for w in words(chunk)):
            if token in STOPWORDS or len(token) < 2:
                if current:
                    runs.append(tuple(current))
                current = []
            else:
                current.append(token)
        if current:
            runs.append(tuple(current))
    return runs


def key_phrases(text: str, limit: int = MAX_KEYWORDS) -> list[dict[str, Any]]:
    """Top key phrases, C-value style (Frantzi et al., 2000): every 1-3 word n-gram inside a
    RAKE candidate run scores length x (occurrences - mean occurrences of the repeated longer
    phrases that contain it), so "bees" inside a repeated "honey bees" counts only for its
    other uses; the mean frequency of its words breaks ties. No chosen phrase repeats
    another's words."""
    runs = [r for s in sentences(text) for r in content_runs(s)]
    counts: Counter[tuple[str, ...]] = Counter()
    for run in runs:
        for n in range(1, MAX_PHRASE_WORDS + 1):
            for i in range(len(run) - n + 1):
                counts[run[i : i + n]] += 1
    word_freq = {gram[0]: c for gram, c in counts.items() if len(gram) == 1}
    nested_in: defaultdict[tuple[str, ...], list[int]] = defaultdict(list)
    for gram, count in counts.items():
        if count < 2:
            continue  # a one-off longer phrase is not a term that can absorb its parts
        subs = {gram[i : i + n] for n in range(1, len(gram)) for i in range(len(gram) - n + 1)}
        for sub in subs:
            nested_in[sub].append(count)

    def score(gram: tuple[str, ...]) -> float:
        supers = nested_in.get(gram)
        own = counts[gram] - (sum(supers) / len(supers) if supers else 0.0)
        mean_freq = sum(word_freq[w] for w in gram) / len(gram)
        return len(gram) * own + 0.1 * mean_freq

    candidates = [
        gram
        for gram, count in counts.items()
        if (len(gram) > 1 or len(gram[0]) > 3) and score(gram) > 0.5
    ]
    ranked = sorted(candidates, key=lambda g: (-score(g), g))
    if not ranked:
        return []
    top = score(ranked[0])
    chosen: list[tuple[str, ...]] = []
    out: list[dict[str, Any]] = []
    for gram in ranked:
        if any(set(gram) & set(c) for c in chosen):
            continue
        chosen.append(gram)
        out.append(
            {"keyword": " ".join(gram), "score": round(score(gram) / top, 3), "count": counts[gram]}
        )
        if len(out) == limit:
            break
    return out


# --- topics (keyword clusters) ---------------------------------------------------------------
def topics(
    text: str, keywords: Sequence[Mapping[str, Any]], limit: int = MAX_TOPICS
) -> list[dict[str, Any]]:
    """Group keywords that share a word or mostly occur in the same sentences; each group is
    a topic labelled by its best keyword, weighted by its share of keyword score."""
    sents = [s.lower() for s in sentences(text)]
    where: dict[str, set[int]] = {
        str(k["keyword"]): {i for i, s in enumerate(sents) if str(k["keyword"]) in s}
        for k in keywords
    }
    clusters: list[list[Mapping[str, Any]]] = []
    for kw in keywords:  # keywords arrive best first
        name = str(kw["keyword"])
        tokens = set(name.split())
        for cluster in clusters:
            seed = str(cluster[0]["keyword"])
            seen = where[seed] | set().union(*(where[str(c["keyword"])] for c in cluster))
            jaccard = len(where[name] & seen) / max(1, len(where[name] | seen))
            if tokens & set(seed.split()) or jaccard >= 0.5:
                cluster.append(kw)
                break
        else:
            clusters.append([kw])
    total = sum(float(k["score"]) for k in keywords) or 1.0
    weighted = [
        (round(sum(float(k["score"]) for k in cluster) / total, 3), cluster) for cluster in clusters
    ]
    weighted.sort(key=lambda pair: -pair[0])
    return [
        {
            "label": str(cluster[0]["keyword"]),
            "keywords": [str(k["keyword"]) for k in cluster],
            "weight": weight,
        }
        for weight, cluster in weighted[:limit]
    ]


# --- summary and sentiment ------------------------------------------------------------------
SUMMARY_LENGTH = 300

POSITIVE = frozenset(
    """
    amazing beautiful benefit benefits best better brilliant calm clean clear comfortable
    delight delighted delightful easy effective efficient enjoy enjoyed excellent exciting
    fantastic fast favourite favorite fine fresh friendly glad good great happy healthy helpful
    ideal impressive improve improved improvement love loved lovely nice perfect pleasant
    pleased positive powerful recommend reliable safe satisfied simple smooth strong success
    successful superb sweet thank thanks useful valuable win wonderful
    """.split()  # noqa: SIM905 - a word list reads better as text
)
NEGATIVE = frozenset(
    """
    angry annoying awful bad bitter broken bug bugs complaint confusing crash crashed damage
    damaged dangerous delay delayed difficult dirty disappointed disappointing error errors
    expensive fail failed failure fault faulty fear hard harmful hate hated horrible hurt
    issue issues late lose loss noisy poor problem problems risk risky rude sad slow terrible
    ugly unhappy unreliable unsafe useless weak worse worst wrong
    """.split()  # noqa: SIM905 - a word list reads better as text
)
NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "hardly",
        "isn't",
        "wasn't",
        "don't",
        "doesn't",
        "didn't",
        "can't",
        "cannot",
        "won't",
        "aren't",
        "nor",
    }
)


def sentiment(text: str) -> dict[str, Any]:
    """Lexicon polarity: opinion words counted, flipped after a negation within three
    words; score = (positive - negative) / (positive + negative), in [-1, 1]."""
    positive = negative = 0
    since_negation = 99
    for token in (w.lower() for w in words(text)):
        if token in NEGATIONS or token.endswith("n't"):
            since_negation = 0
            continue
        since_negation += 1
        polarity = 1 if token in POSITIVE else -1 if token in NEGATIVE else 0
        if polarity and since_negation <= 3:
            polarity = -polarity
        positive += polarity > 0
        negative += polarity < 0
    total = positive + negative
    score = (positive - negative) / total if total else 0.0
    label = "positive" if score >= 0.25 else "negative" if score <= -0.25 else "neutral"
    if total and abs(score) < 0.25:
        label = "mixed"
    return {
        "label": label,
        "score": round(score, 3),
        "positive_terms": positive,
        "negative_terms": negative,
    }


def summary(text: str) -> str:
    """Extractive: the most central sentences that fit in ``SUMMARY_LENGTH`` characters."""
    ranked = rank_sentences(text, min_words=4) or rank_sentences(text, min_words=1)
    return pack_sentences(ranked, SUMMARY_LENGTH, target_min=int(SUMMARY_LENGTH * 0.6))


class OfflineAnalyzer:
    """Key phrases + keyword-cluster topics + Flesch readability, all local."""

    name = "offline"

    def analyze(self, text: str) -> Analysis:
        stats = reading_level(text)
        keywords = key_phrases(text)
        return {
            **stats,
            "keywords": keywords,
            "topics": topics(text, keywords),
            "sentiment": sentiment(text),
            "summary": summary(text),
        }


class BedrockAnalyzer:
    """Keywords and topics from the model (JSON), everything else local."""

    SYSTEM = (
        "You analyse documents for a content team. Reply with one JSON object and nothing "
        'else: {"keywords": [up to 10 short key phrases found in the text, most important '
        'first], "topics": [{"label": "2-4 words", "keywords": ["..."]}] (at most 5), '
        '"sentiment": "positive" | "negative" | "neutral" | "mixed", "summary": "at most '
        '300 characters"}.'
    )

    def __init__(self, model: ModelClient) -> None:
        self.model = model
        self.name = f"bedrock:{model.model_id}"
        self._offline = OfflineAnalyzer()

    def analyze(self, text: str) -> Analysis:
        base = self._offline.analyze(text)
        prompt = f"Document:\n<document>\n{text[:MAX_MODEL_CHARS]}\n</document>"
        # A failed call raises (ModelError: this document fails; ModelUnavailableError: the
        # job fails); only an answer that is not the JSON asked for keeps the offline fields.
        reply = self.model.generate(prompt, system=self.SYSTEM, max_tokens=600, temperature=0)
        try:
            answer = parse_model_json(reply)
        except ValueError as exc:
            return {**base, "fallback": f"offline ({type(exc).__name__}: {str(exc)[:200]})"}
        merged = dict(base)
        raw_keywords = answer.get("keywords")
        if isinstance(raw_keywords, list) and all(isinstance(k, str) for k in raw_keywords):
            merged["keywords"] = [
                {"keyword": k.strip().lower(), "rank": i + 1}
                for i, k in enumerate(raw_keywords[:MAX_KEYWORDS])
                if k.strip()
            ]
        else:
            merged["fallback"] = "offline keywords (model answer had none)"
        raw_topics = answer.get("topics")
        if isinstance(raw_topics, list) and all(
            isinstance(t, Mapping) and isinstance(t.get("label"), str) for t in raw_topics
        ):
            merged["topics"] = [
                {
                    "label": str(t["label"]),
                    "keywords": [str(k) for k in t.get("keywords", []) if isinstance(k, str)],
                }
                for t in raw_topics[:MAX_TOPICS]
            ]
        else:
            merged["fallback"] = "offline topics (model answer had none)"
        label = answer.get("sentiment")
        if label in ("positive", "negative", "neutral", "mixed"):
            merged["sentiment"] = {**base["sentiment"], "label": label, "source": "model"}
        text_summary = answer.get("summary")
        if isinstance(text_summary, str) and text_summary.strip():
            merged["summary"] = trim(text_summary, SUMMARY_LENGTH)
        return merged


def parse_model_json(answer: str) -> dict[str, Any]:
    """The first JSON object in a model answer (models like to wrap JSON in prose/fences)."""
    start = answer.find("{")
    if start < 0:
        raise ValueError("no JSON object in the model answer")
    data, _ = json.JSONDecoder().raw_decode(answer[start:])
    if not isinstance(data, dict):
        raise ValueError("model answer is not a JSON object")
    return data


def analyzer_for(model: ModelClient | None) -> Analyzer:
    return BedrockAnalyzer(model) if model is not None else OfflineAnalyzer()


@worker(name="content-analyzer")
def handle(ctx: JobContext) -> dict[str, Any]:
    """Keywords, topics, reading level and counts for each document."""
    documents = ctx.input.get("documents")
    if not isinstance(documents, list) or not documents:
        raise PermanentError("input.documents must be a non-empty list")
    analyzer = analyzer_for(ctx.model)

    def one(document: Mapping[str, Any]) -> Analysis:
        text = document.get("text") if isinstance(document, Mapping) else None
        if not isinstance(text, str) or not text.strip():
            raise PermanentError("document text is empty")
        return analyzer.analyze(text)

    results = ctx.map(one, documents, concurrency=4 if ctx.model else 2)
    out: list[dict[str, Any]] = []
    by_level: defaultdict[str, int] = defaultdict(int)
    for document, result in zip(documents, results, strict=True):
        doc_id = document.get("id") if isinstance(document, Mapping) else None
        if result.ok and result.value is not None:
            out.append({"id": doc_id, "analysis": result.value})
            by_level[str(result.value["reading_level"])] += 1
        else:
            out.append({"id": doc_id, "error": result.error})
    ok = sum(1 for r in results if r.ok)
    return {
        "backend": analyzer.name,
        "documents": out,
        "summary": {
            "documents": len(documents),
            "succeeded": ok,
            "failed": len(documents) - ok,
            "reading_levels": dict(by_level),
        },
    }
