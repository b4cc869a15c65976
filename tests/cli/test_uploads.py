"""``batchctl submit --file`` pieces without a server: which input property takes the keys,
how the input is merged, what S3's refusals become, what the progress output says."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from cli import uploads
from cli.api import CliError, Exit
from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _schema(worker: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (ROOT / "workers" / worker / "input_schema.json").read_text()
    )
    return schema


class FakeClient:
    """Answers GET /workers and POST /uploads as the API does; records the requests."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.requests: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        if path == "/workers":
            return 200, {"workers": [{"name": "image-alt-generator", "input_schema": self.schema}]}
        forms = [
            {"key": f"inputs/image-alt-generator/{'0' * 32}/{f['name']}", "size": f["size"],
             "content_type": f["content_type"], "url": "http://s3.invalid/", "fields": {}}
            for f in body["files"]
        ]  # fmt: skip
        return 200, {"uploads": forms}


def test_the_file_list_is_the_array_whose_items_take_an_s3_key() -> None:
    assert uploads.file_list_property(_schema("image-alt-generator")) == "images"
    assert uploads.file_list_property(_schema("image-embedder")) == "images"
    assert uploads.file_list_property(_schema("content-analyzer")) is None


def test_files_are_uploaded_then_appended_after_the_given_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(
        uploads,
        "post_form",
        lambda url, fields, path, ctype, bar=None: sent.append((path.name, ctype)),
    )
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"xyz")
    client = FakeClient(_schema("image-alt-generator"))
    base = {"images": [{"url": "https://example.com/c.png"}], "language": "de"}
    paths = [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]
    job_input = uploads.files_input(client, "image-alt-generator", paths, base, io.StringIO())  # type: ignore[arg-type]
    assert job_input == {
        "images": [
            {"url": "https://example.com/c.png"},
            {"s3_key": f"inputs/image-alt-generator/{'0' * 32}/a.png"},
            {"s3_key": f"inputs/image-alt-generator/{'0' * 32}/b.jpg"},
        ],
        "language": "de",
    }
    assert sent == [("a.png", "image/png"), ("b.jpg", "image/jpeg")]
    (_, _, body) = client.requests[-1]
    assert body["files"][0] == {"name": "a.png", "size": 3, "content_type": "image/png"}


def test_missing_empty_files_and_a_worker_without_uploads_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    client = FakeClient(_schema("image-alt-generator"))
    for path, says in ((tmp_path / "nope.png", "no such file"), (tmp_path / "empty.png", "1..")):
        with pytest.raises(CliError) as info:
            uploads.files_input(client, "image-alt-generator", [str(path)], None, io.StringIO())  # type: ignore[arg-type]
        assert info.value.code == Exit.USAGE and says in info.value.message
    with pytest.raises(CliError) as info:
        uploads.files_input(FakeClient(_schema("content-analyzer")), "image-alt-generator",  # type: ignore[arg-type]
                            [str(tmp_path / "empty.png")], None, io.StringIO())  # fmt: skip
    assert "takes no uploaded files" in info.value.message


def test_s3_refusals_keep_s3s_code() -> None:
    big = (
        b"<Error><Code>EntityTooLarge</Code>"
        b"<Message>Your proposed upload exceeds the maximum allowed size</Message></Error>"
    )
    err = uploads.s3_error(400, big, "a.png")
    assert err.code == Exit.USAGE and "EntityTooLarge: Your proposed upload" in err.message
    assert (
        uploads.s3_error(403, b"<Error><Code>AccessDenied</Code></Error>", "a").code == Exit.USAGE
    )
    assert uploads.s3_error(503, b"", "a").code == Exit.SERVER


def test_progress_lines_off_a_terminal() -> None:
    out = io.StringIO()
    bar = uploads.UploadBar(out, "a.png", 10)
    bar.advance(4)
    bar.advance(6)
    bar.close()
    assert out.getvalue() == "uploading a.png (10 bytes)\nuploaded a.png: 10 bytes\n"


def test_submit_takes_repeated_file_options() -> None:
    args = build_parser().parse_args(["submit", "image-alt-generator", "--file", "a", "-f", "b"])
    assert args.file == ["a", "b"] and args.input is None
