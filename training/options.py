"""Options declared once, as dataclass fields that carry their own help text; the command line
(`add_options`), the values a command hands on (`values_from_args`) and the part of a run's
config.json that defines its result (`fingerprinted`) are all derived from those fields.

The types say what the command line accepts: `bool` is a --name/--no-name pair, `Literal[...]`
gives the choices, `X | None` an optional value, `tuple[float, float]` two values, `list[str]` and
`tuple[str, ...]` one or more. Nothing here (nor in the modules that declare options with it)
imports torch or open_clip, so `clipserve <command> --help` stays quick.
"""

from __future__ import annotations

import argparse
import json
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, field, fields
from types import UnionType
from typing import Any


def option(
    help: str,
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    flag: str | None = None,
    group: str | None = None,
    fingerprint: bool = False,
    cli: bool = True,
    expand: type | None = None,
    from_cli: Callable[[Any], Any] | None = None,
    cli_default: Any = MISSING,
    **argparse_kwargs: Any,
) -> Any:
    """A dataclass field declared with everything the command line needs.

    flag: the option's name when it is not --<field-name> ("positional" for a positional one).
    fingerprint: the value decides the run's result, so it is part of the run's identity.
    expand: the field is a dict of overrides of this dataclass's fields, one option per field
        (default None: "not given").
    from_cli: turns the parsed value into the field's value.
    cli_default: the command line's default when it differs in form from the field's (an
        appending option starts from a list that `from_cli` turns into the field's dict).
    """
    metadata = {
        "help": help,
        "flag": flag,
        "group": group,
        "fingerprint": fingerprint,
        "cli": cli,
        "expand": expand,
        "from_cli": from_cli,
        "cli_default": cli_default,
        "argparse": argparse_kwargs,
    }
    return field(default=default, default_factory=default_factory, metadata=metadata)


def add_options(
    parser: argparse.ArgumentParser, cls: type, group_titles: Iterable[str] = (), ungrouped: str | None = None
) -> None:
    """One argparse option per field of `cls` (in field order), in groups titled by `group`
    (groups named in `group_titles` come first, in that order); fields without a group go under
    `ungrouped` (default: argparse's "options")."""
    groups: dict[str, Any] = {t: parser.add_argument_group(t) for t in group_titles}
    if ungrouped is not None and ungrouped not in groups:
        groups[ungrouped] = parser.add_argument_group(ungrouped)
    _add_fields(parser, cls, groups, groups[ungrouped] if ungrouped else parser, overrides_only=False)


def _add_fields(
    parser: argparse.ArgumentParser,
    cls: type,
    groups: dict[str, Any],
    ungrouped: Any,
    overrides_only: bool,
) -> None:
    hints = typing.get_type_hints(cls)
    for item in fields(cls):
        meta = item.metadata
        if not meta.get("cli", True) or "help" not in meta:
            continue
        title = meta.get("group")
        if title is not None and title not in groups:
            groups[title] = parser.add_argument_group(title)
        target = groups[title] if title is not None else ungrouped
        if meta["expand"] is not None:
            _add_fields(parser, meta["expand"], groups, target, overrides_only=True)
            continue
        flags, kwargs = _argument(item, hints[item.name], overrides_only)
        target.add_argument(*flags, **kwargs)


def _argument(item: Field, hint: Any, overrides_only: bool) -> tuple[list[str], dict[str, Any]]:
    meta = item.metadata
    default = None if overrides_only else _default(item)
    if meta["cli_default"] is not MISSING:
        default = meta["cli_default"]
    kwargs: dict[str, Any] = {"help": meta["help"], **_type_arguments(hint), **meta["argparse"]}
    if kwargs.get("action") == "append":
        kwargs.pop("nargs", None)  # one value per occurrence
    flag = meta["flag"] or "--" + item.name.replace("_", "-")
    if flag == "positional":
        return [item.name], kwargs
    kwargs["dest"] = item.name
    if default is MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
        empty = isinstance(default, list | tuple | dict) and not default
        shown = not (default is None or default is False or empty)
        if not overrides_only and shown and "%(default)" not in kwargs["help"]:
            kwargs["help"] += " (default: %(default)s)"
    return [flag], kwargs


def _default(item: Field) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return MISSING


def _type_arguments(hint: Any) -> dict[str, Any]:
    """argparse's type/nargs/choices/action for a field's annotation."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
    hint = options[0]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is typing.Literal:
        return {"choices": args}
    if origin in (list, tuple):
        element = args[0]
        nargs: Any = len(args) if origin is tuple and args[-1] is not Ellipsis else "+"
        return {"nargs": nargs, **_type_arguments(element)}
    if hint is str or hint is Any or origin is dict:  # dicts arrive as KEY=VALUE text (from_cli)
        return {}
    return {"type": hint}


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, UnionType)


def values_from_args(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The field values a parsed command line gives (`from_cli` applied, expanded dicts of the
    overrides that were given)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for item in fields(cls):
        meta = item.metadata
        if not meta.get("cli", True) or "help" not in meta:
            continue
        if meta["expand"] is not None:
            given = values_from_args(meta["expand"], args)
            values[item.name] = {k: v for k, v in given.items() if v is not None}
            continue
        value = getattr(args, item.name)
        if isinstance(value, list) and typing.get_origin(hints[item.name]) is tuple:
            value = tuple(value)
        values[item.name] = meta["from_cli"](value) if meta["from_cli"] is not None else value
    return values


def fingerprinted(obj: Any) -> dict[str, Any]:
    """The fields of `obj` declared with fingerprint=True: the options that decide its result."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.metadata.get("fingerprint")}


def default_of(cls: type, name: str) -> Any:
    """A field's declared default, for other dataclasses that repeat the option (one source)."""
    value = _default(next(f for f in fields(cls) if f.name == name))
    if value is MISSING:
        raise ValueError(f"{cls.__name__}.{name} has no default")
    return value


def choices_of(cls: type, name: str) -> tuple[Any, ...]:
    """The values a Literal-typed field accepts."""
    hint = typing.get_type_hints(cls)[name]
    options = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
    return typing.get_args(options[0])


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """["n_ctx=4", "ctx_init=a photo of a", "class_specific=true"] -> typed values (JSON where it
    parses: numbers, true/false, null; text otherwise)."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values
