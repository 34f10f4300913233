"""The schedule rule of `make bench-methods` (bench/methods_settings.py): the papers' optimizer
steps at each K on the world's training set, capped; restated here by hand from the papers'
schedules (CoOp IJCV'22 scripts, CoCoOp/MaPLe/GOPro/SHIP configs as training/hparams.py holds them)."""

from __future__ import annotations

import pytest

from bench import methods_settings as settings
from bench.methods_settings import FULL, QUICK, method_hparams, planned_steps, schedule
from bench.methods_steps import FIRST_RUN, SHOT_COLUMNS, optimizer_steps

# The papers' schedules, written out: epochs at K and batch size per method.
COOP_EPOCHS = {1: 50, 2: 100, 4: 100, 8: 200, 16: 200}
PAPER = {"cocoop": (10, 1), "maple": (5, 4), "gopro": (50, 4)}


def paper_steps_by_hand(key: str, classes: int, shots: int) -> int:
    images = classes * shots
    if key in ("coop", "coop-b2n"):
        epochs, batch = COOP_EPOCHS[shots], 32
    else:
        epochs, batch = PAPER[key]
    return epochs * (images // batch if images >= batch else 1)


@pytest.mark.parametrize("key", ["coop", "maple"])
@pytest.mark.parametrize("shots", SHOT_COLUMNS)
def test_a_run_takes_its_papers_steps_up_to_the_cap(key: str, shots: int) -> None:
    paper = paper_steps_by_hand(key, 64, shots)
    planned = planned_steps(key, 64, shots)["train"]
    if paper <= settings.STEP_CAP:
        assert schedule(key, 64, shots) == {}  # the paper's schedule untouched, warmup included
        assert planned == paper
    else:
        per_epoch = 64 * shots // (32 if key == "coop" else 4)
        assert abs(planned - settings.STEP_CAP) <= per_epoch / 2  # the cap, in whole epochs


def test_capped_runs_in_numbers() -> None:
    # CoOp 16 shots: 1,024 images / 32 = 32 steps an epoch; 800 / 32 = 25 epochs; warmup 1 of 200
    # scaled to 25 epochs is 0.125 epoch, rounded to none.
    assert schedule("coop", 64, 16) == {"epochs": 25, "warmup_epochs": 0}
    # MaPLe 16 shots: 256 steps an epoch; 800 / 256 = 3.1 -> 3 epochs; warmup 1 of 5 -> 0.6 -> 1.
    assert schedule("maple", 64, 16) == {"epochs": 3, "warmup_epochs": 1}
    # CoCoOp, batch 1: 1,024 steps an epoch on 64 classes; 800 / 1024 rounds to 1 (at least one).
    assert schedule("cocoop", 64, 16) == {"epochs": 1, "warmup_epochs": 0}
    assert schedule("cocoop", 32, 16) == {"epochs": 2, "warmup_epochs": 0}  # 800 / 512 = 1.56
    # GOPro has its own cap: 256 steps; 64 classes x 16 / 4 = 256 steps an epoch.
    assert schedule("gopro", 64, 16) == {"epochs": 1, "warmup_epochs": 0}
    assert schedule("gopro", 32, 16) == {"epochs": 2, "warmup_epochs": 0}
    # SHIP (32 base classes x 16 = 512 features, batch 256): VAE 50 epochs = 100 steps, CoOp
    # stage 200 epochs = 400 steps, both under the cap: the paper's per-stage schedule.
    assert schedule("ship", 32, 16) == {}
    assert planned_steps("ship", 32, 16) == {"generator": 100, "classifier": 400}


def test_below_the_cap_no_run_is_cut_any_more() -> None:
    """The first run's mistake was one cut at every K: CoOp got 12-96 steps at 1-4 shots."""
    for label, key in (("CoOp (few-shot, all 64)", "coop"), ("MaPLe (few-shot, all 64)", "maple")):
        for shots, before in zip(SHOT_COLUMNS, FIRST_RUN[label], strict=True):
            paper = paper_steps_by_hand(key, 64, shots)
            if paper <= settings.STEP_CAP:
                assert planned_steps(key, 64, shots)["train"] == paper >= before


def test_a_multi_stage_method_over_the_cap_is_refused_not_capped_in_one_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A run's hyperparameter overrides reach every stage alike, so capping SHIP's CoOp stage would
    # also cut its VAE stage; the rule says so instead of doing it.
    monkeypatch.setattr(settings, "STEP_CAP", 200)
    with pytest.raises(ValueError, match="multi-stage"):
        schedule("ship", 32, 16)


def test_the_rule_reaches_the_training_request_and_quick_keeps_a_valid_warmup() -> None:
    assert method_hparams("coop", FULL, 16, 64) == {"augment": "none", "epochs": 25, "warmup_epochs": 0}
    assert method_hparams("coop", FULL, 1, 64) == {"augment": "none"}  # the paper's 50 epochs
    quick = method_hparams("maple", QUICK, 16, 64)
    assert quick["epochs"] == 1 and quick["warmup_epochs"] <= 1


def test_the_steps_table_shows_the_first_run_beside_the_rule() -> None:
    table = optimizer_steps()
    coop = ["12 -> 100", "48 -> 400", "96 -> 800", "400 -> 800", "800 -> 800"]
    assert table["CoOp (few-shot, all 64)"] == coop
    assert table["SHIP, CoOp stage (base-to-new, 32)"][-1] == "50 -> 400"
