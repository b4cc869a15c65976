"""image-embedder: a fixed-length embedding vector for each image (the example GPU worker).

Input (``input_schema.json``): ``{"images": [{"id"?, "url" | "s3_key" | "png_base64"}]}``.
Output: ``{"model", "device", "gpu_visible", "dimensions", "images": [{"id", "embedding",
"width", "height"} | {"id", "error"}]}``; embeddings are L2-normalised, so the dot product of
two is their cosine similarity.

The model shipped with this worker (``TinyColorEmbedder``, ``model.json``) is deliberately
tiny and dependency-free so the worker, its tests and the local pipeline run on a machine
without a GPU: 64 colour-layout features (a 4x4 grid of mean RGB, a saturation-weighted hue
histogram, brightness quartiles) projected to 32 dimensions by a fixed matrix derived from the
seed in ``model.json``. It runs on the CPU wherever it runs; ``gpu_visible`` reports whether the
container was given a GPU (``/dev/nvidia0`` or ``NVIDIA_VISIBLE_DEVICES``), which is what a real
model backend would use. To ship a real model (e.g. CLIP on ``onnxruntime-gpu``), implement
``Embedder`` (``name``, ``dimensions``, ``embed(pixels) -> list[float]``), install its runtime and
weights in the Dockerfile, and return it from ``load_embedder``.
"""

from __future__ import annotations

import base64
import binascii
import colorsys
import hashlib
import json
import math
import os
import struct
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from workers.runtime import JobContext, PermanentError, worker

MODEL_FILE = Path(__file__).with_name("model.json")
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 4_000_000
FETCH_TIMEOUT_SECONDS = 15
GRID = 4
HUE_BINS = 12


@dataclass(frozen=True)
class Pixels:
    """Decoded RGB image: ``rows[y][x] = (r, g, b)`` in 0..255 (sampled for big images)."""

    width: int
    height: int
    rows: tuple[tuple[tuple[int, int, int], ...], ...]


class Embedder(Protocol):
    name: str
    dimensions: int

    def embed(self, image: Pixels) -> list[float]: ...


# --- PNG decoding (8-bit grey / grey+alpha / RGB / RGBA, not interlaced) ---------------------
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def decode_png(data: bytes, sample: int = 64) -> Pixels:
    """Decode a PNG and keep an evenly sampled grid of at most ``sample`` x ``sample`` pixels
    (the features need no more); PermanentError for anything else."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise PermanentError("not a PNG image")
    pos, idat, header = 8, bytearray(), None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise PermanentError("PNG without IHDR")
    width, height, depth, color, _c, _f, interlace = header
    if depth != 8 or color not in _CHANNELS or interlace:
        raise PermanentError(f"unsupported PNG (bit depth {depth}, colour type {color})")
    if width * height > MAX_PIXELS or not width or not height:
        raise PermanentError(f"image too large: {width}x{height}")
    bpp = _CHANNELS[color]
    stride = width * bpp
    try:
        raw = zlib.decompress(bytes(idat))
    except zlib.error as exc:
        raise PermanentError(f"corrupt PNG data: {exc}") from None
    if len(raw) < (stride + 1) * height:
        raise PermanentError("truncated PNG data")
    keep_y = {int((i + 0.5) * height / min(sample, height)) for i in range(min(sample, height))}
    keep_x = [int((i + 0.5) * width / min(sample, width)) for i in range(min(sample, width))]
    prev = bytearray(stride)
    rows: list[tuple[tuple[int, int, int], ...]] = []
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), prev, bpp)
        prev = line
        if y in keep_y:
            rows.append(tuple(_rgb(line, x * bpp, color) for x in keep_x))
    return Pixels(width=width, height=height, rows=tuple(rows))


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> bytearray:
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + a) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + b) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((a + b) >> 1)) & 0xFF
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        elif kind != 0:
            raise PermanentError(f"bad PNG filter type {kind}")
    return line


def _rgb(line: bytearray, i: int, color: int) -> tuple[int, int, int]:
    if color in (0, 4):
        return (line[i], line[i], line[i])
    return (line[i], line[i + 1], line[i + 2])


# --- the model -------------------------------------------------------------------------------
def features(image: Pixels) -> list[float]:
    """64 colour-layout features in 0..1: GRID x GRID mean RGB, hue histogram, brightness."""
    h, w = len(image.rows), len(image.rows[0])
    cells = [[0.0, 0.0, 0.0, 0] for _ in range(GRID * GRID)]
    hues = [0.0] * HUE_BINS
    bright = [0] * 4
    for y, row in enumerate(image.rows):
        for x, (r, g, b) in enumerate(row):
            cell = cells[(y * GRID // h) * GRID + (x * GRID // w)]
            cell[0] += r
            cell[1] += g
            cell[2] += b
            cell[3] += 1
            hue, sat, val = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
            hues[min(HUE_BINS - 1, int(hue * HUE_BINS))] += sat
            bright[min(3, int(val * 4))] += 1
    out: list[float] = []
    for red, green, blue, count in cells:
        n = max(1, int(count))
        out += [red / n / 255, green / n / 255, blue / n / 255]
    total = max(1e-9, sum(hues))
    out += [v / total for v in hues]
    pixels = max(1, sum(bright))
    out += [v / pixels for v in bright]
    return out


class TinyColorEmbedder:
    """Fixed random projection of ``features`` (weights derived from the seed in
    ``model.json``: the same vectors on every machine, GPU or not)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.name = str(spec["name"])
        self.dimensions = int(spec["dimensions"])
        self.inputs = int(spec["inputs"])
        seed = str(spec["seed"]).encode()
        self.weights = [
            [_unit(seed, i, j) for j in range(self.inputs)] for i in range(self.dimensions)
        ]
        digest = hashlib.sha256(json.dumps(self.weights).encode()).hexdigest()[:16]
        if spec.get("weights_sha256_16") and spec["weights_sha256_16"] != digest:
            raise PermanentError(f"model weights do not match {MODEL_FILE.name}")

    def embed(self, image: Pixels) -> list[float]:
        x = features(image)
        centred = [v - 0.5 for v in x]
        y = [sum(w * v for w, v in zip(row, centred, strict=True)) for row in self.weights]
        norm = math.sqrt(sum(v * v for v in y)) or 1.0
        return [round(v / norm, 6) for v in y]


