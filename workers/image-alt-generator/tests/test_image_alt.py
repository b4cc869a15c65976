"""image-alt-generator: header decoding of every format, PNG colour analysis, alt text
composition and limits, fetching by URL and S3 key, Bedrock multimodal request shape."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from workers.runtime import BedrockClient, ModelError, ModelUnavailableError, PermanentError
from workers.runtime.testing import FailingModel, load_worker_module, make_context, stubbed_bedrock

alt = load_worker_module("image-alt-generator")

BLUE, WHITE, RED = (30, 80, 200), (250, 250, 250), (220, 20, 30)


# --- a small PNG encoder using every scanline filter (so the decoder must undo all five) --
def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter(kind: int, line: bytes, prev: bytes, bpp: int) -> bytes:
    out = bytearray()
    for i, x in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) >> 1, _paeth(a, b, c)][kind]
        out.append((x - pred) & 0xFF)
    return bytes([kind]) + bytes(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_png(
    width: int, height: int, pixel: Any, color_type: int = 2, palette: bytes = b""
) -> bytes:
    channels = {0: 1, 2: 3, 3: 1, 6: 4}[color_type]
    prev = bytes(width * channels)
    raw = bytearray()
    for y in range(height):
        line = b"".join(bytes(pixel(x, y)) for x in range(width))
        raw += _filter(y % 5, line, prev, channels)
        prev = line
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    chunks = _chunk(b"IHDR", ihdr)
    if palette:
        chunks += _chunk(b"PLTE", palette)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunks
        + _chunk(b"IDAT", zlib.compress(bytes(raw)))
        + _chunk(b"IEND", b"")
    )


def make_jpeg(width: int, height: int, sof: int = 0xC0) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + bytes(65)
    frame = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    sof_segment = bytes([0xFF, sof]) + struct.pack(">H", len(frame) + 2) + frame
    return b"\xff\xd8" + app0 + dqt + sof_segment + b"\xff\xd9"


def make_gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def make_webp(kind: str, width: int, height: int) -> bytes:
    if kind == "VP8X":
        body = bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    elif kind == "VP8L":
        bits = (width - 1) | ((height - 1) << 14)
        body = b"\x2f" + bits.to_bytes(4, "little")
    else:
        body = b"\x9d\x01\x2a"[:0] + bytes(3) + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    chunk = kind.encode().ljust(4) + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def two_tone(x: int, y: int) -> tuple[int, int, int]:
    return BLUE if x < 140 else WHITE  # 70 % blue, 30 % white


# --- decoding ------------------------------------------------------------------------------
def test_png_size_and_dominant_colours_through_all_filters() -> None:
    info = alt.image_info(make_png(200, 100, two_tone))
    assert (info.format, info.width, info.height) == ("png", 200, 100)
    assert info.colors == ("blue", "white")
    assert info.kind == "landscape"


def test_png_rgba_ignores_transparent_pixels_and_palette_images_decode() -> None:
    rgba = make_png(80, 80, lambda x, y: (*RED, 255) if x < 20 else (0, 0, 0, 0), color_type=6)
    assert alt.image_info(rgba).colors == ("red",)
    palette = bytes(BLUE) + bytes(RED)
    indexed = make_png(60, 90, lambda x, y: (1 if y < 60 else 0,), color_type=3, palette=palette)
    info = alt.image_info(indexed)
    assert info.colors == ("red", "blue") and info.kind == "portrait"


@pytest.mark.parametrize("sof", [0xC0, 0xC2])
def test_jpeg_size_from_baseline_and_progressive_frames(sof: int) -> None:
    info = alt.image_info(make_jpeg(1920, 1080, sof))
    assert (info.format, info.width, info.height, info.colors) == ("jpeg", 1920, 1080, ())


@pytest.mark.parametrize("kind", ["VP8X", "VP8L", "VP8 "])
def test_webp_size_from_each_bitstream_header(kind: str) -> None:
    info = alt.image_info(make_webp(kind.strip() if kind != "VP8 " else kind, 1000, 250))
    assert (info.format, info.width, info.height, info.kind) == ("webp", 1000, 250, "banner")


def test_gif_size_and_unknown_formats_are_permanent_errors() -> None:
    info = alt.image_info(make_gif(32, 32))
    assert (info.format, info.width, info.kind) == ("gif", 32, "icon")
    with pytest.raises(PermanentError):
        alt.image_info(b"BM" + bytes(60))  # a BMP


# --- alt text ------------------------------------------------------------------------------
def test_filename_words_drop_camera_and_size_noise() -> None:
    assert alt.filename_words("IMG_0042-red-sports_car@2x.jpg") == "red sports car"
    assert alt.filename_words("https://x/y/heroBanner-1200x630-final.webp") == "hero banner"
    assert alt.filename_words("DSC00123.JPG") == ""


def test_alt_text_combines_context_size_and_colour_within_125_chars() -> None:
    data = make_png(200, 100, two_tone)
    image = alt.LoadedImage(
        "s3_key:x",
        data,
        alt.image_info(data),
        filename="chart.png",
        context="Quarterly revenue by region, 2026. Source: finance team.",
    )
    text = alt.OfflineAltText().alt_text(image)
    assert (
        text == "Quarterly revenue by region, 2026: landscape graphic, 200\u00d7100, "
        "mostly blue and white"
    )
    assert len(text) <= alt.MAX_ALT


def test_alt_text_falls_back_to_filename_and_keeps_details_when_context_is_long() -> None:
    jpeg = make_jpeg(800, 1200)
    from_name = alt.OfflineAltText().alt_text(
        alt.LoadedImage("u", jpeg, alt.image_info(jpeg), filename="golden-retriever-puppy.jpg")
    )
    assert from_name == "Golden retriever puppy: portrait photo, 800\u00d71200"
    long_context = "A very long caption " * 20
    text = alt.OfflineAltText().alt_text(
        alt.LoadedImage("u", jpeg, alt.image_info(jpeg), context=long_context)
    )
    assert len(text) <= alt.MAX_ALT and text.endswith("portrait photo, 800\u00d71200")
    nameless = alt.OfflineAltText().alt_text(
        alt.LoadedImage("u", jpeg, alt.image_info(jpeg), filename="DSC0001.jpg")
    )
    assert nameless == "Portrait photo, 800\u00d71200"


# --- loading and the handler -----------------------------------------------------------------
@pytest.fixture
def image_server() -> Iterator[str]:
    png = make_png(64, 48, lambda x, y: BLUE if x < 45 else WHITE)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/img/"):
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)
            else:
                self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_handler_fetches_urls_and_s3_keys_with_per_item_errors(image_server: str) -> None:
    objects = {"uploads/team-photo.jpg": make_jpeg(1600, 900)}

    def read_object(key: str) -> bytes:
        if key not in objects:
            raise PermanentError(f"s3 object {key} does not exist")
        return objects[key]

    images = [
        {"url": f"{image_server}/img/blue-logo.png?v=3", "context": "Company logo"},
        {"s3_key": "uploads/team-photo.jpg"},
        {"url": f"{image_server}/missing.png"},
        {"s3_key": "uploads/nope.png"},
        {"context": "no source"},
    ]
    ctx = make_context("image-alt-generator", {"images": images}, read_object=read_object)
    out = alt.handle(ctx)
    assert out["backend"] == "offline"
    assert out["summary"] == {"images": 5, "succeeded": 2, "failed": 3}
    first, second, third, fourth, fifth = out["images"]
    assert first["alt"] == "Company logo: icon, 64\u00d748, mostly blue and white"
    assert (first["width"], first["height"], first["format"]) == (64, 48, "png")
    assert second["alt"] == "Team photo: landscape photo, 1600\u00d7900"
    assert second["source"] == "uploads/team-photo.jpg"
    assert third["error"]["type"] == "HTTPError"
    assert fourth["error"]["type"] == "PermanentError"
    assert fifth["error"] == {"type": "PermanentError", "message": "image needs a url or an s3_key"}


def test_non_http_urls_are_refused() -> None:
    with pytest.raises(PermanentError):
        alt.fetch_url("file:///etc/passwd")


def test_bedrock_alt_text_sends_image_bytes_and_context() -> None:
    png = make_png(64, 48, two_tone)
    client, stub = stubbed_bedrock()
    stub.add_response(
        "converse",
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [{"text": 'Alt text: "Blue Acme logo on a white background"'}],
                }
            },
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
            "metrics": {"latencyMs": 1},
        },
        {
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"image": {"format": "png", "source": {"bytes": png}}},
                        {
                            "text": "Page context: Company logo\nFile name: acme-logo.png\n"
                            "Write the alt text for this image."
                        },
                    ],
                }
            ],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.2},
            "system": [{"text": alt.BedrockAltText.SYSTEM}],
        },
    )
    writer = alt.BedrockAltText(
        BedrockClient("anthropic.claude-3-haiku-20240307-v1:0", client=client)
    )
    image = alt.LoadedImage(
        "u", png, alt.image_info(png), filename="acme-logo.png", context="Company logo"
    )
    with stub:
        text = writer.alt_text(image)
    stub.assert_no_pending_responses()
    assert text == "Blue Acme logo on a white background"


def test_bedrock_prompt_asks_for_the_job_language() -> None:
    png = make_png(8, 8, two_tone)
    image = alt.load_image({"s3_key": "inputs/x/logo.png"}, lambda _: png, language="de")
    prompt = alt.BedrockAltText(BedrockClient("m", client=object())).prompt(image)
    assert prompt.endswith("Write the alt text for this image in the language 'de'.")
    assert "File name: inputs/x/logo.png" in prompt


def test_a_model_that_cannot_be_called_fails_the_job_not_each_image() -> None:
    """AccessDenied / model not enabled escapes ctx.map: the job FAILS once with the model's
    message instead of SUCCEEDED with every image an error; no image is left unprocessed
    silently, and at most the images already in flight reached the model."""
    denied = ModelUnavailableError("amazon.nova-lite-v1:0", "AccessDeniedException", "denied")
    model = FailingModel(denied)
    images = [{"s3_key": f"uploads/photo-{i}.jpg"} for i in range(20)]
    ctx = make_context(
        "image-alt-generator",
        {"images": images},
        model=model,
        read_object=lambda _key: make_jpeg(800, 600),
    )
    with pytest.raises(ModelUnavailableError, match="AccessDeniedException"):
        alt.handle(ctx)
    assert 1 <= model.calls <= 4  # the map's concurrency, not 20


def test_a_failed_model_call_is_that_images_error() -> None:
    model = FailingModel(ModelError("Bedrock ThrottlingException: slow down (gave up)"))
    ctx = make_context(
        "image-alt-generator",
        {"images": [{"s3_key": "uploads/a.jpg"}, {"s3_key": "uploads/b.jpg"}]},
        model=model,
        read_object=lambda _key: make_jpeg(800, 600),
    )
    out = alt.handle(ctx)
    assert out["backend"] == "bedrock:amazon.nova-lite-v1:0"
    assert out["summary"] == {"images": 2, "succeeded": 0, "failed": 2}
    assert all(i["error"]["type"] == "ModelError" for i in out["images"])
