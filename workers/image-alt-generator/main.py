"""image-alt-generator: alt text (at most 125 characters) for each image.

Input (``input_schema.json``): ``{"images": [{"url" | "s3_key", "context"?}], "language"?}``;
``url`` is fetched over HTTP(S), ``s3_key`` is read from the results bucket; an item may also
carry ``filename`` when called directly (the file name otherwise comes from the URL or key).
Output: ``{"backend", "images": [{"source", "alt", "length", "width", "height", "format"} |
{"source", "error"}], "summary"}``.

Backends:
- ``OfflineAltText`` (no model configured): reads the image header with the standard
  library (PNG IHDR, JPEG SOF, GIF screen descriptor, WebP VP8/VP8L/VP8X), decodes PNG pixels
  (zlib + scanline filters) to name the dominant colours, and writes alt text from the page
  context and the words in the file name, plus orientation, size and colour. It cannot see
  what the picture shows; the context supplies that, as a person writing alt text would.
- ``BedrockAltText`` (``BATCH_MODEL_ID`` set): the image bytes go to a multimodal model with
  the context; the answer is cleaned and held to 125 characters.
"""

from __future__ import annotations

import colorsys
import re
import struct
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from workers.runtime import ImageInput, JobContext, ModelClient, PermanentError, worker
from workers.runtime.model import ImageFormat
from workers.runtime.text import normalize_space, sentences, trim

MAX_ALT = 125
MAX_IMAGE_BYTES = 5 * 1024 * 1024
FETCH_TIMEOUT_SECONDS = 15
MAX_DECODE_BYTES = 2_500_000  # raw PNG bytes decoded in pure Python: about 2 s at most
COLOR_SAMPLES = 20_000


@dataclass(frozen=True)
class ImageInfo:
    format: ImageFormat
    width: int
    height: int
    colors: tuple[str, ...] = ()  # dominant colour names, most common first

    @property
    def kind(self) -> str:
        """Icon / banner / landscape / portrait / square, from the size and aspect ratio."""
        if max(self.width, self.height) <= 64:
            return "icon"
        ratio = self.width / max(1, self.height)
        if ratio >= 2.5:
            return "banner"
        if ratio >= 1.2:
            return "landscape"
        if ratio <= 0.8:
            return "portrait"
        return "square"


@dataclass(frozen=True)
class LoadedImage:
    source: str
    data: bytes
    info: ImageInfo
    filename: str = ""
    context: str = ""
    language: str = ""  # BCP 47 tag from the job input; the offline backend writes English


