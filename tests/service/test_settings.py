"""Settings: one class, env prefix CLIPSERVE_, every field a `clipserve serve` flag (flag > env >
default), except the admin token, which only the environment may set."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from service import cli
from service.settings import Settings


def parse(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    return Settings(**{k: v for k, v in vars(args).items() if k in Settings.model_fields})


def test_flags_override_env_which_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSERVE_MAX_BATCH_SIZE", "64")
    monkeypatch.setenv("CLIPSERVE_MAX_WAIT_MS", "7.5")
    monkeypatch.setenv("CLIPSERVE_IMAGE_FORMATS", "png, jpeg")
    monkeypatch.setenv("CLIPSERVE_ADMIN_TOKEN", "s3cret")
    settings = parse(["--max-batch-size", "16", "--no-watch", "--checkpoint-dir", "/srv/ckpt"])
    assert settings.max_batch_size == 16  # flag
    assert settings.max_wait_ms == 7.5  # env
    assert settings.image_formats == ["PNG", "JPEG"]
    assert settings.watch is False and settings.checkpoint_dir == Path("/srv/ckpt")
    assert settings.request_timeout_s == 10.0  # default
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_every_field_but_the_secrets_is_a_flag() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    flags = {action.dest for action in parser._actions}
    assert set(Settings.model_fields) - flags == {"admin_token", "api_keys", "metrics_token"}


def test_invalid_values_are_refused_with_the_field_named(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--max-batch-size", "0"])) == 2
    assert "max_batch_size" in capsys.readouterr().err


def test_a_blank_admin_token_disables_admin_instead_of_locking_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSERVE_ADMIN_TOKEN", "  ")
    assert parse([]).admin_token is None


def test_the_default_backbone_is_the_one_training_defaults_to() -> None:
    # OpenAI weights need QuickGELU; a service on plain ViT-B-16 would refuse default-trained checkpoints.
    from training.pipeline import TrainRequest

    assert Settings().arch == TrainRequest(data="d", out="o").arch == "ViT-B-16-quickgelu"
