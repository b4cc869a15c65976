"""content-analyzer: offline analysis on real prose, Bedrock request shape and fallback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from workers.runtime import BedrockClient, ModelError, ModelUnavailableError, PermanentError
from workers.runtime.testing import FailingModel, load_worker_module, make_context, stubbed_bedrock
from workers.runtime.text import sentences, words

analyzer = load_worker_module("content-analyzer")

SOLAR = """Solar panels convert sunlight into electricity using photovoltaic cells. Photovoltaic
cells are made of silicon semiconductors. When sunlight hits the silicon, electrons move and
create an electric current.

Home owners install solar panels on roofs to reduce electricity bills. Battery storage lets
households keep solar electricity for the night. Net metering pays owners for surplus
electricity sent to the grid.

Wind turbines are another source of renewable energy. Offshore wind farms produce large
amounts of renewable energy because ocean winds are strong and steady."""

CHILDREN = "The cat sat on the mat. It was a big cat. The dog ran to the cat. They had fun."

LEGAL = (
    "Notwithstanding any provision of this agreement to the contrary, the indemnifying party "
    "shall indemnify, defend and hold harmless the indemnified party from and against any and "
    "all liabilities, obligations, damages, penalties, claims, actions, judgments, costs and "
    "expenses, including reasonable attorneys' fees, arising out of or in connection with any "
    "misrepresentation or breach of warranty."
)


def test_keywords_come_from_the_text_and_repeated_terms_rank_first() -> None:
    result = analyzer.OfflineAnalyzer().analyze(SOLAR)
    keywords = [k["keyword"] for k in result["keywords"]]
    lowered = " ".join(words(SOLAR)).lower()
    assert all(k in lowered for k in keywords)  # extractive: every phrase occurs verbatim
    assert {"solar panels", "photovoltaic cells", "renewable energy"} <= set(keywords[:5])
    assert "electricity" in keywords[:3]
    assert not any(k in {"the", "and", "are"} for k in keywords)
    scores = [k["score"] for k in result["keywords"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0


def test_topics_cluster_keywords_and_weights_sum_to_at_most_one() -> None:
    result = analyzer.OfflineAnalyzer().analyze(SOLAR)
    topics = result["topics"]
    assert 2 <= len(topics) <= analyzer.MAX_TOPICS
    assert all(t["label"] == t["keywords"][0] for t in topics)
    assert 0 < sum(t["weight"] for t in topics) <= 1.0001
    keyword_set = {k["keyword"] for k in result["keywords"]}
    assert {k for t in topics for k in t["keywords"]} <= keyword_set


def test_counts_are_exact() -> None:
    result = analyzer.OfflineAnalyzer().analyze(CHILDREN)
    assert result["word_count"] == 6 + 5 + 6 + 3
    assert result["sentence_count"] == 4
    assert result["unique_words"] == len({w.lower() for w in words(CHILDREN)})
    assert result["avg_words_per_sentence"] == pytest.approx(20 / 4, abs=0.01)


def test_reading_level_orders_simple_below_legal_text() -> None:
    simple = analyzer.reading_level(CHILDREN)
    legal = analyzer.reading_level(LEGAL)
    assert simple["flesch_reading_ease"] > 90 and simple["reading_level"] == "very easy"
    assert simple["flesch_kincaid_grade"] < 3
    assert legal["flesch_reading_ease"] < 30 and legal["reading_level"] == "very difficult"
    assert legal["flesch_kincaid_grade"] > 16
    mid = analyzer.reading_level(SOLAR)
    assert (
        simple["flesch_kincaid_grade"] < mid["flesch_kincaid_grade"] < legal["flesch_kincaid_grade"]
    )


def test_handler_reports_per_document_errors_without_failing_the_batch() -> None:
    ctx = make_context(
        "content-analyzer",
        {"documents": [{"id": "a", "text": SOLAR}, {"id": "b", "text": "   "}]},
    )
    out = analyzer.handle(ctx)
    assert out["backend"] == "offline"
    assert out["summary"]["succeeded"] == 1 and out["summary"]["failed"] == 1
    assert out["documents"][0]["id"] == "a" and "analysis" in out["documents"][0]
    assert out["documents"][1] == {
        "id": "b",
        "error": {"type": "PermanentError", "message": "document text is empty"},
    }


def test_handler_rejects_missing_documents_as_permanent() -> None:
    with pytest.raises(PermanentError):
        analyzer.handle(make_context("content-analyzer", {"pages": []}))


def _stubbed(answer: str) -> tuple[Any, Stubber, BedrockClient]:
    client, stub = stubbed_bedrock()
    stub.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
            "metrics": {"latencyMs": 1},
        },
        {
            "modelId": "amazon.nova-lite-v1:0",
            "messages": [
                {
                    "role": "user",
                    "content": [{"text": f"Document:\n<document>\n{SOLAR}\n</document>"}],
                }
            ],
            "inferenceConfig": {"maxTokens": 600, "temperature": 0},
            "system": [{"text": analyzer.BedrockAnalyzer.SYSTEM}],
        },
    )
    return client, stub, BedrockClient("amazon.nova-lite-v1:0", client=client)


def test_bedrock_backend_request_shape_and_json_parsing() -> None:
    answer = (
        'Here you go:\n```json\n{"keywords": ["Solar Panels", "net metering"], '
        '"topics": [{"label": "Solar power", "keywords": ["solar panels"]}]}\n```'
    )
    _, stub, model = _stubbed(answer)
    with stub:
        result = analyzer.BedrockAnalyzer(model).analyze(SOLAR)
    stub.assert_no_pending_responses()
    assert result["keywords"] == [
        {"keyword": "solar panels", "rank": 1},
        {"keyword": "net metering", "rank": 2},
    ]
    assert result["topics"] == [{"label": "Solar power", "keywords": ["solar panels"]}]
    assert result["summary"] == analyzer.OfflineAnalyzer().analyze(SOLAR)["summary"]
    assert result["word_count"] == len(words(SOLAR))  # counts stay local
    assert "fallback" not in result


def test_bedrock_backend_falls_back_to_offline_fields_on_garbage() -> None:
    _, stub, model = _stubbed("I cannot produce JSON today.")
    with stub:
        result = analyzer.BedrockAnalyzer(model).analyze(SOLAR)
    offline = analyzer.OfflineAnalyzer().analyze(SOLAR)
    assert result["keywords"] == offline["keywords"]
    assert result["topics"] == offline["topics"]
    assert result["fallback"].startswith("offline (ValueError")


def test_input_schema_limits_batch_size() -> None:
    schema = json.loads((Path(analyzer.__file__).parent / "input_schema.json").read_text())
    assert schema["properties"]["documents"]["maxItems"] == 500
    assert schema["required"] == ["documents"]


@pytest.mark.parametrize(
    "text, label",
    [
        ("The new phone is excellent. The battery is great and the screen is lovely.", "positive"),
        ("The update was terrible. The app crashed twice and support was rude.", "negative"),
        ("The service was not good. The food was never fresh.", "negative"),
        ("The train leaves at nine. It stops in three towns.", "neutral"),
        ("The room was clean but the street was noisy.", "mixed"),
    ],
)
def test_sentiment_polarity_handles_negation(text: str, label: str) -> None:
    result = analyzer.sentiment(text)
    assert result["label"] == label, result
    assert -1 <= result["score"] <= 1


def test_summary_is_extractive_and_bounded() -> None:
    result = analyzer.OfflineAnalyzer().analyze(SOLAR)
    assert 0 < len(result["summary"]) <= analyzer.SUMMARY_LENGTH
    flat = " ".join(SOLAR.split())
    for sentence in sentences(result["summary"]):
        assert sentence in flat


def test_bedrock_sentiment_and_summary_are_used_when_valid() -> None:
    answer = (
        '{"keywords": ["solar"], "topics": [], "sentiment": "positive", '
        '"summary": "Solar and wind power explained."}'
    )
    _, stub, model = _stubbed(answer)
    with stub:
        result = analyzer.BedrockAnalyzer(model).analyze(SOLAR)
    assert result["sentiment"]["label"] == "positive"
    assert result["sentiment"]["source"] == "model"
    assert result["summary"] == "Solar and wind power explained."
    assert result["topics"] == []


def test_a_failed_model_call_fails_the_document_instead_of_offline_output() -> None:
    """No silent fallback: a document whose model call failed is an error in the result, not
    an offline analysis under a Bedrock backend name."""
    model = FailingModel(ModelError("Bedrock ThrottlingException: slow down (gave up)"))
    ctx = make_context("content-analyzer", {"documents": [{"id": "a", "text": SOLAR}]}, model=model)
    out = analyzer.handle(ctx)
    (doc,) = out["documents"]
    assert "analysis" not in doc
    assert doc["error"]["type"] == "ModelError"
    assert out["summary"]["failed"] == 1 and out["backend"] == "bedrock:amazon.nova-lite-v1:0"


def test_a_model_that_cannot_be_called_fails_the_job() -> None:
    denied = ModelUnavailableError("amazon.nova-lite-v1:0", "AccessDeniedException", "denied")
    model = FailingModel(denied)
    documents = [{"id": str(i), "text": SOLAR} for i in range(12)]
    ctx = make_context("content-analyzer", {"documents": documents}, model=model)
    with pytest.raises(ModelUnavailableError, match="AccessDeniedException"):
        analyzer.handle(ctx)
    assert 1 <= model.calls <= 4
