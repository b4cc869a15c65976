"""meta-desc-generator: a meta description (at most 160 characters) for each web page.

Input (``input_schema.json``): ``{"pages": [{"url": "...", "html": "..." | "text": "..."}],
"max_length"?: 50-320}``.
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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from workers.runtime import JobContext, ModelClient, PermanentError, worker
from workers.runtime.text import HtmlText, html_to_text, pack_sentences, rank_sentences, trim

MAX_LENGTH = 160  # default; the input may ask for 50-320 (``max_length``)
TARGET_SHARE = 0.7  # stop adding sentences past 70 % of the limit; shorter wastes the snippet
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

    def describe(self, page: Page, max_length: int = MAX_LENGTH) -> str: ...


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
    """Word-frequency + position + title-overlap sentence scoring, packed into the limit."""

    name = "offline"

    def describe(self, page: Page, max_length: int = MAX_LENGTH) -> str:
        ranked = rank_sentences(
            page.body, " ".join([page.title, *page.headings]), MIN_SENTENCE_WORDS
        )
        if not ranked:  # headings-only or very short pages
            fallback = " ".join([page.title, *page.headings, page.body]).strip()
            if not fallback:
                raise PermanentError("page has no text to describe")
            return trim(fallback, max_length)
        return pack_sentences(ranked, max_length, target_min=int(max_length * TARGET_SHARE))


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

    def describe(self, page: Page, max_length: int = MAX_LENGTH) -> str:
        system = self.SYSTEM.replace("120-155", f"{int(max_length * 0.75)}-{max_length - 5}")
        answer = self.model.generate(
            self.prompt(page), system=system, max_tokens=max(120, max_length), temperature=0.3
        )
        cleaned = answer.strip().strip("\"'\u201c\u201d").replace("\n", " ")
        if cleaned.lower().startswith("meta description:"):
            cleaned = cleaned.split(":", 1)[1]
        return trim(cleaned, max_length)


def describer_for(model: ModelClient | None) -> Describer:
    return BedrockMetaDescriber(model) if model is not None else OfflineExtractiveSummarizer()


@worker(name="meta-desc-generator")
def handle(ctx: JobContext) -> dict[str, Any]:
    """A meta description (at most ``max_length``, default 160 characters) for each page."""
    pages = ctx.input.get("pages")
    if not isinstance(pages, list) or not pages:
        raise PermanentError("input.pages must be a non-empty list")
    describer = describer_for(ctx.model)
    max_length = int(ctx.input.get("max_length") or MAX_LENGTH)
    if not 50 <= max_length <= 320:
        raise PermanentError("input.max_length must be 50..320")

    def one(raw: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise PermanentError("page must be an object")
        page = read_page(raw)
        description = describer.describe(page, max_length)
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
