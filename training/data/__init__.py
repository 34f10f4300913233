"""Training data: sources (folders, CSV manifests, class names), few-shot sampling and the
base/new split, transforms and extra views, datasets that skip unreadable images, batch plans."""

from training.data.fewshot import FewShotRecord, base_new_split, sample_few_shot, select_subset
from training.data.sources import DatasetError, ImageRecord, LabeledImages, load_dataset, read_classnames

__all__ = [
    "DatasetError",
    "FewShotRecord",
    "ImageRecord",
    "LabeledImages",
    "base_new_split",
    "load_dataset",
    "read_classnames",
    "sample_few_shot",
    "select_subset",
]
