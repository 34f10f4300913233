"""The watched checkpoint folder: each top-level `<name>.safetensors` is a version of model `<name>`.

Polling (no extra dependency, works on network file systems): a file whose (mtime, size, inode)
changed since the last scan is loaded as a new version. Dot-files (the atomic writer's
`.<name>.<pid>.tmp`) and other suffixes are ignored; files in sub-folders are left to the admin
API; a symlink to a file outside the folder is refused. A refused file is retried only once it
changes again; a deleted file leaves its model serving.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from service.catalog.registry import NAME_PATTERN, Registry
from service.errors import ServiceError

log = logging.getLogger("clipserve")
SUFFIX = ".safetensors"


class Watcher:
    def __init__(self, directory: Path, registry: Registry, interval_s: float) -> None:
        self.directory, self.registry, self.interval_s = directory, registry, interval_s
        self.seen: dict[Path, tuple[int, int, int]] = {}
        self.errors: dict[str, str] = {}  # file name -> why it was refused (for /v1/models)
        self.task: asyncio.Task[None] | None = None

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
            if self.seen.get(path) == signature:
                continue
            self.seen[path] = signature
            await self._load(path)

    async def _load(self, path: Path) -> None:
        name = path.stem
        if not NAME_PATTERN.match(name):
            self.errors[path.name] = f"file stem is not a valid model name ({NAME_PATTERN.pattern})"
            log.warning("ignoring %s: %s", path, self.errors[path.name])
            return
        try:
            await self.registry.load(name, path, replace=True)
        except ServiceError as error:
            self.errors[path.name] = error.message
        else:
            self.errors.pop(path.name, None)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.scan()
            except OSError as error:  # the folder itself vanished or is unreadable: keep serving
                log.error("cannot scan %s: %s", self.directory, error)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
