"""The README cannot lie: every shell block with a curl in README.md runs, as written (only the port
changed), against the server that `make serve` starts, and each curl's answer is checked against the
`# -> STATUS SHAPE` line the README shows after it (tests/readme/expect.py).

The server is started from the Makefile's own recipe (`make -n serve`, its install step skipped), in
a scratch folder that mirrors the repository (links to everything but runs/), so the README's
relative paths (docs/examples/..., runs/checkpoints/...) work and the repository is not touched.
Blocks run in README order in one bash each, with `curl` wrapped to record each answer.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.readme.expect import Expectation, parse_expectation

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEMO_URL = "127.0.0.1:8000"
ADMIN_TOKEN = "readme-admin-token"
START_TIMEOUT_S = 180
CURL = re.compile(r"^\s*curl\s")
# Records every curl's status and body in order; the README's own flags (-s, -H, -d ...) pass through.
WRAPPER = """
__n=0
curl() {
  __n=$((__n + 1))
  command curl -sS --max-time 60 -o "$README_OUT/$__n.body" -w '%{http_code}' "$@" > "$README_OUT/$__n.status"
}
"""


@dataclass
class Block:
    line: int  # where it starts in README.md
    text: str
    expectations: list[Expectation]


def curl_blocks(markdown: str) -> list[Block]:
    blocks = []
    for match in re.finditer(r"^```(?:sh|bash|shell)\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL):
        text = match.group(1)
        commands = [line for line in text.splitlines() if CURL.match(line)]
        if not commands:
            continue
        arrows = [line for line in text.splitlines() if line.lstrip().startswith("# ->")]
        line = markdown.count("\n", 0, match.start()) + 1
        assert len(arrows) == len(commands), f"README.md:{line}: every curl needs a '# -> ...' answer line"
        blocks.append(Block(line, text, [parse_expectation(arrow) for arrow in arrows]))
    return blocks


def serve_recipe() -> list[str]:
    """The commands `make serve` runs, from the Makefile itself (the install prerequisite skipped)."""
    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "install", "-o", ".venv/.installed", "serve"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = [line for line in printed.splitlines() if line.strip()]
    assert "clipserve serve" in lines[-1], printed
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scratch_copy(folder: Path) -> Path:
    """A folder that looks like the repository (links), with a runs/ of its own."""
    for entry in ROOT.iterdir():
        if entry.name not in {"runs", ".git"}:
            (folder / entry.name).symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, dict[str, str]]]:
    folder, port = scratch_copy(tmp_path_factory.mktemp("readme")), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLIPSERVE_ADMIN_TOKEN": ADMIN_TOKEN}
    *setup, serve = serve_recipe()
    for command in setup:
        subprocess.run(["bash", "-c", command], cwd=folder, env=env, check=True)
    argv = shlex.split(serve.replace("--port 8000", f"--port {port}"))
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        argv, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", server, folder / "server.log")
        yield folder, port, env
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=60)
        log.close()


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"`make serve` exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def test_the_readme_has_curl_blocks_with_answers() -> None:
    blocks = curl_blocks(README.read_text())
    assert len(blocks) >= 4 and sum(len(b.expectations) for b in blocks) >= 10


def test_every_curl_in_the_readme_answers_as_shown(
    demo: tuple[Path, int, dict[str, str]], tmp_path: Path
) -> None:
    folder, port, env = demo
    failures = []
    for index, block in enumerate(curl_blocks(README.read_text())):
        out = tmp_path / f"block-{index}"
        out.mkdir()
        script = WRAPPER + block.text.replace(DEMO_URL, f"127.0.0.1:{port}")
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=folder, env={**env, "README_OUT": str(out)},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if run.returncode != 0:
            failures.append(
                f"README.md:{block.line}: the block failed ({run.returncode}): {run.stderr[-800:]}"
            )
            continue
        answers = sorted(out.glob("*.status"), key=lambda p: int(p.stem))
        if len(answers) != len(block.expectations):
            failures.append(
                f"README.md:{block.line}: {len(answers)} curls ran, {len(block.expectations)} shown"
            )
            continue
        for number, expectation in enumerate(block.expectations, start=1):
            status, body = int((out / f"{number}.status").read_text()), (out / f"{number}.body").read_text()
            for problem in expectation.problems(status, body):
                failures.append(f"README.md:{block.line}, curl {number}: {problem}\n  answer: {body[:300]}")
    assert not failures, "\n".join(failures)
