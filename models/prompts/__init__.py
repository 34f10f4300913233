"""Prompt-learning methods, one file each, behind the interface in `base.py`.

METHODS is the one registry: the training CLI, the service and the contract tests all read it.
"""

from models.prompts.base import Batch, LearnerConfig, PromptLearner
from models.prompts.coop import CoOp, CoOpConfig

METHODS: dict[str, type[PromptLearner]] = {
    CoOp.method: CoOp,
}

__all__ = ["METHODS", "Batch", "CoOp", "CoOpConfig", "LearnerConfig", "PromptLearner"]
