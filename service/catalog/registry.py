"""Names -> active versions, as the state file says: the models, their aliases, the default.

Every change (the admin API; a new or replaced top-level file in the folder) is made to the state
file first and then applied here; every worker process polls the file and applies what changed. So
all workers serve the same versions under the same numbers, and a restart comes back to the same
state (catalog/state.py says what the file holds, catalog/store.py how it is written).

- `change(edit)`: under the writers' lock, read the file, apply `edit` (a ModelState transition,
  which may refuse with a 4xx), write it, switch. The versions the new state needs are loaded
  beforehand, outside the lock; if the file changed meanwhile, the edit is made again on the new one.
- `sync()`: the file changed: load the versions it names that this process does not have, check
  their sha256, then switch to all of it at once. A file that is corrupt, names a missing file or
  one whose bytes changed, or a checkpoint that does not load, is refused as a whole: the last good
  state keeps serving and /v1/models says why; it is tried again every RETRY_REFUSED_S, so
  restoring a missing file is enough. (At start-up there is no last good state: start-up
  fails with the same message.)
- A switch happens between two requests' steps; requests already running finish on their version
  (catalog/lifecycle.py owns each version's life).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.catalog.lifecycle import Lifecycle, Loaded
from service.catalog.state import Entry, ModelState, StateError, encode, parse
from service.catalog.store import STATE_FILE as STATE_NAME
from service.catalog.store import StateFile
from service.catalog.versions import Version
from service.errors import Conflict, NotFound, ServiceError
from service.metrics import Metrics
from service.settings import ZEROSHOT_MODEL

log = logging.getLogger("clipserve")
Key = tuple[str, str]  # (file relative to the folder, sha256)
Edit = Callable[[ModelState], ModelState]
ATTEMPTS = 5
RETRY_REFUSED_S = 5.0
UNREAD = b"\x00unread"  # never the bytes of a file: the first sync always reads


class Registry:
    def __init__(
        self, life: Lifecycle, directory: Path | None, default_model: str, metrics: Metrics, started: int
    ) -> None:
        self.life, self.directory, self.metrics = life, directory, metrics
        self.started = started  # the zeroshot model's `created`
        self.store = StateFile(directory) if directory is not None else None
        self.fallback_default = default_model  # --default-model, until the state names one
        self.state = ModelState()  # the state applied here: the last good one
        self.files: dict[str, str] = {}  # model -> the file its active version was applied from
        self.seen: bytes | None = UNREAD  # the file's bytes at the last sync or write
        self.refusal: str | None = None  # why the file's current contents are refused
        self.refused_at = 0.0
        self.lock = asyncio.Lock()  # one change or sync at a time in this process

    # -- requests --------------------------------------------------------------------------------

    @property
    def active(self) -> dict[str, Version]:
        return self.life.active

    @property
    def retired(self) -> list[Version]:
        return self.life.retired

    @property
    def aliases(self) -> dict[str, str]:
        return self.state.aliases

    @property
    def default(self) -> str:
        return self.state.default or self.fallback_default

    def resolve(self, name: str | None) -> Version:
        name = name or self.default
        version = self.active.get(self.state.target(name))
        if version is None:
            known = ", ".join(sorted([*self.active, *self.state.aliases]))
            raise NotFound(f"unknown model {name!r}; loaded: {known}")
        return version

    @contextmanager
    def acquire(self, name: str | None) -> Iterator[Version]:
        """The version `name` has now, held until the request answers."""
        with self.life.hold(self.resolve(name).model) as version:
            yield version

    # -- admin -------------------------------------------------------------------------------------

    def add_zeroshot(self) -> None:
        self.life.activate(ZEROSHOT_MODEL, self.life.zeroshot(), 1, self.started)

    async def load(self, name: str, path: Path, replace: bool) -> Version:
        """`path` as a new model (`replace=False`) or the next version of one (a swap)."""
        file = self.relative(path)
        await self.sync()  # changes another worker made a moment ago count for the check below
        self.state.with_version(name, file, "", exists=replace, now=0)  # refuse a wrong name before loading
        loaded = await self.life.load(path, swap=replace)
        edit: Edit = lambda state: state.with_version(name, file, loaded.sha256, exists=replace, now=now())  # noqa: E731
        await self.change(edit, {(file, loaded.sha256): loaded})
        return self.active[name]

    async def unload(self, name: str) -> None:
        await self.change(lambda state: state.without_model(name, self.fallback_default))

    async def set_default(self, name: str) -> None:
        await self.change(lambda state: state.with_default(name))

    async def set_alias(self, alias: str, target: str) -> None:
        await self.change(lambda state: state.with_alias(alias, target))

    async def remove_alias(self, alias: str) -> None:
        await self.change(lambda state: state.without_alias(alias, self.fallback_default))

    def absorbed(self, file: str, sha256: str) -> bool:
        return self.state.absorbed.get(file) == sha256

    async def absorb(self, file: str, loaded: Loaded) -> None:
        """A new or replaced top-level file, loaded by the watcher: the next version of its stem.
        Where the folder is read-only the version is numbered here only (not recorded)."""
        edit: Edit = lambda state: state.absorb(file, loaded.sha256, now=now())  # noqa: E731
        await self.change(edit, {(file, loaded.sha256): loaded}, record_optional=True)

    def relative(self, path: Path) -> str:
        assert self.directory is not None, "files are named inside checkpoint_dir"
        return path.resolve().relative_to(self.directory.resolve()).as_posix()

    # -- the state file ------------------------------------------------------------------------------

    async def change(
        self, edit: Edit, preloaded: dict[Key, Loaded] | None = None, record_optional: bool = False
    ) -> None:
        if self.store is None:
            raise Conflict("admin changes are recorded in checkpoint_dir's state file; set checkpoint_dir")
        loaded = dict(preloaded or {})
        async with self.lock:
            for _ in range(ATTEMPTS):
                try:
                    needed = await self._change_once(self.store, edit, loaded)
                except OSError as error:
                    if not record_optional:
                        raise Conflict(f"cannot record the change in {STATE_NAME}: {error}") from error
                    log.warning("cannot record in %s (%s); applied here only", self.store.path, error)
                    await self._change_in_memory(edit, loaded)
                    return
                if not needed:
                    return
                loaded |= await self._load_or_conflict(needed)
            raise Conflict(f"{self.store.path.name} kept changing while this change was prepared; retry")

    async def _change_once(self, store: StateFile, edit: Edit, loaded: dict[Key, Loaded]) -> dict[Key, Entry]:
        """One attempt under the writers' lock: {} when done, else the versions still to load."""
        async with store.locked():
            raw = store.read()
            current = self.state if raw is None else self._parse_current(raw)  # gone: the last good
            new = edit(current)
            needed = self._needed(new, loaded)
            if needed:
                return needed
            if new != current or raw is None:
                new = replace(new, generation=current.generation + 1)
                raw = encode(new)
                await asyncio.to_thread(store.write, raw)
            self._switch(new, loaded)
            self.seen = raw
            self._measure_lag(store)
            return {}

    async def _change_in_memory(self, edit: Edit, loaded: dict[Key, Loaded]) -> None:
        new = edit(self.state)
        loaded |= await self._load_or_conflict(self._needed(new, loaded))
        self._switch(new, loaded)

    async def sync(self, strict: bool = False) -> None:
        """Apply the file if it changed since this process last read or wrote it. `strict` (at
        start-up, when there is no last good state to keep): a refusal raises StateError."""
        if self.store is None:
            return
        async with self.lock:
            raw = self.store.read()
            if raw == self.seen and not self._retry_due():
                return
            had_file, fresh, self.seen = self.seen not in (None, UNREAD), raw != self.seen, raw
            try:
                state = self._parse_synced(raw, had_file)
                loaded = await self._load_entries(self._needed(state, {}))
                self._check_default(state)
            except StateError as error:
                self._refuse(str(error), counted=fresh)
                if strict:
                    raise StateError(f"{self.store.path} refused: {error}") from error
                return
            self._switch(state, loaded)
            self.metrics.state_updates.labels(result="ok").inc()
            self._measure_lag(self.store)

    def _parse_current(self, raw: bytes) -> ModelState:
        try:
            return parse(raw)
        except StateError as error:
            raise Conflict(f"{STATE_NAME} is refused ({error}); fix or remove it first") from error

    def _parse_synced(self, raw: bytes | None, had_file: bool) -> ModelState:
        if raw is not None:
            return parse(raw)
        if had_file:
            raise StateError("the file was removed; the next change writes it again from the state in memory")
        return self.state  # none yet, or a folder where it cannot be written: nothing to apply

    def _needed(self, state: ModelState, loaded: dict[Key, Loaded]) -> dict[Key, Entry]:
        """Entries whose version is neither active here nor among `loaded`."""
        return {
            (entry.file, entry.sha256): entry
            for name, entry in state.models.items()
            if not self._is_active(name, entry) and (entry.file, entry.sha256) not in loaded
        }

    def _is_active(self, name: str, entry: Entry) -> bool:
        version = self.active.get(name)
        if version is None or self.files.get(name) != entry.file:
            return False
        return (version.number, version.sha256) == (entry.version, entry.sha256)

    async def _load_entries(self, needed: dict[Key, Entry]) -> dict[Key, Loaded]:
        """Load what a state names; StateError when a file is missing, other bytes, or refused."""
        assert self.directory is not None
        loaded: dict[Key, Loaded] = {}
        for key, entry in needed.items():
            path = self.directory / entry.file
            if not path.resolve().is_relative_to(self.directory.resolve()):
                raise StateError(f"{entry.file} leads out of the checkpoint folder")
            if not path.is_file():
                raise StateError(f"{entry.file} is missing; restore it, or point its model elsewhere")
            try:
                loaded[key] = await self.life.load(path)
            except ServiceError as error:
                raise StateError(f"{entry.file} does not load: {error.message}") from error
            if loaded[key].sha256 != entry.sha256:
                raise StateError(
                    f"{entry.file} is not the file recorded (sha256 {entry.sha256[:12]}... recorded, "
                    f"{loaded[key].sha256[:12]}... now); write new versions to new files"
                )
        return loaded

    async def _load_or_conflict(self, needed: dict[Key, Entry]) -> dict[Key, Loaded]:
        try:
            return await self._load_entries(needed)
        except StateError as error:
            raise Conflict(f"the state cannot be applied: {error}") from error

    def _check_default(self, state: ModelState) -> None:
        """A state read from the file must resolve the default; a change needs no check here (the
        transitions refuse to remove the default, and at start-up the top-level files are recorded
        one by one before the default's own file may be: service.runtime checks it afterwards)."""
        default = state.default or self.fallback_default
        target = state.target(default)
        if target != ZEROSHOT_MODEL and target not in state.models:
            raise StateError(f"the default model {default!r} is neither a model nor an alias")

    def _switch(self, state: ModelState, loaded: dict[Key, Loaded]) -> None:
        """Make `state` the one served (no await: requests see all of it or none of it)."""
        for name, entry in state.models.items():
            if not self._is_active(name, entry):
                self.life.activate(name, loaded[(entry.file, entry.sha256)], entry.version, entry.created)
                self.files[name] = entry.file
        for name in [name for name in self.active if name != ZEROSHOT_MODEL and name not in state.models]:
            self.life.deactivate(name)
            del self.files[name]
        self.state, self.refusal = state, None
        self.metrics.state_refused.set(0)

    def _measure_lag(self, store: StateFile) -> None:
        """From the file's last write to this process serving it (the worker that wrote it: ~0)."""
        written = store.written_at()
        if written is not None:
            self.metrics.state_lag.set(max(0.0, time.time() - written))

    def _retry_due(self) -> bool:
        """A refused file is tried again now and then, unchanged: its missing file may be back."""
        return self.refusal is not None and time.monotonic() - self.refused_at >= RETRY_REFUSED_S

    def _refuse(self, reason: str, counted: bool) -> None:
        self.refused_at = time.monotonic()
        if counted:  # a new file's contents, not a retry of the same
            self.metrics.state_updates.labels(result="refused").inc()
        self.metrics.state_refused.set(1)
        if reason != self.refusal:
            log.error("%s refused: %s; the last good state keeps serving", STATE_NAME, reason)
        self.refusal = reason

    def describe(self) -> dict[str, Any]:
        return {
            "default": self.default,
            "aliases": dict(sorted(self.state.aliases.items())),
            "data": [self.active[name].describe() for name in sorted(self.active)],
            "retired_in_flight": [{**v.ref(), "requests": v.refs} for v in self.retired],
            "state": {"file": STATE_NAME, "generation": self.state.generation, "refused": self.refusal},
        }

    async def close(self) -> None:
        await self.life.close()


def now() -> int:
    """Unix seconds: when a version is recorded (its `created`, the same in every worker)."""
    return int(time.time())
