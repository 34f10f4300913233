"""Data sources, few-shot sampling, the base/new split, transforms and batch plans."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from models.backbone import Preprocessing
from tests.training.conftest import CLASSES, CORRUPT, make_image_folder
from training.data import DatasetError, base_new_split, load_dataset, sample_few_shot, select_subset
from training.data.batches import epoch_batches, rank_slice
from training.data.dataset import Sample, Skipped, TrainImages, collate
from training.data.transforms import train_transform, view_transforms

PRE = Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_folder_classes_are_sorted_folder_names(image_folder: Path) -> None:
    data = load_dataset(image_folder)
    assert data.keys == sorted(CLASSES)
    assert data.classnames == data.keys
    assert data.counts() == [6, 7, 6, 6]  # green_square also holds the corrupt file


def test_classnames_file_sets_order_and_display_names(image_folder: Path, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("red_square a red square\nblue_square a blue square\ngreen_square\nyellow_square y\n")
    data = load_dataset(image_folder, names)
    assert data.keys == ["red_square", "blue_square", "green_square", "yellow_square"]
    assert data.classnames == ["a red square", "a blue square", "green_square", "y"]
    names.write_text("red_square red\n")
    with pytest.raises(DatasetError, match="missing from the class-names file"):
        load_dataset(image_folder, names)


def test_csv_manifest_with_header_relative_paths_and_numeric_labels(
    image_folder: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "train.csv"
    rows = ["path,label"] + [
        f"{image_folder}/red_square/img_00{i}.png,{10 if i % 2 else 9}" for i in range(4)
    ]
    manifest.write_text("\n".join(rows) + "\n")
    data = load_dataset(manifest)
    assert data.keys == ["9", "10"]  # numeric labels sort as numbers
    assert [r.label for r in data.records] == [0, 1, 0, 1]
    (tmp_path / "bad.csv").write_text("only-one-column\n")
    with pytest.raises(DatasetError, match="expected 'path,label'"):
        load_dataset(tmp_path / "bad.csv")


def test_few_shot_is_deterministic_skips_unreadable_and_records_it(image_folder: Path) -> None:
    data = load_dataset(image_folder)
    sampled, record = sample_few_shot(data, shots=6, seed=1)
    again, _ = sample_few_shot(data, shots=6, seed=1)
    assert sampled.records == again.records
    assert sampled.counts() == [6, 6, 6, 6]  # green: 7 files, 1 corrupt -> still 6 readable
    assert record.unreadable == [str(image_folder / CORRUPT)]
    assert str(image_folder / CORRUPT) not in {r.path for r in sampled.records}
    two, _ = sample_few_shot(data, shots=2, seed=1)
    other, _ = sample_few_shot(data, shots=2, seed=2)
    assert two.records != other.records
    assert record.to_dict()["images"][0] == [sampled.records[0].path, sampled.records[0].label]


def test_few_shot_draws_exactly_k_when_a_class_has_more(tmp_path: Path) -> None:
    data = load_dataset(make_image_folder(tmp_path, per_class=9, corrupt=False))
    files = {label: {r.path for r in data.records if r.label == label} for label in range(len(data.keys))}
    for shots in (1, 4, 8):
        sampled, record = sample_few_shot(data, shots=shots, seed=3)
        assert sampled.counts() == [shots] * len(CLASSES) and not record.short_classes
        for label, available in files.items():
            drawn = [r.path for r in sampled.records if r.label == label]
            assert len(set(drawn)) == shots and set(drawn) <= available


def test_each_view_is_made_from_its_own_raw_decoded_image(image_folder: Path) -> None:
    records = [r for r in load_dataset(image_folder).records if not r.path.endswith("corrupt.jpg")][:4]
    received: list[Image.Image] = []

    def probe(image: Image.Image) -> torch.Tensor:
        received.append(image)
        return TF.to_tensor(image.resize((4, 4)))

    dataset = TrainImages(records, train_transform(PRE, "rrc_flip", (0.08, 1.0)), {"probe": probe})
    samples = [dataset[(i, 0)] for i in range(len(records))]
    for record, image in zip(records, received, strict=True):
        with Image.open(record.path) as raw:
            assert image.size == raw.size and image.tobytes() == raw.convert("RGB").tobytes()
    batch = collate(samples)  # type: ignore[arg-type]
    for i, sample in enumerate(samples):
        assert isinstance(sample, Sample) and torch.equal(batch.views["probe"][i], sample.views["probe"])


def test_base_new_split_takes_the_first_half_rounded_up(image_folder: Path) -> None:
    assert base_new_split(5) == ([0, 1, 2], [3, 4])
    data = load_dataset(image_folder)
    base, new = select_subset(data, "base"), select_subset(data, "new")
    assert base.keys == sorted(CLASSES)[:2] and new.keys == sorted(CLASSES)[2:]
    assert {r.label for r in new.records} == {0, 1}  # relabelled into its own label space


def test_augmentation_depends_only_on_seed_epoch_and_index(image_folder: Path) -> None:
    data = load_dataset(image_folder)
    dataset = TrainImages(data.records, train_transform(PRE, "rrc_flip", (0.08, 1.0)), seed=3)
    first, again, later = dataset[(0, 0)], dataset[(0, 0)], dataset[(0, 1)]
    assert isinstance(first, Sample) and isinstance(again, Sample) and isinstance(later, Sample)
    assert torch.equal(first.image, again.image)
    assert not torch.equal(first.image, later.image)
    assert first.image.shape == (3, 32, 32)


def test_extra_views_come_from_the_raw_image_and_bad_files_are_skipped(image_folder: Path) -> None:
    data = load_dataset(image_folder)
    views = view_transforms(("moco", "augmix"), PRE)
    dataset = TrainImages(data.records, train_transform(PRE, "none", (0.08, 1.0)), views)
    sample = dataset[(0, 0)]
    assert isinstance(sample, Sample)
    assert set(sample.views) == {"moco", "augmix"}
    assert all(v.shape == (3, 32, 32) for v in sample.views.values())
    corrupt = next(i for i, r in enumerate(data.records) if r.path.endswith("corrupt.jpg"))
    assert isinstance(dataset[(corrupt, 0)], Skipped)
    with pytest.raises(ValueError, match="unknown extra views"):
        view_transforms(("nope",), PRE)


def test_batch_plan_is_global_and_ranks_split_it() -> None:
    batches = epoch_batches(10, 4, seed=1, epoch=0)
    assert [len(b) for b in batches] == [4, 4]  # incomplete last batch dropped (Dassl)
    assert epoch_batches(10, 4, 1, 0) == batches and epoch_batches(10, 4, 1, 1) != batches
    assert epoch_batches(3, 4, 1, 0)[0] != [] and len(epoch_batches(3, 4, 1, 0)) == 1
    for batch in ([0, 1, 2, 3], [5, 6, 7]):
        parts = [rank_slice(batch, rank, 2) for rank in range(2)]
        assert parts[0] + parts[1] == batch
