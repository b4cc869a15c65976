"""image-embedder: PNG decoding, the shipped model's determinism and geometry, the handler
through the runtime's JobContext (inline, S3 and bad items), and GPU detection."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workers.runtime import PermanentError
from workers.runtime.testing import load_worker_module, make_context

emb = load_worker_module("image-embedder")

Pixel = Callable[[int, int], tuple[int, ...]]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_png(width: int, height: int, pixel: Pixel, color_type: int = 2) -> bytes:
    """A PNG using filter types 0..4 in turn (the decoder must undo each)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    prev = bytes(width * channels)
    raw = bytearray()
    for y in range(height):
        line = b"".join(bytes(pixel(x, y)) for x in range(width))
        kind = y % 5
        out = bytearray([kind])
        for i, v in enumerate(line):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            p = a + b - c
            paeth = (
                a
                if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c)
                else b
                if abs(p - b) <= abs(p - c)
                else c
            )
            pred = [0, a, b, (a + b) >> 1, paeth][kind]
            out.append((v - pred) & 0xFF)
        raw += out
        prev = line
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(bytes(raw)))
        + _chunk(b"IEND", b"")
    )


def solid(rgb: tuple[int, int, int]) -> Pixel:
    return lambda x, y: rgb


def gradient(x: int, y: int) -> tuple[int, int, int]:
    return ((x * 7) % 256, (y * 11) % 256, ((x + y) * 3) % 256)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("color_type", [0, 2, 4, 6])
def test_decode_every_supported_colour_type_and_filter(color_type: int) -> None:
    def px(x: int, y: int) -> tuple[int, ...]:
        r, g, b = gradient(x, y)
        return {0: (r,), 2: (r, g, b), 4: (r, 255), 6: (r, g, b, 128)}[color_type]

    pixels = emb.decode_png(make_png(40, 30, px, color_type), sample=64)
    assert (pixels.width, pixels.height) == (40, 30)
    assert len(pixels.rows) == 30 and len(pixels.rows[0]) == 40
    r, g, b = gradient(13, 7)
    expected = (r, r, r) if color_type in (0, 4) else (r, g, b)
    assert pixels.rows[7][13] == expected


def test_big_images_are_sampled_not_decoded_whole_into_memory() -> None:
    pixels = emb.decode_png(make_png(300, 200, gradient), sample=16)
    assert (pixels.width, pixels.height) == (300, 200)
    assert len(pixels.rows) == 16 and len(pixels.rows[0]) == 16


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a....", "not a PNG"),
        (b"\x89PNG\r\n\x1a\n" + _chunk(b"IEND", b""), "without IHDR"),
    ],
)
def test_bad_images_are_permanent_item_errors(data: bytes, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        emb.decode_png(data)


def test_sixteen_bit_png_is_refused_with_the_reason() -> None:
    ihdr = struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")
    with pytest.raises(PermanentError, match="bit depth 16"):
        emb.decode_png(data)


def test_model_is_deterministic_normalised_and_pinned_by_its_file() -> None:
    model = emb.load_embedder()
    assert model.name == "tiny-color-embedder-v1" and model.dimensions == 32
    image = emb.decode_png(make_png(32, 32, gradient))
    first, second = model.embed(image), emb.load_embedder().embed(image)
    assert first == second
    assert abs(sum(v * v for v in first) - 1.0) < 1e-4


def test_changed_weights_are_refused(tmp_path: Path) -> None:
    spec = dict(emb.json.loads(emb.MODEL_FILE.read_text()), seed="other")
    path = tmp_path / "model.json"
    path.write_text(emb.json.dumps(spec))
    with pytest.raises(PermanentError, match="weights do not match"):
        emb.load_embedder(path)


def test_similar_images_are_closer_than_different_ones() -> None:
    model = emb.load_embedder()
    red = model.embed(emb.decode_png(make_png(24, 24, solid((220, 30, 30)))))
    dark_red = model.embed(emb.decode_png(make_png(24, 24, solid((180, 20, 25)))))
    blue = model.embed(emb.decode_png(make_png(24, 24, solid((20, 40, 210)))))
    assert cosine(red, dark_red) > cosine(red, blue)


def test_handler_embeds_inline_and_s3_images_and_reports_bad_items() -> None:
    png = make_png(20, 10, gradient)
    objects = {"inputs/image-embedder/a.png": png}
    job_input: dict[str, Any] = {
        "images": [
            {"id": "inline", "png_base64": b64(png)},
            {"id": "s3", "s3_key": "inputs/image-embedder/a.png"},
            {"id": "bad", "png_base64": b64(b"not an image")},
        ]
    }
    progress: list[dict[str, int]] = []
    ctx = make_context(
        "image-embedder", job_input, read_object=objects.__getitem__, progress_log=progress
    )
    out = emb.handle(ctx)
    assert out["model"] == "tiny-color-embedder-v1" and out["dimensions"] == 32
    assert out["device"] == "cpu" and isinstance(out["gpu_visible"], bool)
    inline, s3, bad = out["images"]
    assert inline["id"] == "inline" and len(inline["embedding"]) == 32
    assert inline["embedding"] == s3["embedding"] and (s3["width"], s3["height"]) == (20, 10)
    assert bad["id"] == "bad" and "not a PNG" in bad["error"]["message"]
    assert progress[-1]["done"] == 3


def test_no_images_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="no images"):
        emb.handle(make_context("image-embedder", {"images": []}))


def test_gpu_detection(tmp_path: Path) -> None:
    missing = tmp_path / "nvidia0"
    assert emb.gpu_visible({}, missing) is False
    assert emb.gpu_visible({"NVIDIA_VISIBLE_DEVICES": "void"}, missing) is False
    assert emb.gpu_visible({"NVIDIA_VISIBLE_DEVICES": "all"}, missing) is True
    missing.write_text("")
    assert emb.gpu_visible({}, missing) is True
