"""The servers only `make bench-overhead` runs (bench/overhead.py), as child processes:

- `bare`: the floor. A FastAPI endpoint that reads the body, cuts it with clipserve's multipart
  parser, reads each image's header (service.engine.image_header) and returns a fixed JSON: what
  any Python server must do with the same request, and nothing else.
- `bare --decode-arch ARCH`: the same, and it also decodes every image with clipserve's own
  decoder (service.engine.decode.Decoder: Pillow, resize + crop to ARCH's input) before the fixed
  JSON: the floor of any server that has to look at the pixels.
- `identity`: `clipserve serve` as users run it, except that the shared lane's image encoder is a
  fixed average pooling + random projection (IdentityEncoder), so the CPU it spends is the
  service's own (HTTP, parsing, decode, batching, scoring, serialising), not model compute. The
  encoder is injected here by replacing service.runtime.build_image_encoder before the app starts:
  the product has no flag or setting for it.

    python bench/overhead_servers.py bare --port 8200
    python bench/overhead_servers.py bare --port 8202 --decode-arch clipserve-tiny-vit
    python bench/overhead_servers.py identity --port 8201 --arch clipserve-tiny-vit --pretrained random
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from fastapi import FastAPI
from starlette.requests import Request  # at module level: FastAPI resolves the routes' annotations
from starlette.responses import Response

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from service.api.multipart import boundary_of, parse_multipart
from service.engine.decode import DecodeLimits, Decoder
from service.engine.image_header import read_image_header

POOLED = 4  # identity encoder: pixels average-pooled to 3 x 4 x 4 = 48 numbers, then projected
BARE_ANSWER = b'{"results":[{"predictions":[{"label":"cat","score":1.0,"cosine":0.3}]}]}'


class IdentityEncoder:
    """[B, 3, S, S] normalised pixels -> [B, D] unit features: pool, project, normalise. Costs a few
    microseconds per batch, so the lane's time is the service's overhead around the encoder."""

    name = "identity (bench only)"

    def __init__(self, dim: int, device: torch.device, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(3 * POOLED * POOLED, dim, generator=generator).to(device)  # [48, D]

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encode_identity(pixels)

    def encode_identity(self, pixels: torch.Tensor) -> torch.Tensor:  # a name the profile can find
        pooled = torch.nn.functional.adaptive_avg_pool2d(pixels.float(), POOLED).flatten(1)  # [B, 48]
        return torch.nn.functional.normalize(pooled @ self.projection, dim=-1)  # [B, D]


def install_identity_encoder() -> None:
    """Make the service build IdentityEncoder for its shared lane (same output size as the model's)."""
    import service.runtime as runtime
    from models.backbone import Backbone
    from service.settings import Settings

    def identity_encoder(settings: Settings, backbone: Backbone) -> IdentityEncoder:
        size = backbone.preprocessing.image_size
        with torch.no_grad():
            dim = backbone.encode_images(torch.zeros(1, 3, size, size, device=backbone.device)).shape[-1]
        return IdentityEncoder(dim, backbone.device)

    runtime.build_image_encoder = identity_encoder  # type: ignore[assignment]


def serve_identity(flags: list[str]) -> int:
    from service.cli import add_arguments, run

    install_identity_encoder()
    parser = argparse.ArgumentParser(prog="overhead_servers.py identity")
    add_arguments(parser)
    return run(parser.parse_args(flags))


def bare_app(decoder: Decoder | None = None) -> FastAPI:
    app = FastAPI()

    @app.get("/health/ready")
    async def ready() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    @app.post("/classify")
    async def classify(request: Request) -> Response:
        body = await request.body()
        parts = parse_multipart(body, boundary_of(request.headers["content-type"]), 64, 2000)
        images = [part.data for part in parts if part.name == "images"]
        headers = [read_image_header(data) for data in images]
        if any(header.format == "other" for header in headers):
            return Response(b'{"error":"not an image"}', status_code=415, media_type="application/json")
        if decoder is not None:
            await decoder.decode(images)  # [n, 3, S, S] uint8, dropped: only its cost counts
        return Response(BARE_ANSWER, media_type="application/json")

    return app


def clipserve_decoder(arch: str) -> Decoder:
    """The decoder `clipserve serve --arch ARCH` builds on the CPU (default limits and threads)."""
    from models.backbone import build_backbone
    from service.settings import Settings

    settings = Settings()
    preprocessing = build_backbone(arch, None).preprocessing  # random weights: only the sizes matter
    limits = DecodeLimits(settings.max_image_pixels, tuple(settings.image_formats))
    return Decoder(preprocessing, limits, settings.decode_threads)


def serve_bare(flags: list[str]) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="overhead_servers.py bare")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--decode-arch", default=None, help="also decode each image for this model")
    args = parser.parse_args(flags)
    decoder = None if args.decode_arch is None else clipserve_decoder(args.decode_arch)
    # the same uvicorn as clipserve's (service/server.py): auto loop and HTTP parser, no access log
    uvicorn.run(bare_app(decoder), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("bare", "identity"):
        print(__doc__, file=sys.stderr)
        return 2
    return serve_bare(argv[1:]) if argv[0] == "bare" else serve_identity(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
