"""The Dockerfile cannot be built here (no docker), so this checks what can be checked without
building it: it installs the way `make install` does (same pip steps, constraints file), its CUDA
base matches the pinned torch wheel, and the serving image is non-root, health-checked on
/health/live and reads checkpoints from a volume."""

from __future__ import annotations

import re
import shlex

import torch

from tests.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in joined.splitlines()
        if line.strip()
    ]


def pip_commands(text: str) -> list[list[str]]:
    """The arguments after `pip install` of every pip command in a shell text."""
    commands = []
    for part in re.split(r"&&|\n", text):
        words = shlex.split(part.replace("$(BIN)/python", "python"))
        if "pip" in words and "install" in words:
            commands.append(words[words.index("install") + 1 :])
    return commands


def makefile_pip_commands() -> list[list[str]]:
    recipe = (ROOT / "Makefile").read_text().split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    return pip_commands(recipe)


def extras(words: list[str]) -> set[str]:
    (target,) = [w for w in words if w.startswith(".")]
    match = re.fullmatch(r"\.(?:\[(.*)\])?", target)
    assert match is not None, target
    return set(filter(None, (match.group(1) or "").split(",")))


def test_install_steps_are_the_makefiles() -> None:
    make_upgrade, make_project = makefile_pip_commands()
    docker = [words for kind, args in instructions() if kind == "RUN" for words in pip_commands(args)]
    assert docker[0] == make_upgrade  # pip itself upgraded first, with the same flags
    projects = docker[1:]
    assert len(projects) == 2  # the serving install, then the training extra on top of it
    for words in projects:
        # The Makefile's command, without -e (a wheel, not a link to /src) and the dev extra.
        assert [w for w in words if not w.startswith(".")] == [w for w in make_project if w not in ("-e",)][
            :-1
        ]
        assert extras(words) <= extras(make_project) - {"dev"}
    assert extras(projects[0]) == set()  # serving needs no extra
    copied = " ".join(args for kind, args in instructions() if kind == "COPY")
    for needed in ("constraints.txt", "pyproject.toml", "models", "service", "training", "clipserve_cli.py"):
        assert needed in copied


def test_cuda_base_matches_the_pinned_torch() -> None:
    (base,) = re.findall(r"^ARG CUDA_IMAGE=(\S+)$", DOCKERFILE, flags=re.M)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu24\.04", base), base
    if torch.version.cuda:  # the CUDA build pinned in constraints.txt
        major_minor = ".".join(torch.version.cuda.split(".")[:2])
        assert base.startswith(f"nvidia/cuda:{major_minor}."), (base, torch.version.cuda)


def test_serving_image_is_non_root_healthchecked_and_reads_a_volume() -> None:
    steps = instructions()
    stages = [i for i, (kind, _) in enumerate(steps) if kind == "FROM"]
    assert steps[stages[-1]][1].endswith("AS serve")  # the default target serves
    serve = steps[stages[-1] :]
    (health,) = [args for kind, args in serve if kind == "HEALTHCHECK"]
    assert "/health/live" in health
    users = [args for kind, args in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("VOLUME", "/checkpoints") in steps
    assert "CLIPSERVE_CHECKPOINT_DIR=/checkpoints" in DOCKERFILE
    assert ("CMD", '["serve"]') in serve and ("ENTRYPOINT", '["clipserve"]') in steps
