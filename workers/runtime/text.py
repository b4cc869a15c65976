"""A small standard-library text toolkit shared by the seed workers' offline backends:
tokens, sentences, stop words, syllables, HTML to text, length-limited trimming and
extractive sentence ranking."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each either etc even ever every few first for from further
    get gets got had hadn't has hasn't have haven't having he he'd he'll he's her here here's
    hers herself him himself his how how's however i i'd i'll i'm i've if in into is isn't it
    it's its itself just let's like made make many may me might more most much must mustn't my
    myself need new no nor not now of off often on once one only or other ought our ours
    ourselves out over own per quite rather really same say says shall shan't she she'd she'll
    she's should shouldn't since so some such than that that's the their theirs them themselves
    then there there's these they they'd they'll they're they've this those though three
    through thus to too two under until up upon us use used using very via was wasn't we we'd
    we'll we're we've well were weren't what what's when when's where where's whether which
    while who who's whom why why's will with within without won't would wouldn't yet you you'd
    you'll you're you've your yours yourself yourselves
    """.split()  # noqa: SIM905 - a word list reads better as text
)

WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\u2019-]*[A-Za-z]|[A-Za-z]")
# A sentence ends at . ! ? (plus closing quotes/brackets) followed by space and a capital,
# digit or quote; common abbreviations are protected first.
_ABBREVIATIONS = re.compile(
    r"\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|e\.g|i\.e|Inc|Ltd|Co|No|Fig|approx)\.",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_SPACES = re.compile(r"\s+")


def words(text: str) -> list[str]:
    """Word tokens (letters, inner apostrophes and hyphens), original case."""
    return [w.replace("\u2019", "'") for w in WORD_RE.findall(text)]


def content_words(text: str) -> list[str]:
    """Lower-cased words that are not stop words and have at least 3 letters."""
    return [w for w in (t.lower() for t in words(text)) if w not in STOPWORDS and len(w) > 2]


def normalize_space(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def sentences(text: str) -> list[str]:
    """Split prose into sentences (abbreviation-aware, good enough for web copy)."""
    protected = _ABBREVIATIONS.sub(lambda m: m.group(0).replace(".", "\x00"), text)
    parts: list[str] = []
    for block in re.split(r"\n\s*\n|\u2022", protected):  # paragraphs and bullets end sentences
        for piece in _SENTENCE_END.split(normalize_space(block)):
            piece = piece.replace("\x00", ".").strip()
            if piece:
                parts.append(piece)
    return parts


def syllables(word: str) -> int:
    """Heuristic English syllable count (vowel groups, silent final e, -le), at least 1."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 0
    if len(w) <= 3:
        return 1
    count = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")):
        count -= 1
    if w.endswith("le") and len(w) > 2 and w[-3] not in "aeiouy":
        count += 0 if count > 1 else 1
    if re.search(r"[^aeiouy](ed|es)$", w) and not w.endswith(("ted", "ded", "ses", "zes")):
        count -= 1 if count > 1 else 0
    return max(1, count)


def trim(text: str, limit: int, ellipsis: str = "\u2026") -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (ellipsis included)."""
    text = normalize_space(text)
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(ellipsis))]
    if " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:-\u2013\u2014") + ellipsis


@dataclass
class HtmlText:
    """What the offline backends need of a page."""

    title: str = ""
    meta_description: str = ""
    headings: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)  # paragraphs / list items, in order
    lang: str = ""

    @property
    def text(self) -> str:
        return "\n\n".join(self.blocks)


class _Extractor(HTMLParser):
    SKIP = frozenset(
        {
            "script",
            "style",
            "noscript",
            "template",
            "svg",
            "nav",
            "footer",
            "header",
            "aside",
            "form",
            "button",
            "select",
            "iframe",
        }
    )
    BLOCK = frozenset(
        {
            "p",
            "li",
            "div",
            "section",
            "article",
            "main",
            "blockquote",
            "td",
            "dd",
            "dt",
            "figcaption",
            "pre",
            "br",
            "tr",
            "table",
            "ul",
            "ol",
            "body",
        }
    )
    HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = HtmlText()
        self._skip_depth = 0
        self._in_title = False
        self._heading: list[str] | None = None
        self._buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "html" and values.get("lang"):
            self.out.lang = values["lang"]
        if tag == "meta" and values.get("name", "").lower() == "description":
            self.out.meta_description = normalize_space(values.get("content", ""))
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.HEADINGS:
            self._flush()
            self._heading = []
        elif tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self.HEADINGS and self._heading is not None:
            heading = normalize_space("".join(self._heading))
            if heading:
                self.out.headings.append(heading)
            self._heading = None
        elif tag in self.BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.out.title = normalize_space(self.out.title + " " + data)
        elif self._skip_depth:
            return
        elif self._heading is not None:
            self._heading.append(data)
        else:
            self._buffer.append(data)

    def _flush(self) -> None:
        block = normalize_space("".join(self._buffer))
        self._buffer = []
        if block:
            self.out.blocks.append(block)

    def close(self) -> None:
        super().close()
        self._flush()


def html_to_text(html: str) -> HtmlText:
    """Title, meta description, headings and body blocks of an HTML page; navigation,
    header/footer, scripts and styles are dropped (they are not what a page is about)."""
    parser = _Extractor()
    parser.feed(html)
    parser.close()
    return parser.out


@dataclass(frozen=True)
class ScoredSentence:
    index: int  # position in the text
    text: str
    score: float


def rank_sentences(body: str, focus: str = "", min_words: int = 5) -> list[ScoredSentence]:
    """Sentences of ``body`` best first, for extractive summaries: the mean normalised
    frequency of a sentence's content words (what the text is about), + up to 0.5 for
    appearing early, + up to 0.5 for sharing words with ``focus`` (title, headings)."""
    candidates = [s for s in sentences(body) if len(words(s)) >= min_words]
    freq = Counter(content_words(body))
    top = max(freq.values(), default=1)
    focus_words = set(content_words(focus))
    scored: list[ScoredSentence] = []
    for position, sentence in enumerate(candidates):
        terms = content_words(sentence)
        if not terms:
            scored.append(ScoredSentence(position, sentence, 0.0))
            continue
        density = sum(freq[t] / top for t in terms) / math.sqrt(len(terms))
        early = 0.5 / (1 + position)
        overlap = 0.5 * len(set(terms) & focus_words) / max(1, len(focus_words))
        scored.append(ScoredSentence(position, sentence, density + early + overlap))
    return sorted(scored, key=lambda s: (-s.score, s.index))


def pack_sentences(ranked: list[ScoredSentence], limit: int, target_min: int = 0) -> str:
    """The best sentences that fit in ``limit`` characters, in text order (stops once
    ``target_min`` is reached); the best one trimmed when none fits; "" when none given."""
    picked: list[ScoredSentence] = []
    length = -1
    for sentence in ranked:
        extra = len(sentence.text) + 1
        if length + extra <= limit:
            picked.append(sentence)
            length += extra
        if target_min and length >= target_min:
            break
    if not picked:
        return trim(ranked[0].text, limit) if ranked else ""
    return " ".join(s.text for s in sorted(picked, key=lambda s: s.index))
