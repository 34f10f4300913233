"""Prompt-learning methods, one file each, behind the interface in `base.py`.

METHODS is the one registry: the training CLI, the service and the contract tests all read it.
"""

from models.prompts.base import Batch, LearnerConfig, PromptLearner, UnsupportedBackboneError
from models.prompts.cocoop import CoCoOp, CoCoOpConfig
from models.prompts.coop import CoOp, CoOpConfig
from models.prompts.gopro import GOPro, GOProConfig
from models.prompts.maple import MaPLe, MaPLeConfig
from models.prompts.ship import SHIP, SHIPConfig

METHODS: dict[str, type[PromptLearner]] = {
    CoOp.method: CoOp,
    CoCoOp.method: CoCoOp,
    MaPLe.method: MaPLe,
    GOPro.method: GOPro,
    SHIP.method: SHIP,
}

__all__ = [
    "METHODS",
    "SHIP",
    "Batch",
    "CoCoOp",
    "CoCoOpConfig",
    "CoOp",
    "CoOpConfig",
    "GOPro",
    "GOProConfig",
    "LearnerConfig",
    "MaPLe",
    "MaPLeConfig",
    "PromptLearner",
    "SHIPConfig",
    "UnsupportedBackboneError",
]