# --- header decoding -------------------------------------------------------------------------
def image_info(data: bytes) -> ImageInfo:
    """Format and size from the header (and PNG colours); PermanentError if unrecognised."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_info(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_info(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return ImageInfo("gif", width, height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_info(data)
    raise PermanentError("not a PNG, JPEG, GIF or WebP image")


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _png_info(data: bytes) -> ImageInfo:
    chunks = _png_chunks(data)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) < 13:
        raise PermanentError("PNG without IHDR")
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1][:13])
    colors: tuple[str, ...] = ()
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color_type)
    if depth == 8 and interlace == 0 and channels and width * height * channels <= MAX_DECODE_BYTES:
        palette = next((body for kind, body in chunks if kind == b"PLTE"), b"")
        try:
            raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
            pixels = _png_pixels(raw, width, height, channels, color_type, palette)
            colors = dominant_colors(pixels)
        except (zlib.error, ValueError, IndexError):
            colors = ()  # the size is still right; colour is a nicety
    return ImageInfo("png", width, height, colors)


def _png_pixels(
    raw: bytes, width: int, height: int, channels: int, color_type: int, palette: bytes
) -> list[tuple[int, int, int]]:
    """Unfilter 8-bit scanlines (None/Sub/Up/Average/Paeth) and sample RGB pixels."""
    stride = width * channels
    step = max(1, (width * height) // COLOR_SAMPLES)
    prev = bytearray(stride)
    out: list[tuple[int, int, int]] = []
    pos = 0
    for y in range(height):
        kind = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        if len(line) != stride:
            raise ValueError("truncated PNG data")
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b, c = prev[i], (prev[i - channels] if i >= channels else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif kind != 0:
            raise ValueError(f"bad PNG filter {kind}")
        prev = line
        for x in range((y * width) % step, width, step):
            px = line[x * channels : (x + 1) * channels]
            if color_type == 3:
                idx = px[0] * 3
                out.append((palette[idx], palette[idx + 1], palette[idx + 2]))
            elif color_type in (0, 4):
                if color_type == 4 and px[1] < 32:
                    continue  # transparent pixels have no colour
                out.append((px[0], px[0], px[0]))
            else:
                if color_type == 6 and px[3] < 32:
                    continue
                out.append((px[0], px[1], px[2]))
    return out


def _jpeg_info(data: bytes) -> ImageInfo:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            pos += 1
            continue
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            pos += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return ImageInfo("jpeg", width, height)
        pos += 2 + length
    raise PermanentError("JPEG without a frame header")


def _webp_info(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 " and len(data) >= 30:
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
    else:
        raise PermanentError("WebP without a VP8/VP8L/VP8X header")
    return ImageInfo("webp", width, height)


# --- colour names ----------------------------------------------------------------------------
def color_name(rgb: tuple[int, int, int]) -> str:
    """A plain colour word for one pixel (hue bands; greys by lightness)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    if v < 0.18:
        return "black"
    if s < 0.18:
        return "white" if v > 0.85 else ("grey" if v > 0.3 else "black")
    deg = h * 360
    if deg < 15 or deg >= 345:
        return "red" if v > 0.45 else "brown"
    if deg < 45:
        return "orange" if v > 0.6 else "brown"
    if deg < 70:
        return "yellow"
    if deg < 165:
        return "green"
    if deg < 195:
        return "teal"
    if deg < 255:
        return "blue"
    if deg < 290:
        return "purple"
    return "pink"


def dominant_colors(pixels: list[tuple[int, int, int]]) -> tuple[str, ...]:
    """Colour names covering at least 20 % of the sampled pixels, most common first (max 2)."""
    if not pixels:
        return ()
    counts = Counter(color_name(p) for p in pixels)
    return tuple(name for name, n in counts.most_common(2) if n / len(pixels) >= 0.2)


# --- alt text --------------------------------------------------------------------------------
_NOISE = re.compile(
    r"^(img|image|images|pic|dsc|dscn|dcim|final|copy|"
    r"edit|edited|new|old|large|small|thumb|thumbnail|scaled|min|web|hd|v\d+|\d+|"
    r"\d+x\d+|[0-9a-f]{8,}|[a-z]{0,5}\d{3,}|jpe?g|png|gif|webp)$",
    re.IGNORECASE,
)


def filename_words(filename: str) -> str:
    """Meaningful words of a file name: ``red-sports_car-IMG_0042@2x.jpg`` -> ``red sports car``."""
    stem = urllib.parse.unquote(filename.rsplit("/", 1)[-1]).rsplit(".", 1)[0]
    stem = re.sub(r"@\dx$", "", stem)
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)  # camelCase
    tokens = [t for t in re.split(r"[\s_\-.+,()\[\]]+", stem) if t and not _NOISE.match(t)]
    return " ".join(t.lower() for t in tokens)


def _subject(context: str, filename: str) -> str:
    first = sentences(normalize_space(context))
    subject = first[0].rstrip(".!?") if first else filename_words(filename)
    return subject[:1].upper() + subject[1:] if subject else ""


class AltWriter(Protocol):
    name: str

    def alt_text(self, image: LoadedImage) -> str: ...


class OfflineAltText:
    """Context / file-name subject + orientation, size and dominant colours, <= 125 chars."""

    name = "offline"

    def alt_text(self, image: LoadedImage) -> str:
        info = image.info
        medium = {"jpeg": "photo", "webp": "image"}.get(info.format, "graphic")
        detail = f"{info.kind} {medium}" if info.kind != "icon" else "icon"
        detail += f", {info.width}\u00d7{info.height}"
        if info.colors:
            detail += ", mostly " + " and ".join(info.colors)
        subject = _subject(image.context, image.filename)
        if not subject:
            return trim(detail[:1].upper() + detail[1:], MAX_ALT)
        room = MAX_ALT - len(detail) - 2
        if room < 20:  # keep the subject; it matters more than the colour
            detail = f"{detail.split(',')[0]}, {info.width}\u00d7{info.height}"
            room = MAX_ALT - len(detail) - 2
        return f"{trim(subject, room)}: {detail}"


