"""The model state: which file serves under which name and as which version, aliases, the default.

It has one home, the state file in the checkpoint folder (catalog/store.py); every worker process
applies it the same way (catalog/registry.py), so version numbers and names agree across workers
and survive restarts. This module is the data and its rules only: no files, no models.

    {"format": 1, "generation": 7,
     "models": {"pets": {"file": "versions/pets-v2.safetensors", "sha256": "9f2c...", "version": 3,
                         "created": 1764633600}},
     "aliases": {"prod": "pets"}, "default": "prod",
     "numbers": {"pets": 3},                        # last version number given per name, never reused
     "absorbed": {"flowers.safetensors": "1b7e..."}}  # top-level files already made versions

A transition (`with_version`, `without_model`, ...) returns a new state or raises the 4xx the admin
API answers with; `parse` refuses a file that is not a state this code can apply, naming the problem.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from service.errors import Conflict, Invalid, NotFound
from service.settings import ZEROSHOT_MODEL

FORMAT = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
SUFFIX = ".safetensors"


class StateError(ValueError):
    """The state file cannot be applied; the message says why and what to do."""


@dataclass(frozen=True)
class Entry:
    file: str  # relative to the checkpoint folder, '/'-separated
    sha256: str
    version: int
    created: int  # Unix seconds when this version was recorded (OpenAI's model `created`)


@dataclass(frozen=True)
class ModelState:
    models: dict[str, Entry] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    default: str | None = None  # None: the --default-model setting
    numbers: dict[str, int] = field(default_factory=dict)
    absorbed: dict[str, str] = field(default_factory=dict)
    generation: int = 0

    # -- transitions -------------------------------------------------------------------------------

    def with_version(self, name: str, file: str, sha256: str, *, exists: bool | None, now: int) -> ModelState:
        """`file` as the next version of `name` (recorded at `now`); exists=True: a swap, False: a
        new name, None: either."""
        check_name(name)
        if name in self.aliases:
            raise Conflict(f"{name!r} is already an alias")
        if exists is False and name in self.models:
            raise Conflict(f"{name!r} is already a model")
        if exists is True and name not in self.models:
            raise NotFound(f"no model named {name!r}; load it first")
        number = self.numbers.get(name, 0) + 1
        return replace(
            self,
            models={**self.models, name: Entry(file, sha256, number, now)},
            numbers={**self.numbers, name: number},
        )

    def absorb(self, file: str, sha256: str, *, now: int) -> ModelState:
        """A new or changed top-level file becomes the next version of the model named by its stem."""
        if self.absorbed.get(file) == sha256:
            return self  # already a version (another worker recorded it, or before a restart)
        state = self.with_version(PurePosixPath(file).stem, file, sha256, exists=None, now=now)
        return replace(state, absorbed={**state.absorbed, file: sha256})

    def without_model(self, name: str, fallback_default: str) -> ModelState:
        if name == ZEROSHOT_MODEL:
            raise Conflict(f"the built-in {ZEROSHOT_MODEL} model cannot be unloaded")
        if name not in self.models:
            raise NotFound(f"no model named {name!r}")
        if self.target(self.default or fallback_default) == name or name in self.aliases.values():
            raise Conflict(f"{name!r} is the default or the target of an alias; point those elsewhere first")
        return replace(self, models={k: v for k, v in self.models.items() if k != name})

    def with_default(self, name: str) -> ModelState:
        if not self.knows(name):  # "" would mean "the default" when resolved
            raise NotFound(f"no model or alias named {name!r}")
        return replace(self, default=name)

    def with_alias(self, alias: str, target: str) -> ModelState:
        check_name(alias)
        if alias in self.models:
            raise Conflict(f"{alias!r} is a model name; an alias cannot shadow it")
        if target != ZEROSHOT_MODEL and target not in self.models:
            raise NotFound(f"no model named {target!r}")
        return replace(self, aliases={**self.aliases, alias: target})

    def without_alias(self, alias: str, fallback_default: str) -> ModelState:
        if alias not in self.aliases:
            raise NotFound(f"no alias named {alias!r}")
        if (self.default or fallback_default) == alias:
            raise Conflict(f"{alias!r} is the default model; set another default first")
        return replace(self, aliases={k: v for k, v in self.aliases.items() if k != alias})

    # -- reading -----------------------------------------------------------------------------------

    def knows(self, name: str) -> bool:
        return name == ZEROSHOT_MODEL or name in self.models or name in self.aliases

    def target(self, name: str) -> str:
        return self.aliases.get(name, name)


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name) or name == ZEROSHOT_MODEL:
        raise Invalid(f"model name {name!r} must match {NAME_PATTERN.pattern} and not be {ZEROSHOT_MODEL!r}")


# -- the file's text ---------------------------------------------------------------------------------


def encode(state: ModelState) -> bytes:
    document = {
        "format": FORMAT,
        "generation": state.generation,
        "models": {name: vars(entry) for name, entry in sorted(state.models.items())},
        "aliases": dict(sorted(state.aliases.items())),
        "default": state.default,
        "numbers": dict(sorted(state.numbers.items())),
        "absorbed": dict(sorted(state.absorbed.items())),
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def parse(raw: bytes) -> ModelState:
    """The state in `raw`, or StateError naming the first problem."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StateError(f"not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise StateError("not a JSON object")
    if document.get("format") != FORMAT:
        raise StateError(f"format {document.get('format')!r} is not {FORMAT}, the one this build reads")
    models, aliases = _mapping(document, "models"), _mapping(document, "aliases")
    numbers, absorbed = _mapping(document, "numbers"), _mapping(document, "absorbed")
    default = document.get("default")
    state = ModelState(
        models={name: _entry(name, value) for name, value in models.items()},
        aliases={alias: _text(target, f"alias {alias!r}") for alias, target in aliases.items()},
        default=None if default is None else _text(default, "default"),
        numbers={name: _count(value, f"numbers.{name}") for name, value in numbers.items()},
        absorbed={file: _sha(value, f"absorbed.{file}") for file, value in absorbed.items()},
        generation=_count(document.get("generation", 0), "generation"),
    )
    _check_references(state)
    return state


