"""Stream ordering of the GPU decode path (service/engine/device_decode.py).

torchvision.io.decode_jpeg(device="cuda") allocates its output images while the caller's stream is
current, then has nvJPEG write them from a private stream without waiting for the caller's stream;
and nvJPEG's hardware engine does not honour the order of work already queued on the stream it is
given either. The caching allocator hands a stream a block as soon as the host frees it, trusting
that later work on that stream is ordered after earlier reads. So a decode's outputs could land in
a block that the previous request's resize, queued but not yet run, still reads: silently wrong
pixels under concurrent load (upstream: pytorch/vision pull request 9606; meta-pytorch/torchcodec
pull request 1634 adds the same host barrier). Hence two streams:

- `decode`: only torchvision's allocations and nvJPEG's writes happen here, and the host drains it
  before each decode (on the decode thread; the event loop and the lanes never wait for it). Since
  nothing else runs on it, the wait is about nothing in the steady state: it is the guard.
- `prepare`: resize, the Pillow rows' upload and the stack run here, after the decode (a device-side
  wait). The decoded images are read here but were allocated on `decode`, so they are recorded as
  used by `prepare`: their blocks go back to `decode` only once the resize has run. The request's
  pixels get an event recorded here; the lane's stream waits on it (device_io.gather_pixels).

Without CUDA every member is a no-op and the decoder runs as written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from service.engine.device_io import hold_for, on_stream, record_ready, side_stream


class DecodeStreams:
    def __init__(self, device: torch.device) -> None:
        self.decode = side_stream(device)
        self.prepare = side_stream(device)

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        """Around torchvision.io.decode_jpeg: the decode stream, drained first."""
        if self.decode is not None:
            self.decode.synchronize()  # nothing queued may still read a block the decoder is handed
        with on_stream(self.decode):
            yield

    @contextlib.contextmanager
    def preparing(self, decoded: Sequence[torch.Tensor]) -> Iterator[None]:
        """Resize and stack on the prepare stream, ordered after the decode of `decoded`."""
        if self.prepare is not None and self.decode is not None:
            self.prepare.wait_stream(self.decode)
        hold_for(self.prepare, decoded)
        with on_stream(self.prepare):
            yield

    def ready(self) -> torch.cuda.Event | None:
        """The event a lane waits on: everything queued on the prepare stream so far."""
        return record_ready(self.prepare)
