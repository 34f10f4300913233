"""Class matrices for requests: precomputed checkpoint embeddings, else a bounded LRU of labels.

- A checkpoint's own classes use the embeddings stored in the checkpoint, as they are (also
  when a request mixes them with other labels); they are not LRU entries.
- Any other label is encoded once with the version's text side (its learned prompt, or the
  zero-shot templates) through the one text path, and kept in an LRU keyed by
  (version, templates, label). Concurrent requests for the same new label wait for one encoding.
- The assembled [C, D] matrix of a whole label list is kept too (LRU, bounded in rows), keyed by
  (version, templates, labels in order): a client that sends the same 1,000 labels with every
  request gets its matrix from one lookup instead of 1,000 lookups and a stack (measured: ~5 ms
  per request on the development CPU, for labels that were all cached).
- Image-conditioned methods never come here: their text side depends on the image.

Streams (CUDA): label encoding (on the text thread) and every class-matrix operation of the event
loop (row copies, stacks, index selects) run on the text stream, and each matrix handed out is a
ClassMatrix with the event recorded after its last write. Lanes wait on that event alone, so 1,000
new labels being encoded hold up no image traffic (service/engine/device_io.py).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from service.engine.device_io import ClassMatrix, follow_default_stream, on_stream, record_ready, side_stream
from service.errors import Invalid
from service.metrics import Metrics

if TYPE_CHECKING:
    from service.catalog.versions import Version

R = TypeVar("R")
Key = tuple[str, str, str]  # (version uid, template key, label)
MatrixKey = tuple[str, str, tuple[str, ...]]  # (version uid, template key, labels in order)


class TextCache:
    def __init__(self, capacity: int, metrics: Metrics, device: torch.device | None = None) -> None:
        self.capacity = capacity
        self.metrics = metrics
        self.entries: OrderedDict[Key, torch.Tensor] = OrderedDict()  # [D] rows on the device
        self.pending: dict[Key, asyncio.Future[torch.Tensor]] = {}
        # [C, D] on the device, and how many of its labels are LRU labels (for the hit counter)
        self.matrices: OrderedDict[MatrixKey, tuple[ClassMatrix, int]] = OrderedDict()
        self.matrix_rows = 0  # rows held in self.matrices, at most `capacity`
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="text")
        self.stream = side_stream(device) if device is not None else None  # CUDA: the text stream
        if device is not None:
            follow_default_stream(self.stream, device)  # once: the text tower's weights, written at load

    async def class_matrix(
        self, version: Version, labels: Sequence[str], templates: tuple[str, ...]
    ) -> ClassMatrix:
        """[C, D] normalised class embeddings for `labels`, in order, with their ready event."""
        if version.precomputed_covers(labels, templates):
            with on_stream(self.stream):
                return ClassMatrix(version.precomputed_rows(labels), record_ready(self.stream))
        template_key = "\x1f".join(templates)
        matrix_key = (version.uid, template_key, tuple(labels))
        cached = self.matrices.get(matrix_key)
        if cached is not None:
            self.matrices.move_to_end(matrix_key)
            self.metrics.cache_hits.inc(cached[1])
            return cached[0]
        matrix, lru_labels = await self._assemble(version, labels, templates, template_key)
        if not version.freed:
            self._store_matrix(matrix_key, matrix, lru_labels)
        return matrix

    async def _assemble(
        self, version: Version, labels: Sequence[str], templates: tuple[str, ...], template_key: str
    ) -> tuple[ClassMatrix, int]:
        """[C, D] from stored checkpoint rows, cached label rows and (encoded now) new labels; and
        how many of the labels are LRU labels (not stored rows)."""
        keys = [(version.uid, template_key, label) for label in labels]
        found: dict[Key, torch.Tensor] = {}
        for key in keys:  # trained classes: the stored rows, as they are
            stored = version.stored_row(key[2], templates)
            if stored is not None:
                found[key] = stored
        lru_keys = [key for key in keys if key not in found]
        self._count(lru_keys)
        for key in dict.fromkeys(keys):
            row = self.entries.get(key)
            if row is not None and key not in found:
                self.entries.move_to_end(key)
                found[key] = row
        missing = [key for key in dict.fromkeys(keys) if key not in found and key not in self.pending]
        if missing:
            self._start_encoding(version, missing, templates)
        # Being encoded, by this request or an earlier one; snapshot before the first await.
        waiting = {key: self.pending[key] for key in dict.fromkeys(keys) if key not in found}
        for key, future in waiting.items():
            found[key] = await asyncio.shield(future)
        with on_stream(self.stream):  # after the rows' encodings, in the text stream's order
            matrix = torch.stack([found[key] for key in keys])  # [C, D]
            return ClassMatrix(matrix, record_ready(self.stream)), len(lru_keys)

    async def run(self, work: Callable[..., R], *args: Any) -> R:
        """Run `work` on the text thread and stream, the one thread that drives the text tower
        (plain-text embeddings and token counts for /v1/embeddings queue behind label encodings)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._on_stream, work, *args)

    def _on_stream(self, work: Callable[..., R], *args: Any) -> R:
        with on_stream(self.stream):
            return work(*args)

    def _count(self, keys: list[Key]) -> None:
        hits = sum(key in self.entries for key in keys)
        self.metrics.cache_hits.inc(hits)
        self.metrics.cache_misses.inc(len(keys) - hits)

    def _start_encoding(self, version: Version, keys: list[Key], templates: tuple[str, ...]) -> None:
        loop = asyncio.get_running_loop()
        futures = {key: loop.create_future() for key in keys}
        self.pending.update(futures)
        labels = [key[2] for key in keys]
        work = loop.run_in_executor(self.executor, self._on_stream, version.encode_labels, labels, templates)

        def finish(done: asyncio.Future[torch.Tensor]) -> None:
            for key in keys:
                self.pending.pop(key, None)
            error = done.exception()
            if error is not None:
                if isinstance(error, ValueError):  # TextTooLongError, labels a method cannot take
                    error = Invalid(str(error))
                for future in futures.values():
                    future.set_exception(error)
                    future.exception()  # retrieved here: waiters that timed out are not warned about
                return
            matrix = done.result()  # [len(keys), D]
            with on_stream(self.stream):  # copies queued after the encoding, on its stream
                rows = [matrix[i].clone() for i in range(len(keys))]
            for key, row in zip(keys, rows, strict=True):
                futures[key].set_result(row)
                if not version.freed:
                    self._store(key, row)

        work.add_done_callback(finish)

    def _store(self, key: Key, row: torch.Tensor) -> None:
        self.entries[key] = row
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
        self.metrics.cache_entries.set(len(self.entries))

    def _store_matrix(self, key: MatrixKey, matrix: ClassMatrix, lru_labels: int) -> None:
        if len(matrix) > self.capacity or key in self.matrices:  # a concurrent request stored it
            return
        self.matrices[key] = (matrix, lru_labels)
        self.matrix_rows += len(matrix)
        while self.matrix_rows > self.capacity:
            _, (evicted, _) = self.matrices.popitem(last=False)
            self.matrix_rows -= len(evicted)

    def drop_version(self, uid: str) -> None:
        for key in [key for key in self.entries if key[0] == uid]:
            del self.entries[key]
        for matrix_key in [key for key in self.matrices if key[0] == uid]:
            self.matrix_rows -= len(self.matrices.pop(matrix_key)[0])
        self.metrics.cache_entries.set(len(self.entries))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
