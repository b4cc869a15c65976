"""Pure parts of the runtime: map, progress throttling, logs, model client (Stubber), loader."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest

from jobcontract import ITEMS_FAILED, items_failed_error, tolerated_failed_items
from workers.runtime import (
    BedrockClient,
    ImageInput,
    ModelError,
    StopRequested,
)
from workers.runtime.context import ProgressTracker, StopFlag
from workers.runtime.loader import WorkerNotFound, load_worker
from workers.runtime.logs import JsonLogger
from workers.runtime.testing import make_context, stubbed_bedrock


def test_map_bounds_concurrency_keeps_order_and_isolates_errors() -> None:
    active, peak = 0, 0
    lock = threading.Lock()

    def one(i: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)
        with lock:
            active -= 1
        if i % 7 == 3:
            raise RuntimeError(f"item {i}")
        return i * i

    writes: list[dict[str, int]] = []
    ctx = make_context("echo", {}, progress_log=writes)
    results = ctx.map(one, range(30), concurrency=3)
    assert peak <= 3 and peak >= 2
    assert [r.index for r in results] == list(range(30))
    assert [r.value for r in results if r.ok] == [i * i for i in range(30) if i % 7 != 3]
    failed = [r for r in results if not r.ok]
    assert [r.index for r in failed] == [3, 10, 17, 24]
    assert failed[0].error == {"type": "RuntimeError", "message": "item 3"}
    assert writes[-1] == {"done": 30, "total": 30}
    assert ctx.item_counts() == {"total": 30, "succeeded": 26, "failed": 4}


def test_item_counts_add_up_over_map_calls_and_skip_stopped_ones() -> None:
    stop = StopFlag()
    ctx = make_context("echo", {}, stop=stop)
    assert ctx.item_counts() is None  # nothing mapped: the job records no counts
    ctx.map(lambda i: 1 // i, [0, 1, 2])
    ctx.map(str, [])
    assert ctx.item_counts() == {"total": 3, "succeeded": 2, "failed": 1}

    def stopping(i: int) -> int:
        stop.set("interrupted")
        return i

    with pytest.raises(StopRequested):
        ctx.map(stopping, range(10), concurrency=1)
    assert ctx.item_counts() == {"total": 3, "succeeded": 2, "failed": 1}  # not finished


@pytest.mark.parametrize(
    ("total", "share", "tolerated"),
    [
        (10, 0, 0),
        (10, 1, 10),
        (10, 0.1, 1),
        (9, 0.1, 0),  # 0.9 of an item: none
        (100, 0.29, 29),  # the decimal as written, not 28.999... in binary floating point
        (1000, 0.007, 7),
        (5, 1e-300, 0),
        (5, "0.5", 0),  # not a number: the default, 0
        (5, True, 0),
        (5, 1.5, 0),  # outside 0..1 (the API refuses it): the default
    ],
)
def test_tolerated_failed_items(total: int, share: Any, tolerated: int) -> None:
    assert tolerated_failed_items(total, share) == tolerated


def test_items_failed_error_names_the_counts_and_the_limit() -> None:
    assert items_failed_error({"total": 10, "succeeded": 9, "failed": 1}, 0.1) is None
    assert items_failed_error({"total": 10, "succeeded": 10, "failed": 0}, 0) is None
    assert items_failed_error({"total": 10, "succeeded": 8, "failed": 2}, 0.1) == {
        "type": ITEMS_FAILED,
        "message": "2 of 10 items failed; the job tolerates 1 (max_failed_item_share 0.1)",
    }


def test_map_raises_stop_requested_without_starting_new_items() -> None:
    stop = StopFlag()
    seen: list[int] = []

    def one(i: int) -> int:
        seen.append(i)
        if i == 4:
            stop.set("interrupted")
        return i

    ctx = make_context("echo", {}, stop=stop)
    with pytest.raises(StopRequested) as info:
        ctx.map(one, range(100), concurrency=1)
    assert seen == [0, 1, 2, 3, 4]
    assert (info.value.reason, info.value.done, info.value.total) == ("interrupted", 5, 100)


def test_stop_flag_keeps_first_reason() -> None:
    stop = StopFlag()
    assert stop.set("timeout") is True
    assert stop.set("interrupted") is False
    assert stop.reason == "timeout" and stop.is_set()


def test_progress_tracker_throttles_writes() -> None:
    writes: list[dict[str, int]] = []
    tracker = ProgressTracker(writes.append, min_interval=60.0)
    for done in range(1000):
        tracker.update(done, 1000)
    assert writes == [{"done": 0, "total": 1000}]  # first write immediate, rest throttled
    tracker.flush()
    assert writes[-1] == {"done": 999, "total": 1000}
    tracker.flush()
    assert len(writes) == 2  # nothing new, nothing written


def test_json_logger_writes_one_object_per_line_with_bound_fields() -> None:
    stream = io.StringIO()
    log = JsonLogger(stream, worker="echo")
    log.bind(job_id="echo_x", attempt=2)
    log.info("hello", n=1)
    log.error("oops", message="multi\nline")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "hello" and first["n"] == 1 and first["level"] == "INFO"
    assert first["job_id"] == "echo_x" and first["attempt"] == 2 and first["worker"] == "echo"
    assert second["message"] == "multi\nline" and second["level"] == "ERROR"


# --- Bedrock Converse: exact request shape -----------------------------------------------
def converse_response(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 12},
    }


def test_bedrock_request_shape_with_image_and_system() -> None:
    client, stub = stubbed_bedrock()
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
    stub.add_response(
        "converse",
        converse_response("  A red bicycle.  "),
        {
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"image": {"format": "png", "source": {"bytes": png}}},
                        {"text": "Describe it."},
                    ],
                }
            ],
            "inferenceConfig": {"maxTokens": 80, "temperature": 0.1},
            "system": [{"text": "You write alt text."}],
        },
    )
    model = BedrockClient("anthropic.claude-3-haiku-20240307-v1:0", client=client)
    with stub:
        text = model.generate(
            "Describe it.",
            system="You write alt text.",
            images=[ImageInput(png, "png")],
            max_tokens=80,
            temperature=0.1,
        )
    stub.assert_no_pending_responses()
    assert text == "A red bicycle."


def test_bedrock_rejects_oversized_images_and_empty_output() -> None:
    client, stub = stubbed_bedrock()
    model = BedrockClient("m", client=client)
    with pytest.raises(ModelError, match="exceeds"):
        model.request("x", images=[ImageInput(b"0" * 4_000_000, "jpeg")])
    stub.add_response("converse", {**converse_response(""), "stopReason": "max_tokens"})
    with stub, pytest.raises(ModelError, match="no text"):
        model.generate("x")


def test_loader_finds_each_seed_worker_by_folder_name() -> None:
    for name in ("image-alt-generator", "meta-desc-generator", "content-analyzer"):
        assert load_worker(name).name == name
    with pytest.raises(WorkerNotFound):
        load_worker("Not_A_Name")