class BedrockAltText:
    """A multimodal model looks at the image; the page context steers what matters."""

    SYSTEM = (
        "You write alt text for images on web pages. Reply with the alt text only: one "
        "plain sentence under 125 characters that says what the image shows and why it "
        "matters in context. Do not start with 'Image of' or 'Picture of'; no quotes."
    )

    def __init__(self, model: ModelClient) -> None:
        self.model = model
        self.name = f"bedrock:{model.model_id}"

    def prompt(self, image: LoadedImage) -> str:
        language = f" in the language {image.language!r}" if image.language else ""
        return (
            f"Page context: {image.context or '(none)'}\n"
            f"File name: {image.filename or '(none)'}\n"
            f"Write the alt text for this image{language}."
        )

    def alt_text(self, image: LoadedImage) -> str:
        answer = self.model.generate(
            self.prompt(image),
            system=self.SYSTEM,
            images=[ImageInput(image.data, image.info.format)],
            max_tokens=100,
            temperature=0.2,
        )
        cleaned = re.sub(r"^alt[ -]text:\s*", "", normalize_space(answer), flags=re.IGNORECASE)
        cleaned = cleaned.strip("\"'\u201c\u201d ")
        return trim(cleaned, MAX_ALT)


def writer_for(model: ModelClient | None) -> AltWriter:
    return BedrockAltText(model) if model is not None else OfflineAltText()


# --- fetching --------------------------------------------------------------------------------
def fetch_url(url: str) -> bytes:
    """GET an http(s) URL, at most ``MAX_IMAGE_BYTES``."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise PermanentError(f"unsupported URL scheme: {url[:80]}")
    request = urllib.request.Request(url, headers={"User-Agent": "ai-batch-image-alt/1"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as resp:
        data = bytes(resp.read(MAX_IMAGE_BYTES + 1))
    if len(data) > MAX_IMAGE_BYTES:
        raise PermanentError(f"image larger than {MAX_IMAGE_BYTES} bytes")
    return data


def load_image(
    raw: Mapping[str, Any],
    read_object: Callable[[str], bytes],
    fetch: Callable[[str], bytes] = fetch_url,
    language: str = "",
) -> LoadedImage:
    url, key = raw.get("url"), raw.get("s3_key")
    if isinstance(url, str) and url:
        source, data = url, fetch(url)
    elif isinstance(key, str) and key:
        source, data = f"s3_key:{key}", read_object(key)
    else:
        raise PermanentError("image needs a url or an s3_key")
    filename = str(raw.get("filename") or (url or key or "")).split("?", 1)[0]
    return LoadedImage(
        source=source,
        data=data,
        info=image_info(data),
        filename=filename,
        context=str(raw.get("context") or ""),
        language=language,
    )


@worker(name="image-alt-generator")
def handle(ctx: JobContext) -> dict[str, Any]:
    """Alt text of at most 125 characters for each image."""
    images = ctx.input.get("images")
    if not isinstance(images, list) or not images:
        raise PermanentError("input.images must be a non-empty list")
    writer = writer_for(ctx.model)
    language = str(ctx.input.get("language") or "")

    def one(raw: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise PermanentError("image must be an object")
        image = load_image(raw, ctx.read_object, language=language)
        alt = writer.alt_text(image)
        info = image.info
        return {
            "alt": alt,
            "length": len(alt),
            "width": info.width,
            "height": info.height,
            "format": info.format,
        }

    results = ctx.map(one, images, concurrency=4)
    out = []
    for raw, result in zip(images, results, strict=True):
        source = (raw.get("url") or raw.get("s3_key")) if isinstance(raw, Mapping) else None
        body = result.value if result.ok and result.value is not None else {"error": result.error}
        out.append({"source": source, **body})
    ok = sum(1 for r in results if r.ok)
    return {
        "backend": writer.name,
        "images": out,
        "summary": {"images": len(images), "succeeded": ok, "failed": len(images) - ok},
    }
