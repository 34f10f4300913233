"""The watched checkpoint folder, and its state file.

- Folder: each top-level `<name>.safetensors` is a version of model `<name>`. Polling (no extra
  dependency, works on network file systems): a file whose (mtime, size, inode) changed since the
  last scan is loaded and recorded in the state file as the next version of its model, unless the
  state already records these bytes (another worker did, or this one before a restart). Dot-files
  (the atomic writer's `.<name>.<pid>.tmp`) and other suffixes are ignored; files in sub-folders
  are left to the admin API; a symlink to a file outside the folder is refused. A refused file is
  retried only once it changes again; a deleted file leaves its model serving.
- State file: polled every `state_interval_s` (one small read), and applied when its bytes change
  (catalog/registry.py). This is how every worker process follows the admin API of any of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from models.backbone import file_sha256
from service.catalog.lifecycle import Loaded
from service.catalog.registry import Registry
from service.catalog.state import NAME_PATTERN
from service.errors import ServiceError
from service.settings import ZEROSHOT_MODEL

log = logging.getLogger("clipserve")
SUFFIX = ".safetensors"
Signature = tuple[int, int, int]


class Watcher:
    def __init__(
        self, directory: Path, registry: Registry, interval_s: float, state_interval_s: float
    ) -> None:
        self.directory, self.registry = directory, registry
        self.interval_s, self.state_interval_s = interval_s, state_interval_s
        self.seen: dict[Path, Signature] = {}
        self.errors: dict[str, str] = {}  # file name -> why it was refused (for /v1/models)
        self.pending: dict[Path, tuple[Signature, Loaded]] = {}  # loaded, but not recorded yet
        self.tasks: list[asyncio.Task[None]] = []

    def candidates(self) -> list[Path]:
        return sorted(
            path
            for path in self.directory.iterdir()
            if path.suffix == SUFFIX
            and not path.name.startswith(".")
            and path.is_file()
            and self.inside(path)
        )

    def inside(self, path: Path) -> bool:
        """A symlink is followed only when its target is inside the folder too."""
        if path.resolve().is_relative_to(self.directory.resolve()):
            return True
        if path.name not in self.errors:
            self.errors[path.name] = "a link to a file outside checkpoint_dir; refused"
            log.warning("ignoring %s: links outside %s", path, self.directory)
        return False

    async def scan(self) -> None:
        for path in self.candidates():
            try:
                stat = path.stat()
            except FileNotFoundError:  # replaced or removed between listing and stat
                continue
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if self.seen.get(path) != signature:
                await self._absorb(path, signature)

    async def _absorb(self, path: Path, signature: Signature) -> None:
        """Load a new or changed file and record it; a file that cannot be loaded is refused until
        it changes, one whose record failed (say, the state file is corrupt) is recorded later."""
        pending = self.pending.get(path)
        if pending is None or pending[0] != signature:
            if not NAME_PATTERN.match(path.stem) or path.stem == ZEROSHOT_MODEL:
                self._refuse(path, signature, f"file stem is not a valid model name ({NAME_PATTERN.pattern})")
                return
            sha256 = await asyncio.to_thread(file_sha256, path)
            if self.registry.absorbed(path.name, sha256):
                self._done(path, signature)
                return
            try:
                loaded = await self.registry.life.load(path, swap=path.stem in self.registry.active)
            except ServiceError as error:
                self._refuse(path, signature, error.message)
                return
            pending = self.pending[path] = (signature, loaded)
        try:
            await self.registry.absorb(path.name, pending[1])
        except ServiceError as error:  # not recorded: tried again at the next scan
            if self.errors.get(path.name) != error.message:
                log.warning("%s not recorded: %s", path.name, error.message)
            self.errors[path.name] = error.message
            return
        self._done(path, signature)

    def _refuse(self, path: Path, signature: Signature, reason: str) -> None:
        self.errors[path.name] = reason
        self.seen[path] = signature
        self.pending.pop(path, None)
        log.warning("ignoring %s: %s", path, reason)

    def _done(self, path: Path, signature: Signature) -> None:
        self.errors.pop(path.name, None)
        self.seen[path] = signature
        self.pending.pop(path, None)

    def start(self, folder: bool) -> None:
        """Follow the state file; and the folder's files when `folder` (the `watch` setting)."""
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self._every(self.state_interval_s, self.registry.sync)))
        if folder:
            self.tasks.append(loop.create_task(self._every(self.interval_s, self.scan)))

    async def _every(self, seconds: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except OSError as error:  # the folder itself vanished or is unreadable: keep serving
                log.error("cannot read %s: %s", self.directory, error)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
