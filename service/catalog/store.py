"""The state file on disk: read it, and write it atomically under a lock that every writer takes.

- `clipserve-state.json` in the checkpoint folder. Readers never lock: a write goes to a dot-file
  and is renamed into place (fsync before and after), so a reader sees the old file or the new one.
- Writers (the admin API of any worker, and any worker recording a new top-level file) hold an
  exclusive `flock` on `.clipserve-state.lock` from reading the current file to renaming the new
  one, so two workers never both write a change made from the same old state. The lock is taken
  without blocking the event loop (non-blocking attempts); the kernel drops it if its holder dies.
  flock works across processes on one machine; on a network file system it needs one that
  implements it (NFSv4 does).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

STATE_FILE = "clipserve-state.json"
LOCK_FILE = ".clipserve-state.lock"
LOCK_TIMEOUT_S = 10.0


class StateFile:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self.lock_path = directory / LOCK_FILE

    def read(self) -> bytes | None:
        """The file's bytes, or None when there is none."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def written_at(self) -> float | None:
        """The file's modification time (seconds since the epoch), or None when there is none."""
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the writers' lock (raises OSError where the folder is read-only, TimeoutError when
        another writer holds it for longer than LOCK_TIMEOUT_S)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.lock_path} held by another writer") from None
                    await asyncio.sleep(0.005)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def write(self, raw: bytes) -> None:
        """Replace the file atomically with `raw` (caller holds the lock)."""
        temp = self.directory / f".{STATE_FILE}.{os.getpid()}.tmp"
        try:
            with temp.open("wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
