"""Where labelled images come from: an image folder (one sub-folder per class) or a CSV manifest.

A dataset is a list of (path, label id) records plus, per label id, its key (folder name or CSV
label) and its display name (what goes into the prompt). Label ids follow a class-names file when
one is given (its line order), otherwise the sorted keys, so "sorted labels" (the base/new split)
is well defined for both sources.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
CLASSNAMES_FILE = "classnames.txt"  # looked up in a dataset's root when no file is given


class DatasetError(ValueError):
    """The dataset cannot be read as asked; the message says which file and why."""


@dataclass(frozen=True)
class ImageRecord:
    path: str
    label: int


@dataclass
class LabeledImages:
    """Images labelled 0..C-1; keys[c] is the folder/CSV label, classnames[c] the display name."""

    records: list[ImageRecord]
    keys: list[str]
    classnames: list[str]
    source: str
    name: str = field(default="")

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> list[int]:
        counts = [0] * len(self.keys)
        for record in self.records:
            counts[record.label] += 1
        return counts

    def select_classes(self, label_ids: Sequence[int]) -> LabeledImages:
        """Only the given classes, relabelled 0..m-1 in the given order (their own label space)."""
        mapping = {old: new for new, old in enumerate(label_ids)}
        records = [ImageRecord(r.path, mapping[r.label]) for r in self.records if r.label in mapping]
        return replace(
            self,
            records=records,
            keys=[self.keys[i] for i in label_ids],
            classnames=[self.classnames[i] for i in label_ids],
        )


def load_dataset(path: str | Path, classnames_file: str | Path | None = None) -> LabeledImages:
    """An image folder or a .csv manifest; class names from `classnames_file`, else from a
    `classnames.txt` in the dataset's root, else the keys themselves."""
    path = Path(path)
    if path.is_dir():
        pairs = _scan_folder(path)
        root = path
    elif path.suffix.lower() == ".csv" and path.is_file():
        pairs = _read_manifest(path)
        root = path.parent
    else:
        raise DatasetError(f"{path}: expected an image folder (one sub-folder per class) or a .csv manifest")
    if not pairs:
        raise DatasetError(f"{path}: no images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    if classnames_file is None and (root / CLASSNAMES_FILE).is_file():
        classnames_file = root / CLASSNAMES_FILE
    names = read_classnames(classnames_file) if classnames_file is not None else None
    keys = _ordered_keys({key for _, key in pairs}, names, path)
    label_of = {key: label for label, key in enumerate(keys)}
    records = [ImageRecord(p, label_of[key]) for p, key in pairs]
    classnames = [names[key] if names else key for key in keys]
    return LabeledImages(records, keys, classnames, source=str(path), name=_dataset_name(path))


def read_classnames(path: str | Path) -> dict[str, str]:
    """Lines "<key> <display name>" (Dassl's classnames.txt); a one-word line names itself.
    The file's line order is the label order."""
    names: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read class-names file ({error})") from error
    for number, line in enumerate(lines, 1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if parts[0] in names:
            raise DatasetError(f"{path}:{number}: class {parts[0]!r} listed twice")
        names[parts[0]] = parts[1].strip() if len(parts) > 1 else parts[0]
    return names


def _ordered_keys(present: set[str], names: dict[str, str] | None, path: Path) -> list[str]:
    if names is None:
        # Numeric CSV labels sort as numbers ("10" after "9"); anything else sorts as text.
        numeric = all(key.isdigit() for key in present)
        return sorted(present, key=int) if numeric else sorted(present)
    missing = sorted(present - set(names))
    if missing:
        raise DatasetError(f"{path}: classes missing from the class-names file: {missing[:10]}")
    # A dataset may hold a subset of the listed classes (ImageNet-A/-R); it keeps the file's order.
    return [key for key in names if key in present]


def _scan_folder(root: Path) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            log.warning("%s: class folder has no images; ignored", folder)
        pairs.extend((str(p), folder.name) for p in files)
    return pairs


def _read_manifest(path: Path) -> list[tuple[str, str]]:
    """Rows "path,label"; relative paths are relative to the manifest; a header row is optional."""
    pairs = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if not row or (number == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]):
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise DatasetError(f"{path}:{number}: expected 'path,label', got {row!r}")
            image = Path(row[0].strip())
            pairs.append((str(image if image.is_absolute() else path.parent / image), row[1].strip()))
    return pairs


def _dataset_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name
