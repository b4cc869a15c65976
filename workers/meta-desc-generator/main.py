"""meta-desc-generator: a meta description (at most 160 characters) for each web page.

Input (``input_schema.json``): ``{"pages": [{"url": "...", "html": "..." | "text": "..."}]}``.
The worker does not crawl: pages arrive with their HTML or text.
Output: ``{"backend", "pages": [{"url", "description", "length", "title"} | {"url", "error"}],
"summary"}``.

Backends:
- ``OfflineExtractiveSummarizer`` (no model configured): strips the HTML (``html.parser``;
  navigation, header, footer and scripts dropped), splits sentences, scores each by the
  frequency of its content words in the page, by how early it appears and by overlap with
  the title and headings, then takes the best sentences that fit in 160 characters (kept in
  page order), or trims the best one at a word boundary.
- ``BedrockMetaDescriber`` (``BATCH_MODEL_ID`` set): the model writes it from the title and
  the start of the body; the answer is cleaned and held to the same 160-character limit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from workers.runtime import JobContext, ModelClient, PermanentError, worker
from workers.runtime.text import HtmlText, content_words, html_to_text, sentences, trim, words

MAX_LENGTH = 160
TARGET_MIN = 110  # shorter descriptions waste the snippet space search engines show
MAX_MODEL_CHARS = 6_000
MIN_SENTENCE_WORDS = 5


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    headings: list[str]
    body: str


class Describer(Protocol):
    name: str

    def describe(self, page: Page) -> str: ...


def read_page(raw: Mapping[str, Any]) -> Page:
    """A page from its HTML (preferred) or plain text."""
    url = str(raw.get("url", ""))
    html, text = raw.get("html"), raw.get("text")
    if isinstance(html, str) and html.strip():
        parsed: HtmlText = html_to_text(html)
        return Page(url, parsed.title, parsed.headings, parsed.text)
    if isinstance(text, str) and text.strip():
        return Page(url, "", [], text)
    raise PermanentError("page has neither html nor text")


class OfflineExtractiveSummarizer:
    """Word-frequency + position + title-overlap sentence scoring, packed into 160 chars."""

    name = "offline"

    def describe(self, page: Page) -> str:
        candidates = [s for s in sentences(page.body) if len(words(s)) >= MIN_SENTENCE_WORDS]
        if not candidates:  # headings-only or very short pages
            fallback = " ".join([page.title, *page.headings, page.body]).strip()
            if not fallback:
                raise PermanentError("page has no text to describe")
            return trim(fallback, MAX_LENGTH)
        scores = self.scores(page, candidates)
        ranked = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
        picked: list[int] = []
        length = -1
        for i in ranked:
            extra = len(candidates[i]) + 1
            if length + extra <= MAX_LENGTH:
                picked.append(i)
                length += extra
            if length >= TARGET_MIN:
                break
        if not picked:
            return trim(candidates[ranked[0]], MAX_LENGTH)
        return " ".join(candidates[i] for i in sorted(picked))

    @staticmethod
    def scores(page: Page, candidates: list[str]) -> list[float]:
        """Mean normalised frequency of a sentence's content words (what the page is
        about), + up to 0.5 for appearing early, + up to 0.5 for title/heading overlap."""
        freq = Counter(content_words(page.body))
        top = max(freq.values(), default=1)
        title_words = set(content_words(" ".join([page.title, *page.headings])))
        out: list[float] = []
        for position, sentence in enumerate(candidates):
            terms = content_words(sentence)
            if not terms:
                out.append(0.0)
                continue
            density = sum(freq[t] / top for t in terms) / math.sqrt(len(terms))
            early = 0.5 / (1 + position)
            overlap = 0.5 * len(set(terms) & title_words) / max(1, len(title_words))
            out.append(density + early + overlap)
        return out


class BedrockMetaDescriber:
    """The model writes the description; the limit is enforced here, not trusted."""

    SYSTEM = (
        "You write meta descriptions for web pages. Reply with the description only: one or "
        "two plain sentences, 120-155 characters, no quotes, no markdown, in the page's "
        "language, accurate to the page."
    )

    def __init__(self, model: ModelClient) -> None:
        self.model = model
        self.name = f"bedrock:{model.model_id}"

    def prompt(self, page: Page) -> str:
        headings = "; ".join(page.headings[:10])
        return (
            f"URL: {page.url}\nTitle: {page.title}\nHeadings: {headings}\n"
            f"Body:\n<body>\n{page.body[:MAX_MODEL_CHARS]}\n</body>"
        )

    def describe(self, page: Page) -> str:
        answer = self.model.generate(
            self.prompt(page), system=self.SYSTEM, max_tokens=120, temperature=0.3
        )
        cleaned = answer.strip().strip("\"'\u201c\u201d").replace("\n", " ")
        if cleaned.lower().startswith("meta description:"):
            cleaned = cleaned.split(":", 1)[1]
        return trim(cleaned, MAX_LENGTH)


def describer_for(model: ModelClient | None) -> Describer:
    return BedrockMetaDescriber(model) if model is not None else OfflineExtractiveSummarizer()


@worker(name="meta-desc-generator")
def handle(ctx: JobContext) -> dict[str, Any]:
    """A meta description of at most 160 characters for each page."""
    pages = ctx.input.get("pages")
    if not isinstance(pages, list) or not pages:
        raise PermanentError("input.pages must be a non-empty list")
    describer = describer_for(ctx.model)

    def one(raw: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise PermanentError("page must be an object")
        page = read_page(raw)
        description = describer.describe(page)
        return {"description": description, "length": len(description), "title": page.title}

    results = ctx.map(one, pages, concurrency=4 if ctx.model else 2)
    out = [
        {"url": page.get("url") if isinstance(page, Mapping) else None}
        | (result.value if result.ok and result.value is not None else {"error": result.error})
        for page, result in zip(pages, results, strict=True)
    ]
    ok = sum(1 for r in results if r.ok)
    return {
        "backend": describer.name,
        "pages": out,
        "summary": {"pages": len(pages), "succeeded": ok, "failed": len(pages) - ok},
    }
