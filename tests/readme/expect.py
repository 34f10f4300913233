"""The answers the README shows, as checkable patterns.

After every curl in README.md a line `# -> [STATUS] [SHAPE]` shows its answer: STATUS a number
(omitted: any 2xx), SHAPE JSON in which `...` stands for "more of the same": as an object member
(other keys may follow), as an array element (more elements may follow) or as a value (anything).
A pattern may stop early (`[{"label": "red star", ...`); what it leaves open is open. Strings,
booleans and null must be equal; a number shown matches any number (scores differ by model).
Without `...`, an object must have exactly the keys shown and an array exactly as many elements.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ANY = object()  # `...` as a value
TOKEN = re.compile(
    r'\s*(\.\.\.|[{}\[\]:,]|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)'
)


@dataclass
class Pattern:
    kind: str  # "object" | "array" | "string" | "number" | "literal" | "any"
    value: Any = None
    open: bool = False  # object/array: `...` given, or the text stopped before it closed


@dataclass
class Expectation:
    status: int | None
    shape: Pattern | None

    def problems(self, status: int, body: str) -> list[str]:
        found = (
            []
            if self.status is None or self.status == status
            else [f"status {status}, README shows {self.status}"]
        )
        if self.status is None and not 200 <= status < 300:
            found.append(f"status {status}, README shows a success")
        if self.shape is not None:
            try:
                answer = json.loads(body)
            except json.JSONDecodeError:
                return [*found, f"answer is not JSON: {body[:200]!r}"]
            found.extend(mismatches(self.shape, answer, "$"))
        return found


def parse_expectation(text: str) -> Expectation:
    """'# -> 201 {"name": "pets", ...}' -> Expectation(201, <pattern>)"""
    rest = text.strip().removeprefix("#").strip().removeprefix("->").strip()
    status_match = re.match(r"(\d{3})\b\s*", rest)
    status = int(status_match.group(1)) if status_match else None
    rest = rest[status_match.end() :] if status_match else rest
    return Expectation(status, parse_pattern(rest) if rest else None)


def parse_pattern(text: str) -> Pattern:
    tokens = tokenize(text)
    pattern, position = _value(tokens, 0)
    if position != len(tokens):
        raise ValueError(f"unexpected {tokens[position]!r} in {text!r}")
    return pattern


def tokenize(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text.rstrip()):
        match = TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"cannot read {text[position : position + 20]!r} in {text!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _value(tokens: list[str], i: int) -> tuple[Pattern, int]:
    token = tokens[i]
    if token == "{":
        return _object(tokens, i + 1)
    if token == "[":
        return _array(tokens, i + 1)
    if token == "...":
        return Pattern("any"), i + 1
    if token.startswith('"'):
        return Pattern("string", json.loads(token)), i + 1
    if token in ("true", "false", "null"):
        return Pattern("literal", json.loads(token)), i + 1
    return Pattern("number"), i + 1


def _object(tokens: list[str], i: int) -> tuple[Pattern, int]:
    members: dict[str, Pattern] = {}
    pattern = Pattern("object", members)
    while i < len(tokens) and tokens[i] != "}":
        if tokens[i] == "...":
            pattern.open, i = True, i + 1
        else:
            key = json.loads(tokens[i])
            if i + 2 >= len(tokens) or tokens[i + 1] != ":":
                raise ValueError(f"expected ':' after {key!r}")
            members[key], i = _value(tokens, i + 2)
        if i < len(tokens) and tokens[i] == ",":
            i += 1
    if i >= len(tokens):
        pattern.open = True  # the text stopped before the object closed
        return pattern, i
    return pattern, i + 1


def _array(tokens: list[str], i: int) -> tuple[Pattern, int]:
    items: list[Pattern] = []
    pattern = Pattern("array", items)
    while i < len(tokens) and tokens[i] != "]":
        if tokens[i] == "...":
            pattern.open, i = True, i + 1
        else:
            item, i = _value(tokens, i)
            items.append(item)
        if i < len(tokens) and tokens[i] == ",":
            i += 1
    if i >= len(tokens):
        pattern.open = True
        return pattern, i
    return pattern, i + 1


def mismatches(pattern: Pattern, answer: Any, where: str) -> list[str]:
    if pattern.kind == "any":
        return []
    if pattern.kind == "number":
        ok = isinstance(answer, int | float) and not isinstance(answer, bool)
        return [] if ok else [f"{where}: {answer!r} is not a number"]
    if pattern.kind in ("string", "literal"):
        return (
            []
            if answer == pattern.value and type(answer) is type(pattern.value)
            else [f"{where}: {answer!r} != {pattern.value!r}"]
        )
    if pattern.kind == "array":
        return _array_mismatches(pattern, answer, where)
    return _object_mismatches(pattern, answer, where)


def _array_mismatches(pattern: Pattern, answer: Any, where: str) -> list[str]:
    if not isinstance(answer, list):
        return [f"{where}: {type(answer).__name__}, README shows an array"]
    items: list[Pattern] = pattern.value
    if len(answer) < len(items) or (not pattern.open and len(answer) != len(items)):
        return [
            f"{where}: {len(answer)} elements, README shows {len(items)}{' or more' if pattern.open else ''}"
        ]
    return [p for i, item in enumerate(items) for p in mismatches(item, answer[i], f"{where}[{i}]")]


def _object_mismatches(pattern: Pattern, answer: Any, where: str) -> list[str]:
    if not isinstance(answer, dict):
        return [f"{where}: {type(answer).__name__}, README shows an object"]
    members: dict[str, Pattern] = pattern.value
    found = [f"{where}: no key {key!r}" for key in members if key not in answer]
    if not pattern.open and set(answer) - set(members):
        found.append(f"{where}: keys {sorted(set(answer) - set(members))} not shown (add ', ...')")
    return found + [
        p
        for key, item in members.items()
        if key in answer
        for p in mismatches(item, answer[key], f"{where}.{key}")
    ]