def _check_references(state: ModelState) -> None:
    for name, entry in state.models.items():
        if not NAME_PATTERN.match(name) or name == ZEROSHOT_MODEL:
            raise StateError(f"model name {name!r} is not valid")
        if not 1 <= entry.version <= state.numbers.get(name, 0):
            raise StateError(f"model {name!r}: version {entry.version} must be >= 1 and <= numbers.{name}")
    for alias, target in state.aliases.items():
        if alias in state.models or not NAME_PATTERN.match(alias):
            raise StateError(f"alias {alias!r} is not a valid alias name or shadows a model")
        if target != ZEROSHOT_MODEL and target not in state.models:
            raise StateError(f"alias {alias!r} points at {target!r}, which is not a model in the file")
    if state.default is not None and not state.knows(state.default):
        raise StateError(f"default {state.default!r} is neither a model nor an alias in the file")


def _mapping(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise StateError(f"{key!r} must be an object")
    return value


def _entry(name: str, value: Any) -> Entry:
    if not isinstance(value, dict) or set(value) != {"file", "sha256", "version", "created"}:
        raise StateError(f"model {name!r} must be an object with exactly file, sha256, version and created")
    file = _text(value["file"], f"model {name!r} file")
    path = PurePosixPath(file)
    if path.is_absolute() or ".." in path.parts or path.suffix != SUFFIX or path.name.startswith("."):
        raise StateError(f"model {name!r}: file {file!r} must be a *{SUFFIX} path inside the folder")
    sha256 = _sha(value["sha256"], f"model {name!r} sha256")
    version = _count(value["version"], f"model {name!r} version")
    return Entry(file, sha256, version, _count(value["created"], f"model {name!r} created"))


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise StateError(f"{what} must be a non-empty string")
    return value


def _sha(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SHA256_PATTERN.match(value):
        raise StateError(f"{what} must be 64 lowercase hex digits")
    return value


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateError(f"{what} must be a whole number >= 0")
    return value
