"""``batchctl submit --items FILE.jsonl`` (upload, then a manifest array job), the one
progress bar of an array job, and ``batchctl results JOB --out DIR``, without a server."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from cli import commands, uploads
from cli.api import CliError, Exit


class FakeApi:
    """POST /uploads, POST /jobs and GET /jobs/{id} as the API answers them."""

    def __init__(self, views: list[dict[str, Any]] | None = None) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.views = views or []

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        if path == "/uploads":
            f = body["files"][0]
            form = {
                "key": f"inputs/docs/{'0' * 32}/{f['name']}",
                "size": f["size"],
                "content_type": f["content_type"],
                "url": "http://s3.invalid/",
                "fields": {},
            }
            return 200, {"uploads": [form]}
        if method == "POST" and path == "/jobs":
            return 202, {"job_id": "docs_" + "a" * 32, "status": "RUNNING"}
        return 200, self.views.pop(0) if len(self.views) > 1 else self.views[0]


def _args(**kw: Any) -> argparse.Namespace:
    base = dict(
        worker="docs",
        input=None,
        items=None,
        shard_size=None,
        parallelism=None,
        file=None,
        cpu=None,
        memory=None,
        max_failed_item_share=None,
        idempotency_key=None,
        wait=False,
        timeout=0,
        poll=0.0,
    )
    return argparse.Namespace(**{**base, **kw})  # fmt: skip


def test_a_jsonl_items_file_is_uploaded_with_a_bar_and_sent_as_a_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "1", "text": "a"}\n\n{"id": "3", "text": "c"}')  # 3 items
    api = FakeApi()
    sent: list[tuple[str, str]] = []

    def post(url, fields, p, ctype, bar=None):  # type: ignore[no-untyped-def]
        sent.append((p.name, ctype))
        if bar is not None:
            bar.advance(p.stat().st_size)

    monkeypatch.setattr(uploads, "post_form", post)
    monkeypatch.setattr(commands, "_client", lambda args: api)
    assert commands.submit(_args(items=str(path), shard_size=2)) == Exit.OK
    assert sent == [("items.jsonl", "application/x-ndjson")]
    (_, _, upload), (_, _, job) = [r for r in api.requests if r[0] == "POST"]
    assert upload["files"][0]["content_type"] == "application/x-ndjson"
    assert job == {
        "worker": "docs",
        "manifest": {"s3_key": f"inputs/docs/{'0' * 32}/items.jsonl", "items": 3},
        "shard_size": 2,
    }
    err = capsys.readouterr().err
    assert "uploading items.jsonl" in err and f"uploaded items.jsonl: {path.stat().st_size}" in err


def test_a_json_items_file_stays_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "items.json"
    path.write_text('[{"id": "1"}]')
    api = FakeApi()
    monkeypatch.setattr(commands, "_client", lambda args: api)
    commands.submit(_args(items=str(path)))
    assert [r[1] for r in api.requests] == ["/jobs"] and api.requests[0][2]["items"] == [
        {"id": "1"}
    ]


def _view(status: str, done: int, failed: int, unfinished: int, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": "docs_" + "a" * 32, "status": status, "attempts": 0,
        "progress": {"done": done, "total": 100},
        "items": {"total": 100, "succeeded": done - failed, "failed": failed},
        "array": {"shards": 4, "children": {"unfinished": unfinished}}, **extra,
    }  # fmt: skip


def test_wait_on_an_array_job_draws_one_bar_over_all_shards() -> None:
    views = [
        _view("RUNNING", 0, 0, 4, array={"shards": 4, "children": {"unfinished": 4},
              "manifest": {"validated": False, "validated_items": 40}}),
        _view("RUNNING", 50, 1, 2),
        _view("SUCCEEDED", 100, 3, 0),
    ]  # fmt: skip
    api = FakeApi(views)
    stream = io.StringIO()
    final = commands.wait_for(api, "docs_" + "a" * 32, timeout=0, poll=0, stream=stream)  # type: ignore[arg-type]
    assert final["status"] == "SUCCEEDED"
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("0/100 items, 0 failed, shards 0/4 validating 40/100 RUNNING")
    assert lines[1].endswith("50/100 items, 1 failed, shards 2/4 RUNNING")
    assert lines[2].endswith("100/100 items, 3 failed, shards 4/4 SUCCEEDED")
    assert all(r[1] == f"/jobs/docs_{'a' * 32}" for r in api.requests)  # never per child
    assert commands.exit_code(final) == Exit.ITEMS_FAILED


def test_results_downloads_the_merged_results_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"http://s3.invalid/r": b'{"index":0}\n{"index":1}\n', "http://s3.invalid/s": b"{}"}
    (tmp_path / "src").mkdir()
    for n, data in enumerate(files.values()):
        (tmp_path / "src" / str(n)).write_bytes(data)
    urls = {url: (tmp_path / "src" / str(n)).as_uri() for n, url in enumerate(files)}
    view = _view("SUCCEEDED", 100, 0, 0, result={"url": "http://s3.invalid/r",
                 "summary_url": "http://s3.invalid/s"})  # fmt: skip
    real = commands.download
    monkeypatch.setattr(commands, "download", lambda url, path: real(urls[url], path))
    monkeypatch.setattr(commands, "_client", lambda args: FakeApi([view]))
    out = tmp_path / "out"
    args = argparse.Namespace(job_id=view["job_id"], out=str(out))
    assert commands.results(args) == Exit.OK
    assert (out / "results.jsonl").read_bytes() == files["http://s3.invalid/r"]
    assert json.loads((out / "summary.json").read_text()) == {}
    assert sorted(p.name for p in out.iterdir()) == ["results.jsonl", "summary.json"]
    single = {
        "job_id": "docs_" + "b" * 32,
        "status": "FAILED",
        "result": {"url": "http://s3.invalid/r"},
    }
    monkeypatch.setattr(commands, "_client", lambda args: FakeApi([single]))
    assert (
        commands.results(argparse.Namespace(job_id="x", out=str(tmp_path / "one")))
        == Exit.JOB_FAILED
    )
    assert (tmp_path / "one" / "result.json").exists()
    running = _view("RUNNING", 1, 0, 4)
    monkeypatch.setattr(commands, "_client", lambda args: FakeApi([running]))
    with pytest.raises(CliError) as err:
        commands.results(argparse.Namespace(job_id="x", out=str(tmp_path / "none")))
    assert err.value.code == Exit.NOT_FOUND and not (tmp_path / "none").exists()
