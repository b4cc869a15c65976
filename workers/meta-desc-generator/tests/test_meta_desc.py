"""meta-desc-generator: extractive descriptions of real-looking pages, limits, Bedrock shape."""

from __future__ import annotations

import pytest

from workers.runtime import BedrockClient, ModelUnavailableError
from workers.runtime.testing import FailingModel, load_worker_module, make_context, stubbed_bedrock
from workers.runtime.text import normalize_space, sentences

meta = load_worker_module("meta-desc-generator")

SKILLET = """<!doctype html><html lang="en"><head>
<title>Cast Iron Skillet Care | Kitchen Basics</title>
<meta name="description" content="old description">
<script>var promo = "Buy now! Cheap pans at half price for everyone today only.";</script>
<style>p { color: red }</style></head>
<body><header><nav><a href="/">Home</a> <a href="/shop">Shop our huge range of pans now</a>
</nav></header>
<main><h1>How to care for a cast iron skillet</h1>
<p>A cast iron skillet lasts for generations when you clean, dry and season it properly.
Seasoning is a thin layer of polymerised oil that protects the iron from rust and keeps food
from sticking.</p>
<h2>Cleaning</h2><p>Clean the skillet while it is still warm. Use hot water and a stiff
brush; a little soap is fine. Never soak cast iron or put it in the dishwasher, because
standing water causes rust.</p>
<h2>Seasoning</h2><p>Dry the skillet on the stove, rub a very thin coat of oil over the
iron, and heat it until it smokes. Repeat the seasoning after cooking acidic food such as
tomatoes.</p></main>
<footer>Copyright 2026 Kitchen Basics. All rights reserved. Subscribe to our newsletter for
weekly deals on every pan in the shop.</footer></body></html>"""

LONG_SENTENCE = (
    "This single enormous sentence about distributed database replication keeps going with "
    "clauses about consistency, partition tolerance, availability, quorum reads, hinted "
    "handoff, anti-entropy repair, vector clocks and read repair so that it cannot fit."
)


def describe(raw: dict[str, str]) -> str:
    return str(meta.OfflineExtractiveSummarizer().describe(meta.read_page(raw)))


def test_description_is_extractive_and_within_limits() -> None:
    text = describe({"url": "https://example.com/skillet", "html": SKILLET})
    assert int(meta.MAX_LENGTH * meta.TARGET_SHARE) <= len(text) <= meta.MAX_LENGTH
    body = normalize_space(meta.read_page({"url": "u", "html": SKILLET}).body)
    for sentence in sentences(text):
        assert sentence in body  # whole sentences copied from the page body
    assert "skillet" in text.lower() or "cast iron" in text.lower()


def test_boilerplate_never_reaches_the_description() -> None:
    page = meta.read_page({"url": "u", "html": SKILLET})
    assert page.title == "Cast Iron Skillet Care | Kitchen Basics"
    assert page.headings == ["How to care for a cast iron skillet", "Cleaning", "Seasoning"]
    for noise in ("Buy now", "Shop our", "Copyright", "newsletter", "color: red"):
        assert noise not in page.body
    assert not any(n in describe({"url": "u", "html": SKILLET}) for n in ("Copyright", "Buy"))


def test_the_most_central_sentence_wins_over_an_off_topic_opening() -> None:
    text = (
        "Welcome back, dear readers, it has been a rainy week here in town. "
        "Sourdough bread needs a lively starter, flour, water and salt. "
        "A sourdough starter is fed flour and water daily until it bubbles. "
        "Bake the sourdough bread in a hot oven once the starter-leavened dough has risen."
    )
    out = describe({"url": "u", "text": text})
    assert len(out) <= meta.MAX_LENGTH
    assert "rainy week" not in out
    assert "sourdough" in out.lower()


def test_overlong_single_sentence_is_trimmed_at_a_word_boundary() -> None:
    out = describe({"url": "u", "text": LONG_SENTENCE})
    assert len(out) <= meta.MAX_LENGTH and out.endswith("\u2026")
    assert LONG_SENTENCE.startswith(out[:-1].rstrip())
    assert LONG_SENTENCE[len(out[:-1].rstrip())] in " ,"  # cut between words


