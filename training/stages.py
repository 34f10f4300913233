"""The hook through which multi-stage methods train in the one loop (SHIP: a VAE, then CoOp on
real + synthetic features). A learner opts in with two attributes:

    training_stages: ClassVar[tuple[str, ...]] = ("vae", "prompt")
    def enter_stage(self, name: str) -> None: ...   # set requires_grad, build what the stage needs

The loop runs the stages in order; each gets a fresh optimiser over the tensors that require grad
once the stage is entered, its own hyperparameters (METHOD_DEFAULTS[method]["stages"][name] under
the user's overrides) and its own epochs; the resumable state records (stage, epoch). Learners
without the hook run one stage, "main". The hook is duck-typed so models/ needs no change for it.
"""

from __future__ import annotations

from torch import nn

from training.hparams import MAIN_STAGE


def stage_names(learner: nn.Module) -> tuple[str, ...]:
    stages = tuple(getattr(learner, "training_stages", ()) or ())
    return stages or (MAIN_STAGE,)


def enter_stage(learner: nn.Module, name: str) -> None:
    hook = getattr(learner, "enter_stage", None)
    if callable(hook):
        hook(name)