def _unit(seed: bytes, i: int, j: int) -> float:
    """A deterministic value in [-1, 1) for weight (i, j)."""
    h = hashlib.blake2b(seed + struct.pack(">II", i, j), digest_size=4).digest()
    return int.from_bytes(h, "big") / 2**31 - 1.0


def load_embedder(path: Path = MODEL_FILE) -> Embedder:
    return TinyColorEmbedder(json.loads(path.read_text()))


def gpu_visible(env: Mapping[str, str] | None = None, dev: Path = Path("/dev/nvidia0")) -> bool:
    """Whether this container was given an NVIDIA GPU (ECS GPU tasks and ``docker run
    --gpus`` expose /dev/nvidia*; the NVIDIA runtime sets NVIDIA_VISIBLE_DEVICES)."""
    env = os.environ if env is None else env
    visible = env.get("NVIDIA_VISIBLE_DEVICES", "")
    return dev.exists() or visible not in ("", "void", "none")


# --- loading ---------------------------------------------------------------------------------
def load_image(ctx: JobContext, item: Mapping[str, Any]) -> bytes:
    if "png_base64" in item:
        try:
            return base64.b64decode(str(item["png_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise PermanentError("png_base64 is not valid base64") from None
    if "s3_key" in item:
        return ctx.read_object(str(item["s3_key"]))
    url = str(item.get("url", ""))
    if not url.startswith("https://"):
        raise PermanentError("an image needs url (https), s3_key or png_base64")
    request = urllib.request.Request(url, headers={"User-Agent": "ai-batch-image-embedder"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
        data: bytes = response.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise PermanentError(f"image larger than {MAX_IMAGE_BYTES} bytes")
    return data


def embed_all(
    ctx: JobContext, images: Sequence[Mapping[str, Any]], embedder: Embedder
) -> list[dict[str, Any]]:
    def one(item: Mapping[str, Any]) -> dict[str, Any]:
        pixels = decode_png(load_image(ctx, item))
        return {
            "embedding": embedder.embed(pixels),
            "width": pixels.width,
            "height": pixels.height,
        }

    results = ctx.map(one, images, concurrency=4)
    out = []
    for index, (item, r) in enumerate(zip(images, results, strict=True)):
        ident = str(item.get("id") or index)
        out.append(
            {"id": ident, **r.value} if r.ok and r.value else {"id": ident, "error": r.error}
        )
    return out


@worker(name="image-embedder")
def handle(ctx: JobContext) -> dict[str, Any]:
    images = ctx.input.get("images") or []
    if not images:
        raise PermanentError("no images")
    embedder = load_embedder()
    return {
        "model": embedder.name,
        "device": "cpu",
        "gpu_visible": gpu_visible(),
        "dimensions": embedder.dimensions,
        "images": embed_all(ctx, images, embedder),
    }
