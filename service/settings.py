"""All service settings in one pydantic-settings class: env vars CLIPSERVE_<NAME>, or CLI flags.

Precedence: CLI flag > environment > default. `clipserve serve --help` lists every field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.defaults import DEFAULT_ARCH, DEFAULT_PRETRAINED

RANDOM_WEIGHTS = "random"
ZEROSHOT_MODEL = "zeroshot"
# Secrets come from the environment only (never a flag: it would show in `ps`) and are never logged.
SECRET_FIELDS = {"admin_token", "api_keys", "metrics_token"}
# 2**26: 32 full-HD images (66.4 M pixels) of a request still decode on the GPU
DEFAULT_GPU_DECODE_PIXELS = 1 << 26
# ONNX Runtime's CUDA provider takes host arrays: every batch would go device -> host -> device and
# back, outside the lane's stream. IO binding on device buffers could avoid that, but it cannot be
# tested on the GPU machine (its onnxruntime is CPU only), so backend=onnx is CPU only, refused up
# front (docs/FAST_PATH.md).
ONNX_CPU_ONLY = (
    "backend=onnx runs on the CPU only: on CUDA, ONNX Runtime would copy every batch to the host and "
    "back. On a GPU use backend=torch (bf16 with CUDA graphs, the faster path); for ONNX Runtime set "
    "device=cpu"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLIPSERVE_", extra="forbid")

    # -- network
    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=8000, description="TCP port")

    # -- backbone
    arch: str = Field(
        default=DEFAULT_ARCH,
        description="open_clip architecture; -quickgelu variants match OpenAI weights (training default)",
    )
    pretrained: str = Field(
        default=DEFAULT_PRETRAINED,
        description="open_clip pretrained tag, a local weights file, or 'random' (meaningless answers; "
        "for the tiny test models)",
    )
    seed: int = Field(default=0, description="seed of random weights (only with pretrained=random)")
    device: str = Field(default="auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1' ...")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="'auto' = bf16 on CUDA, fp32 on CPU"
    )
    backend: Literal["torch", "onnx"] = Field(
        default="torch",
        description="image-encoder backend; onnx: CPU only (device=cpu, or auto without a GPU)",
    )
    onnx_path: Path | None = Field(
        default=None, description="exported image encoder for backend=onnx; exported at start-up when missing"
    )

    # -- checkpoints
    checkpoint_dir: Path | None = Field(
        default=None,
        description="folder of *.safetensors checkpoints; each file is a model named by its stem",
    )
    watch: bool = Field(default=True, description="load new or replaced files of checkpoint_dir")
    watch_interval_s: float = Field(default=1.0, gt=0, description="seconds between folder scans")
    default_model: str = Field(default=ZEROSHOT_MODEL, description="model used when a request names none")
    zeroshot_templates: str = Field(
        default="photo", description="template set of the built-in zeroshot model when a request gives none"
    )
    admin_token: SecretStr | None = Field(
        default=None, description="bearer token for /admin routes; unset = admin disabled (env only)"
    )

    # -- batching and backpressure
    max_batch_size: int = Field(default=32, ge=1, description="images per image-encoder pass")
    max_wait_ms: float = Field(default=5.0, ge=0, description="how long a batch waits to fill")
    max_queue_images: int = Field(default=512, ge=1, description="images queued per lane before 429")
    max_inflight_requests: int = Field(
        default=256,
        ge=1,
        description="inference requests (/classify, /, /v1/embeddings, /v2 infer) admitted at once; more "
        "get 429 at once (bounds the work queued ahead of the batcher: HTTP parsing and decoding, when "
        "those and not the encoder are the limit)",
    )
    request_timeout_s: float = Field(default=10.0, gt=0, description="per-request deadline; past it 504")

    # -- request limits
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1, description="request body size (413)")
    max_images: int = Field(default=32, ge=1, description="images per request (413)")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="pixels per image (413; bombs)")
    max_labels: int = Field(default=1000, ge=1, description="labels per request (422)")
    max_label_chars: int = Field(default=200, ge=1, description="characters per label (422)")
    max_templates: int = Field(default=100, ge=1, description="templates per request (422)")
    image_formats: Annotated[list[str], NoDecode] = Field(
        default=["JPEG", "PNG", "WEBP", "BMP", "GIF"], description="accepted Pillow formats (others 415)"
    )
    default_top_k: int = Field(default=5, ge=1, description="predictions per image when top_k is not given")

    # -- caches and threads
    text_cache_entries: int = Field(
        default=100_000,
        ge=1,
        description="LRU size of label embeddings; the cached class matrices of whole label lists hold "
        "at most as many rows again",
    )
    decode_threads: int = Field(default=4, ge=1, description="Pillow decode threads")

    # -- GPU fast path (each applies only when the service runs on CUDA)
    decode_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="where JPEGs are decoded and resized: 'auto' = nvJPEG on the GPU when the service runs "
        "on CUDA, Pillow on CPU threads otherwise; other formats always use Pillow",
    )
    max_gpu_decode_pixels: int = Field(
        default=DEFAULT_GPU_DECODE_PIXELS,
        ge=1,
        description="pixels of one request that nvJPEG decodes (smallest images first); the request's "
        "other JPEGs are decoded by Pillow at reduced size (JPEG draft), bounding GPU memory per request",
    )
    cuda_graphs: bool = Field(
        default=True,
        description="replay the image encoder as CUDA graphs, one per batch bucket (torch backend on CUDA)",
    )
    cuda_graph_buckets: Annotated[list[int], NoDecode] = Field(
        default=[],
        description="batch sizes captured as CUDA graphs, e.g. '1,8,32'; empty = 1, 2, 4, ... and "
        "max_batch_size; a batch runs in the smallest bucket that holds it",
    )

    # -- lifecycle
    warmup: bool = Field(default=True, description="run every lane once before reporting ready")
    drain_grace_s: float = Field(
        default=2.0, ge=0, description="after SIGTERM: not ready but still serving, so balancers move away"
    )
    drain_timeout_s: float = Field(default=30.0, ge=0, description="then in-flight requests get this long")

    # -- front door: API keys, image URLs, CORS, logs (docs/OPERATIONS.md)
    api_keys: SecretStr | None = Field(
        default=None,
        description="comma-separated API keys for the inference routes; unset (and no api_keys_file) = "
        "open (env only)",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="file of API keys, one per line ('#' comments); re-read when it changes",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token that /metrics requires; unset = /metrics open (env only)"
    )
    image_url_allow: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="hosts, IP addresses or networks, or URL prefixes that JSON requests may name as "
        "image URLs, e.g. 'images.example.com,https://cdn.example.com/pub/'; empty = image URLs off. "
        "Private, loopback and link-local addresses only when an entry names the address or network",
    )
    image_url_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1, description="bytes per fetched image, counted while it streams (413)"
    )
    image_url_connect_timeout_s: float = Field(default=2.0, gt=0, description="connect timeout per URL")
    image_url_timeout_s: float = Field(
        default=5.0, gt=0, description="total time to fetch one URL, redirects included"
    )
    image_url_max_redirects: int = Field(default=3, ge=0, description="redirects followed per URL")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[], description="origins allowed by CORS, e.g. 'https://app.example.com'; empty = CORS off"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="'json': one JSON object per log line (access log included)"
    )
    process_metrics_interval_s: float = Field(
        default=5.0, gt=0, description="seconds between updates of the process CPU/memory/open-files metrics"
    )

    # -- worker processes and the state file
    workers: int = Field(
        default=1,
        ge=1,
        description="HTTP worker processes on the same port and device, each with its own batcher, lanes "
        "and CUDA graphs; a dead worker is replaced (docs/OPERATIONS.md: how to choose N, CUDA MPS)",
    )
    state_interval_s: float = Field(
        default=0.25,
        gt=0,
        description="seconds between reads of checkpoint_dir's state file (clipserve-state.json), which "
        "records admin changes; every worker applies it, so this bounds how far workers lag",
    )

    @field_validator("image_formats", mode="before")
    @classmethod
    def _split_formats(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.replace(",", " ").split() if part]
        if isinstance(value, list):
            return [str(part).upper() for part in value]
        return value

    @field_validator("image_url_allow", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("backend")
    @classmethod
    def _onnx_on_the_cpu_only(cls, value: str, info: ValidationInfo) -> str:
        # device=auto is resolved at start-up, where service.engine.onnx_backend refuses it on a GPU
        if value == "onnx" and str(info.data.get("device", "")).startswith("cuda"):
            raise ValueError(f"{ONNX_CPU_ONLY} (device={info.data['device']!r})")
        return value

    @field_validator("cuda_graph_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("cuda_graph_buckets")
    @classmethod
    def _positive_buckets(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError(f"batch sizes must be >= 1, got {value}")
        return sorted(set(value))

    @field_validator("admin_token", "api_keys", "metrics_token", mode="before")
    @classmethod
    def _empty_token_disables_admin(cls, value: object) -> object:
        # CLIPSERVE_ADMIN_TOKEN="" (a templated env var left blank) must mean "admin off", not
        # "admin on with a token no one can send".
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def random_weights(self) -> bool:
        return self.pretrained == RANDOM_WEIGHTS
