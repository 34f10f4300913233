"""The hostile and broken input corpus: each case is (request kwargs for httpx, expected status,
words the message must contain). Images are made here, in memory, from Pillow and hand-written
headers; nothing is read from disk or the network."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image

LABELS = ["cat", "dog"]
MAX_IMAGE_PIXELS = 1_000_000
MAX_BODY_BYTES = 2_000_000
MAX_LABELS = 50
MAX_IMAGES = 8
MAX_LABEL_CHARS = 100
BOUNDARY = "clipserve-corpus-boundary"


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(mode: str = "RGB", size: tuple[int, int] = (40, 32), seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's header, without the bomb)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    pixels = png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + header + pixels + png_chunk(b"IEND", b"")


def gif_claiming(width: int, height: int) -> bytes:
    """A real 8x8 GIF whose logical screen (the size Pillow reports) is patched to width x height."""
    small = encoded(noise("P", size=(8, 8)), "GIF")
    return small[:6] + struct.pack("<HH", width, height) + small[10:]


def sixteen_bit_png() -> bytes:
    ramp = (np.arange(40 * 32, dtype=np.uint16).reshape(32, 40) * 50).astype(np.uint16)
    return encoded(Image.fromarray(ramp), "PNG")  # mode I;16


def animated(fmt: str) -> bytes:
    frames = [noise(seed=i) for i in range(3)]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


def palette_with_transparency() -> bytes:
    image = noise().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encoded(image, "PNG", transparency=0)


def multipart_raw(images: list[tuple[str, bytes, str]], fields: list[tuple[str, bytes]]) -> dict[str, Any]:
    """A hand-built multipart body, so field values can be any bytes (e.g. not UTF-8)."""
    parts = []
    for filename, blob, content_type in images:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
            + blob
            + b"\r\n"
        )
    for name, value in fields:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}}


def form(images: list[bytes], labels: list[str] = LABELS, **fields: Any) -> dict[str, Any]:
    files = [("images", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(images)]
    data: dict[str, Any] = {
        k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in fields.items()
    }
    if labels:
        data["labels"] = labels
    return {"data": data, "files": files}


def as_json(images: list[bytes], labels: Any = LABELS, **fields: Any) -> dict[str, Any]:
    return {"json": {"images": [base64.b64encode(b).decode() for b in images], "labels": labels, **fields}}


def raw(blob: bytes, content_type: str, **params: Any) -> dict[str, Any]:
    return {
        "content": blob,
        "headers": {"content-type": content_type},
        "params": {"labels": LABELS, **params},
    }


def chunks(total: int, size: int = 64 * 1024) -> Any:
    for _ in range(total // size + 1):
        yield b"\0" * size


def file_part_then(body: Any) -> Any:
    yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'.encode()
    yield from body


def image_cases() -> dict[str, tuple[dict[str, Any], int, str]]:
    jpeg = encoded(noise(), "JPEG")
    png = encoded(noise(), "PNG")
    valid = "accepted"  # the 200s carry no message; these words are unused for them
    return {
        # valid images in every mode Pillow decodes: converted to RGB and classified
        "cmyk jpeg": (form([encoded(noise("CMYK"), "JPEG")]), 200, valid),
        "16-bit png": (form([sixteen_bit_png()]), 200, valid),
        "palette png": (form([encoded(noise("P"), "PNG")]), 200, valid),
        "palette png with transparency": (form([palette_with_transparency()]), 200, valid),
        "greyscale + alpha png": (form([encoded(noise("LA"), "PNG")]), 200, valid),
        "rgba png": (form([encoded(noise("RGBA"), "PNG")]), 200, valid),
        "1-bit png": (form([encoded(noise("1"), "PNG")]), 200, valid),
        "animated gif (first frame)": (form([animated("GIF")]), 200, valid),
        "animated png (first frame)": (form([animated("PNG")]), 200, valid),
        "animated webp (first frame)": (form([animated("WEBP")]), 200, valid),
        "1x1 image": (form([encoded(noise(size=(1, 1)), "PNG")]), 200, valid),
        "extreme aspect 4000x1": (form([encoded(noise(size=(4000, 1)), "PNG")]), 200, valid),
        "png labelled image/jpeg (bytes decide)": (
            multipart_raw([("x.jpg", png, "image/jpeg")], [("labels", b"cat"), ("labels", b"dog")]),
            200,
            valid,
        ),
        "raw body labelled image/gif but a jpeg": (raw(jpeg, "image/gif"), 200, valid),
        # broken or refused images
        "zero-byte image": (form([b""]), 415, "not an image"),
        "zero-byte raw body": (raw(b"", "image/png"), 415, "not an image"),
        "truncated jpeg": (form([jpeg[: len(jpeg) // 2]]), 400, "truncated"),
        "truncated png": (form([png[: len(png) // 2]]), 400, "image 0"),
        "png signature only": (form([png[:8]]), 415, "not an image"),
        "png header only": (form([png[:33]]), 415, "not an image"),
        "bomb header 100000x100000": (form([png_claiming(100_000, 100_000)]), 413, "max_image_pixels"),
        "bomb header 2000x2000 over the limit": (form([png_claiming(2000, 2000)]), 413, "max_image_pixels"),
        "gif screen 65535x65535": (form([gif_claiming(65535, 65535)]), 413, "max_image_pixels"),
        "bomb as second image": (form([png, png_claiming(100_000, 100_000)]), 413, "image 1"),
        "text labelled image/png": (form([b"just some text, not pixels"]), 415, "not an image"),
        "html labelled image/png": (raw(b"<html><body>hi</body></html>", "image/png"), 415, "not an image"),
        "tiff (format not accepted)": (form([encoded(noise(), "TIFF")]), 415, "TIFF is not accepted"),
        "pdf bytes": (form([b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"]), 415, "not an image"),
        "svg": (
            form([b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>']),
            415,
            "not an image",
        ),
        "images as a plain field": (
            multipart_raw([], [("images", b"abc"), ("labels", b"cat")]),
            400,
            "files",
        ),
        "no images": (multipart_raw([], [("labels", b"cat")]), 422, "at least one image"),
        "too many images": (form([png] * 9), 413, "max_images"),
    }


def body_cases() -> dict[str, tuple[dict[str, Any], int, str]]:
    png = encoded(noise(), "PNG")
    b64 = base64.b64encode(png).decode()
    return {
        "invalid base64": ({"json": {"images": ["not base64!!"], "labels": LABELS}}, 400, "base64"),
        "base64 with bad padding": ({"json": {"images": [b64[:-3]], "labels": LABELS}}, 400, "base64"),
        "base64 of text": (as_json([b"hello"]), 415, "not an image"),
        "image url while urls are off": (  # the default; when on, loopback is refused unless named
            {"json": {"images": ["http://127.0.0.1:9/x.png"], "labels": LABELS}},
            403,
            "image URLs are off",
        ),
        "empty base64": ({"json": {"images": [""], "labels": LABELS}}, 415, "not an image"),
        "images not a list": ({"json": {"images": b64, "labels": LABELS}}, 422, "images"),
        "images empty list": ({"json": {"images": [], "labels": LABELS}}, 422, "image"),
        "unknown json field": ({"json": {"images": [b64], "labels": LABELS, "url": "x"}}, 422, "url"),
        "json array body": ({"json": [1, 2]}, 422, "invalid JSON request"),
        "json null body": (
            {"content": b"null", "headers": {"content-type": "application/json"}},
            422,
            "JSON",
        ),
        "malformed json": (
            {"content": b'{"images": [', "headers": {"content-type": "application/json"}},
            400,
            "JSON",
        ),
        "json not utf-8": (
            {
                "content": b'{"images": ["' + b64.encode() + b'"], "labels": ["\xff\xfe"]}',
                "headers": {"content-type": "application/json"},
            },
            400,
            "UTF-8",
        ),
        "empty json body": ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        "deeply nested json": (
            {"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"content-type": "application/json"}},
            400,
            "JSON",
        ),
        "text/plain": ({"content": png, "headers": {"content-type": "text/plain"}}, 415, "content type"),
        "no content type": ({"content": png}, 415, "content type"),
        "form-urlencoded": ({"data": {"labels": "cat"}}, 415, "content type"),
        "multipart without boundary": (
            {"content": b"--x\r\n\r\n--x--\r\n", "headers": {"content-type": "multipart/form-data"}},
            400,
            "multipart",
        ),
        "multipart garbage": (
            {
                "content": b"\x00\x01garbage",
                "headers": {"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            },
            400,
            "multipart",
        ),
        "oversized body (content-length)": (
            raw(b"\0" * (MAX_BODY_BYTES + 1), "image/png"),
            413,
            "max_body_bytes",
        ),
        "oversized body (chunked)": (
            {
                "content": chunks(MAX_BODY_BYTES + 1),
                "headers": {"content-type": "image/png"},
                "params": {"labels": "a"},
            },
            413,
            "max_body_bytes",
        ),
        "oversized multipart (chunked)": (
            {
                "content": file_part_then(chunks(MAX_BODY_BYTES + 1)),
                "headers": {"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            },
            413,
            "max_body_bytes",
        ),
        "oversized json": (
            {
                "content": b'{"images": ["' + b"A" * MAX_BODY_BYTES + b'"]}',
                "headers": {"content-type": "application/json"},
            },
            413,
            "max_body_bytes",
        ),
    }


def label_cases() -> dict[str, tuple[dict[str, Any], int, str]]:
    png = encoded(noise(), "PNG")
    many = [f"class {i}" for i in range(5000)]
    return {
        "empty label": (form([png], ["cat", ""]), 422, "empty"),
        "whitespace label": (form([png], ["cat", "  \t"]), 422, "empty"),
        "empty labels list (zeroshot)": (as_json([png], labels=[]), 422, "labels"),
        "labels null (zeroshot)": (as_json([png], labels=None), 422, "labels"),
        "duplicate labels": (form([png], ["cat", "dog", "cat"]), 422, "unique"),
        "duplicate labels json": (as_json([png], labels=["cat", "cat"]), 422, "unique"),
        "100 KB label": (form([png], ["cat", "x" * 100_000]), 422, "max_label_chars"),
        "100 KB label json": (as_json([png], labels=["y" * 100_000]), 422, "max_label_chars"),
        "non-utf-8 label multipart": (
            multipart_raw(
                [("a.png", png, "image/png")], [("labels", b"cat"), ("labels", b"\xff\xfe\x80dog")]
            ),
            400,
            "UTF-8",
        ),
        "non-utf-8 label query": (
            {"content": png, "headers": {"content-type": "image/png"}, "query": "?labels=cat&labels=caf%FF"},
            400,
            "UTF-8",
        ),
        "5000 labels json": (as_json([png], labels=many), 422, "max_labels"),
        "5000 labels multipart": (form([png], many), 422, "max_labels"),
        "labels not strings": (as_json([png], labels=[1, 2]), 422, "labels"),
        "label with nul byte": (form([png], ["cat", "d\x00og"]), 200, ""),
        "unicode labels": (form([png], ["🐈 chat", "犬", "\u202eevil"]), 200, ""),
        "label that is a url (not fetched)": (form([png], ["http://127.0.0.1:9/cat", "dog"]), 200, ""),
        "labels json string not list": (as_json([png], labels="cat"), 422, "labels"),
        "template without placeholder": (form([png], templates="no placeholder"), 422, "'{}'"),
        "unknown template set": (form([png], templates="no-such-set"), 422, "{}"),
        "templates on a trained model": (form([png], model="pets", templates="photo"), 422, "templates"),
        "unknown model": (form([png], model="../../etc/passwd"), 404, "unknown model"),
        "model name 10 KB": (form([png], model="m" * 10_000), 404, "unknown model"),
        "unknown form field": (form([png], colour="red"), 422, "unknown form fields"),
        "model twice": ({**form([png]), "data": {"labels": LABELS, "model": ["a", "b"]}}, 422, "once"),
    }


def top_k_cases() -> dict[str, tuple[dict[str, Any], int, str]]:
    png = encoded(noise(), "PNG")
    return {
        "top_k 0": (form([png], top_k=0), 422, "top_k"),
        "top_k -1": (form([png], top_k=-1), 422, "top_k"),
        "top_k text": (form([png], top_k="three"), 422, "top_k"),
        "top_k 1.5": (form([png], top_k="1.5"), 422, "top_k"),
        "top_k empty": (form([png], top_k=""), 422, "top_k"),
        "top_k 10**30 form (clamped)": (form([png], top_k=10**30), 200, ""),
        "top_k 10**30 json (clamped)": (as_json([png], top_k=10**30), 200, ""),
        "top_k 5000 digits": (form([png], top_k="9" * 5000), 422, "top_k"),
        "top_k 1.5 json": (as_json([png], top_k=1.5), 422, "top_k"),
        "top_k string json": (as_json([png], top_k="2"), 422, "top_k"),
        "top_k true json": (as_json([png], top_k=True), 422, "top_k"),
        "top_k query negative": (raw(png, "image/png", top_k=-5), 422, "top_k"),
        "top_k above labels (clamped)": (form([png], top_k=50), 200, ""),
    }


def all_cases() -> dict[str, tuple[dict[str, Any], int, str]]:
    return {**image_cases(), **body_cases(), **label_cases(), **top_k_cases()}


def dumps(kwargs: dict[str, Any]) -> str:
    return json.dumps(sorted(kwargs), default=str)
