"""Everything a request needs, built once at start-up (off the event loop) and torn down at exit.

`State` is what the app holds from the first moment: settings, metrics, readiness. `Runtime` exists
only once the backbone, the lanes and the models are loaded and warmed; until then every model
route answers 503 and /health/ready says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import torch

from models.backbone import Backbone, build_backbone
from models.zeroshot import resolve_templates
from service.catalog.lifecycle import Lifecycle
from service.catalog.registry import Registry
from service.catalog.text_cache import TextCache
from service.catalog.watcher import Watcher
from service.engine.backends import (
    ImageEncoder,
    TorchImageEncoder,
    resolve_decode_device,
    resolve_device,
    resolve_precision,
)
from service.engine.batcher import BatchConfig, Batcher
from service.engine.cuda_graphs import default_buckets, graphed_image_encoder
from service.engine.decode import DecodeLimits, Decoder, ImageDecoder, Pixels
from service.engine.device_decode import DeviceDecoder, tensor_decode_problem
from service.errors import NotReady
from service.heap import freeze_startup_heap
from service.metrics import Metrics, multiprocess_dir
from service.settings import ZEROSHOT_MODEL, Settings

log = logging.getLogger("clipserve")


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    backbone: Backbone
    decoder: ImageDecoder
    batcher: Batcher
    text: TextCache
    registry: Registry
    zeroshot_templates: tuple[str, ...]
    watcher: Watcher | None = None
    inflight: int = 0  # inference requests admitted and not yet answered (service.api.admission)
    sampler: asyncio.Task[None] | None = None  # GPU memory gauges, with several workers

    async def close(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()
            await asyncio.gather(self.sampler, return_exceptions=True)
        if self.watcher is not None:
            await self.watcher.close()
        await self.registry.close()
        await self.batcher.close()
        self.decoder.close()
        self.text.close()


@dataclass
class State:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    runtime: Runtime | None = None
    draining: bool = False
    error: str | None = None
    task: asyncio.Task[None] | None = None
    # When the service started (with several workers: the supervisor): the built-in zeroshot
    # model's `created`, the same in every worker.
    started: int = field(default_factory=lambda: int(time.time()))

    @property
    def ready(self) -> bool:
        return self.runtime is not None and not self.draining

    def require_runtime(self) -> Runtime:
        if self.runtime is None:
            raise NotReady(self.error or "models are still loading")
        return self.runtime

    def start(self) -> None:
        """Load in the background: /health/live answers at once, /health/ready once loaded."""
        self.task = asyncio.get_running_loop().create_task(self.load())

    async def load(self) -> None:
        try:
            runtime = await start_runtime(self.settings, self.metrics, self.started)
        except Exception as error:
            self.error = f"start-up failed: {error}"
            log.exception("start-up failed")
        else:
            frozen = freeze_startup_heap()  # before ready: full collections skip these (service/heap.py)
            self.runtime = runtime
            log.info("ready: %s (%d start-up objects frozen)", ", ".join(runtime.registry.active), frozen)

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.runtime is not None:
            await self.runtime.close()
            self.runtime = None


async def start_runtime(settings: Settings, metrics: Metrics, started: int) -> Runtime:
    templates = resolve_templates(settings.zeroshot_templates)
    backbone = await asyncio.to_thread(load_backbone, settings)
    encoder = await asyncio.to_thread(build_image_encoder, settings, backbone)  # ONNX export, CUDA graphs
    decoder = await asyncio.to_thread(build_decoder, settings, backbone)  # probes nvJPEG on CUDA
    config = BatchConfig(settings.max_batch_size, settings.max_wait_ms / 1000, settings.max_queue_images)
    metrics.queue_capacity.set(settings.max_queue_images)
    batcher = Batcher(encoder, backbone.preprocessing, backbone.device, config, metrics)
    text = TextCache(settings.text_cache_entries, metrics, backbone.device)
    life = Lifecycle(backbone, batcher, text, metrics)
    registry = Registry(life, settings.checkpoint_dir, settings.default_model, metrics, started)
    metrics.model_info.source = lambda: [
        (v.model, str(v.number), v.method, v.sha256) for v in registry.active.values()
    ]
    runtime = Runtime(
        settings=settings,
        metrics=metrics,
        backbone=backbone,
        decoder=decoder,
        batcher=batcher,
        text=text,
        registry=registry,
        zeroshot_templates=templates,
    )
    try:
        registry.add_zeroshot()
        await load_checkpoint_dir(runtime)
        registry.resolve(None)  # the default model exists (NotFound stops start-up)
        if settings.warmup:
            await warm_up(runtime)
        if runtime.watcher is not None:
            runtime.watcher.start(folder=settings.watch)
        if multiprocess_dir() is not None and backbone.device.type == "cuda":
            runtime.sampler = asyncio.get_running_loop().create_task(sample_gpu_memory(metrics))
    except BaseException:
        await runtime.close()
        raise
    return runtime


def load_backbone(settings: Settings) -> Backbone:
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    if settings.random_weights:
        log.warning(
            "pretrained=random: %s has RANDOM weights (seed %d); its answers are meaningless",
            settings.arch,
            settings.seed,
        )
    pretrained = None if settings.random_weights else settings.pretrained
    backbone = build_backbone(settings.arch, pretrained, precision, device, seed=settings.seed)
    log.info("backbone %s (%s) on %s in %s", settings.arch, backbone.identity.weights, device, precision)
    return backbone


def build_image_encoder(settings: Settings, backbone: Backbone) -> ImageEncoder:
    if settings.backend == "onnx":
        from service.engine.onnx_backend import build_onnx_encoder

        return build_onnx_encoder(settings, backbone)
    if settings.cuda_graphs and backbone.device.type == "cuda":
        buckets = settings.cuda_graph_buckets or default_buckets(settings.max_batch_size)
        return graphed_image_encoder(backbone, buckets)
    return TorchImageEncoder(backbone)


def build_decoder(settings: Settings, backbone: Backbone) -> ImageDecoder:
    """Pillow on CPU threads, or (decode_device cuda, or auto on a CUDA service) nvJPEG on the GPU
    with Pillow as the fallback for what nvJPEG cannot read."""
    limits = DecodeLimits(settings.max_image_pixels, tuple(settings.image_formats))
    on_cuda = backbone.device.type == "cuda"
    pillow = Decoder(backbone.preprocessing, limits, settings.decode_threads, pin_memory=on_cuda)
    decode_device = resolve_decode_device(settings.decode_device, backbone.device)
    if decode_device.type != "cuda":
        return pillow
    problem = tensor_decode_problem(decode_device)
    if problem is not None:
        if settings.decode_device == "cuda":
            raise RuntimeError(f"decode_device=cuda, but nvJPEG cannot decode here: {problem}")
        log.warning("nvJPEG cannot decode here (%s); decoding with Pillow on CPU threads", problem)
        return pillow
    log.info("decoding JPEGs with nvJPEG on %s; Pillow for other formats", decode_device)
    return DeviceDecoder(pillow, decode_device, settings.max_gpu_decode_pixels)


async def load_checkpoint_dir(runtime: Runtime) -> None:
    """Record new or changed top-level files in the state file, then apply the state file (a
    refused one stops start-up: there is no last good state to keep serving)."""
    settings = runtime.settings
    directory = settings.checkpoint_dir
    if directory is None:
        return
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint_dir {directory} is not a folder")
    watcher = Watcher(directory, runtime.registry, settings.watch_interval_s, settings.state_interval_s)
    runtime.watcher = watcher
    await runtime.watcher.scan()  # refused files are logged and listed; the rest serve
    await runtime.registry.sync(strict=True)


async def sample_gpu_memory(metrics: Metrics, interval_s: float = 2.0) -> None:
    """Each worker writes its own GPU memory figures, so that the sum any worker's /metrics
    reports is fresh (a scrape refreshes only the answering worker's)."""
    while True:
        metrics.sample_gpu_memory()
        await asyncio.sleep(interval_s)


async def warm_up(runtime: Runtime) -> None:
    """Run the shared lane at batch 1 and at max batch, and the text path once, before ready."""
    size = runtime.backbone.preprocessing.image_size
    target = torch.zeros(1, runtime.backbone.embed_dim, device=runtime.backbone.device)
    for batch in sorted({1, runtime.settings.max_batch_size}):
        pixels = torch.zeros(batch, 3, size, size, dtype=torch.uint8)
        await runtime.batcher.shared.warm(Pixels(pixels), target)
    zeroshot = runtime.registry.resolve(ZEROSHOT_MODEL)
    await asyncio.to_thread(zeroshot.encode_labels, ["warm-up"], runtime.zeroshot_templates)
