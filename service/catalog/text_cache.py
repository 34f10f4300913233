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

Streams (CUDA), so that 1,000 new labels being encoded hold up no one else's images:
- the text stream: the text thread encodes labels (and plain texts) and copies out their rows here,
  then records one event per encoding; a cached row keeps that event.
- the matrix stream: the event loop assembles matrices here (stacks, stored-row selects). It waits
  on the events of the rows it stacks, so only a request that needs a label still being encoded
  waits for that encoding; one whose rows are all cached or stored does not queue behind it.
Each matrix is handed out as a ClassMatrix with the event recorded after its stack; a lane waits on
that event alone (service/engine/device_io.py).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from service.engine.device_io import (
    ClassMatrix,
    follow_default_stream,
    hold_for,
    on_stream,
    record_ready,
    side_stream,
    wait_for,
)
from service.errors import Invalid
from service.metrics import Metrics

if TYPE_CHECKING:
    from service.catalog.versions import Version

R = TypeVar("R")
Key = tuple[str, str, str]  # (version uid, template key, label)
MatrixKey = tuple[str, str, tuple[str, ...]]  # (version uid, template key, labels in order)
Row = tuple[torch.Tensor, "torch.cuda.Event | None"]  # [D] on the device; the event of its encoding


class TextCache:
    def __init__(self, capacity: int, metrics: Metrics, device: torch.device | None = None) -> None:
        self.capacity = capacity
        self.metrics = metrics
        self.entries: OrderedDict[Key, Row] = OrderedDict()
        self.pending: dict[Key, asyncio.Future[Row]] = {}
        # [C, D] on the device, and how many of its labels are LRU labels (for the hit counter)
        self.matrices: OrderedDict[MatrixKey, tuple[ClassMatrix, int]] = OrderedDict()
        self.matrix_rows = 0  # rows held in self.matrices, at most `capacity`
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="text")
        self.text_stream = side_stream(device) if device is not None else None
        self.matrix_stream = side_stream(device) if device is not None else None
        if device is not None:  # once: the text tower's weights and the stored rows, written at load
            follow_default_stream(self.text_stream, device)
            follow_default_stream(self.matrix_stream, device)

    async def class_matrix(
        self, version: Version, labels: Sequence[str], templates: tuple[str, ...]
    ) -> ClassMatrix:
        """[C, D] normalised class embeddings for `labels`, in order, with their ready event."""
        if version.precomputed_covers(labels, templates):
            with on_stream(self.matrix_stream):
                return ClassMatrix(version.precomputed_rows(labels), record_ready(self.matrix_stream))
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
        found: dict[Key, Row] = {}
        for key in keys:  # trained classes: the stored rows, as they are (written at load)
            stored = version.stored_row(key[2], templates)
            if stored is not None:
                found[key] = (stored, None)
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
        return self._stack([found[key] for key in keys]), len(lru_keys)

    def _stack(self, rows: list[Row]) -> ClassMatrix:
        """[C, D] on the matrix stream, after the encodings that wrote these rows (device-side)."""
        encoded = [row for row, event in rows if event is not None]
        with on_stream(self.matrix_stream):
            wait_for(self.matrix_stream, {id(e): e for _, e in rows if e is not None}.values())
            hold_for(self.matrix_stream, encoded)  # an LRU row evicted meanwhile keeps its block
            matrix = torch.stack([row for row, _ in rows])  # [C, D]
            return ClassMatrix(matrix, record_ready(self.matrix_stream))

    async def run(self, work: Callable[..., R], *args: Any) -> R:
        """Run `work` on the text thread and stream, the one thread that drives the text tower
        (plain-text embeddings and token counts for /v1/embeddings queue behind label encodings)."""
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, self._on_text_stream, work, *args
        )

    def _on_text_stream(self, work: Callable[..., R], *args: Any) -> R:
        with on_stream(self.text_stream):
            return work(*args)

    def _encode(
        self, version: Version, labels: list[str], templates: tuple[str, ...]
    ) -> tuple[list[torch.Tensor], torch.cuda.Event | None]:
        """On the text thread and stream: [D] rows of `labels` (own copies, so that the LRU evicts
        rows, not whole batches) and the event recorded after them."""
        with on_stream(self.text_stream):
            matrix = version.encode_labels(labels, templates)  # [n, D]
            rows = [row.clone() for row in matrix.unbind()]
            return rows, record_ready(self.text_stream)

    def _count(self, keys: list[Key]) -> None:
        hits = sum(key in self.entries for key in keys)
        self.metrics.cache_hits.inc(hits)
        self.metrics.cache_misses.inc(len(keys) - hits)

    def _start_encoding(self, version: Version, keys: list[Key], templates: tuple[str, ...]) -> None:
        loop = asyncio.get_running_loop()
        futures = {key: loop.create_future() for key in keys}
        self.pending.update(futures)
        labels = [key[2] for key in keys]
        work = loop.run_in_executor(self.executor, self._encode, version, labels, templates)

        def finish(done: asyncio.Future[tuple[list[torch.Tensor], torch.cuda.Event | None]]) -> None:
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
            rows, event = done.result()  # len(keys) rows [D]
            for key, row in zip(keys, rows, strict=True):
                futures[key].set_result((row, event))
                if not version.freed:
                    self._store(key, (row, event))

        work.add_done_callback(finish)

    def _store(self, key: Key, row: Row) -> None:
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