def test_handler_reports_bad_pages_per_item() -> None:
    ctx = make_context(
        "meta-desc-generator",
        {"pages": [{"url": "https://a", "html": SKILLET}, {"url": "https://b"}]},
    )
    out = meta.handle(ctx)
    assert out["summary"] == {"pages": 2, "succeeded": 1, "failed": 1}
    first, second = out["pages"]
    assert first["url"] == "https://a" and first["length"] == len(first["description"])
    assert first["title"].startswith("Cast Iron")
    assert second == {
        "url": "https://b",
        "error": {"type": "PermanentError", "message": "page has neither html nor text"},
    }


def test_bedrock_describer_request_shape_and_limit_enforcement() -> None:
    client, stub = stubbed_bedrock()
    page = meta.read_page({"url": "https://example.com/skillet", "html": SKILLET})
    too_long = '"' + "Keep your cast iron skillet rust-free: " + "clean it warm, " * 12 + '"'
    stub.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": too_long}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
            "metrics": {"latencyMs": 1},
        },
        {
            "modelId": "amazon.nova-micro-v1:0",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "text": "URL: https://example.com/skillet\n"
                            "Title: Cast Iron Skillet Care | Kitchen Basics\n"
                            "Headings: How to care for a cast iron skillet; Cleaning; Seasoning\n"
                            f"Body:\n<body>\n{page.body}\n</body>"
                        }
                    ],
                }
            ],
            "inferenceConfig": {"maxTokens": 160, "temperature": 0.3},
            "system": [{"text": meta.BedrockMetaDescriber.SYSTEM}],
        },
    )
    describer = meta.BedrockMetaDescriber(BedrockClient("amazon.nova-micro-v1:0", client=client))
    with stub:
        out = describer.describe(page)
    stub.assert_no_pending_responses()
    assert len(out) <= meta.MAX_LENGTH
    assert out.startswith("Keep your cast iron skillet") and '"' not in out


@pytest.mark.parametrize("raw", [{"url": "u"}, {"url": "u", "html": "   "}])
def test_pages_without_content_are_rejected(raw: dict[str, str]) -> None:
    with pytest.raises(meta.PermanentError):
        meta.read_page(raw)


def test_max_length_input_bounds_every_description() -> None:
    pages = [{"url": "https://a", "html": SKILLET}, {"url": "https://b", "text": LONG_SENTENCE}]
    short = meta.handle(make_context("meta-desc-generator", {"pages": pages, "max_length": 80}))
    assert all(0 < p["length"] <= 80 for p in short["pages"])
    long = meta.handle(make_context("meta-desc-generator", {"pages": pages, "max_length": 320}))
    assert long["pages"][0]["length"] > 160  # room for more whole sentences
    assert all(p["length"] <= 320 for p in long["pages"])
    with pytest.raises(meta.PermanentError):
        meta.handle(make_context("meta-desc-generator", {"pages": pages, "max_length": 10}))


def test_a_model_that_cannot_be_called_fails_the_job_not_each_page() -> None:
    """A model that is not enabled (or Legacy, or denied to the task role) fails the whole job
    once, with the message, instead of one error per page in a SUCCEEDED job."""
    gone = ModelUnavailableError(
        "anthropic.claude-3-haiku-20240307-v1:0",
        "ResourceNotFoundException",
        "This model version has reached the end of its life.",
    )
    model = FailingModel(gone, model_id="anthropic.claude-3-haiku-20240307-v1:0")
    pages = [{"url": f"https://example.com/{i}", "html": SKILLET} for i in range(10)]
    ctx = make_context("meta-desc-generator", {"pages": pages}, model=model)
    with pytest.raises(ModelUnavailableError, match="end of its life"):
        meta.handle(ctx)
    assert 1 <= model.calls <= 4
