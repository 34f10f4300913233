"""The baseline of the end-to-end benchmark: the CLIP server users write today, kept deliberately
plain. FastAPI + open_clip + Pillow, one forward pass per request, the labels' text embeddings
computed again on every call, a sync route on FastAPI's thread pool. It answers the same multipart
request as clipserve (`images` files, `labels` fields) with the same response shape, so one load
generator drives both.

    python bench/baseline_server.py --port 8100 --arch ViT-B-32 --pretrained random --device cuda
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Annotated, Any

import open_clip
import torch
import uvicorn
from fastapi import FastAPI, File, Form, UploadFile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models.backbone  # noqa: F401  (registers clipserve's tiny/demo configs with open_clip)


def create_app(arch: str, pretrained: str | None, device: str) -> FastAPI:
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    autocast_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    app = FastAPI()

    @app.get("/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/classify")
    def classify(
        images: Annotated[list[UploadFile], File()], labels: Annotated[list[str], Form()]
    ) -> dict[str, Any]:
        pixels = torch.stack([preprocess(Image.open(image.file).convert("RGB")) for image in images])
        tokens = tokenizer([f"a photo of a {label}." for label in labels])
        with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=autocast_dtype):
            image_features = model.encode_image(pixels.to(device))
            text_features = model.encode_text(tokens.to(device))
            image_features = image_features / image_features.norm(dim=-1, keepdim=True)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            cosine = (image_features @ text_features.T).float()
            scores = (100.0 * cosine).softmax(dim=-1)
        values, indices = scores.topk(min(5, len(labels)), dim=-1)
        return {
            "results": [
                {"predictions": [{"label": labels[j], "score": v} for v, j in zip(vs, js, strict=True)]}
                for vs, js in zip(values.tolist(), indices.tolist(), strict=True)
            ]
        }

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--pretrained", default="random", help="an open_clip tag, a weights file, or random")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    pretrained = None if args.pretrained == "random" else args.pretrained
    app = create_app(args.arch, pretrained, args.device)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
