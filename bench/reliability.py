# ruff: noqa: E501  (tables of flags and checks read better one per line)
"""Load, overload, hot swap under load and SIGTERM drain against a real `clipserve serve` process on
loopback, then docs/RELIABILITY.md. Every loop is bounded in count and time and stops by itself.

    python bench/reliability.py                    # sustained phase 10 minutes (issue 9)
    python bench/reliability.py --short            # ~1 minute in all (CI, development)
    python bench/reliability.py --short --json x   # also the raw figures

Phases, in order, on one server process (the tiny random model; CPU unless --device cuda):
capacity (closed loop, the most successful req/s), sustained at 80% of it or --sustained-rate (zero 5xx, latency per
window, RSS growth after warm-up), overload at 3x (429 + Retry-After fast, accepted requests inside
their deadline, recovery at 50%), 100 swaps between CoOp, MaPLe and CoCoOp versions (the three lane
kinds) with corrupt and incompatible files under traffic,
SIGTERM under traffic (every request sent before the signal answered 200), and a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import Record, closed_loop, open_loop, quantile, raw_classify, summarise
from bench.reliability_report import write_report
from bench.server_process import ServerProcess, clipserve_command, free_port
from models.backbone import build_backbone, file_sha256
from service.metrics import GC_BUCKETS
from tests.models.prompts.helpers import make_learner as make_method
from tests.service.conftest import image_bytes, make_learner, write_checkpoint

TOKEN = "reliability-token"
LABELS = ["cat", "dog", "zebra"]
QUEUE_IMAGES = 256
INFLIGHT = 128  # about capacity x 0.4 s: bursts at 80% fit, 3x does not
DEADLINE_S = 5.0
SLOW_COLLECTION_S = 0.0512  # "over 50 ms": a bucket bound of clipserve_gc_pause_seconds
assert SLOW_COLLECTION_S in GC_BUCKETS


@dataclass
class Answer:
    """One request of the hot-swap phase, whose bodies are checked (the load phases use bench.loadgen)."""

    status: int  # 0: no HTTP answer (connection refused or reset)
    body: dict[str, Any] | None = None


def start_server(folder: Path, device: str) -> ServerProcess:
    """The tiny random model with a watched folder, small limits so overload shows quickly."""
    port = free_port()
    flags = [
        "--arch", "clipserve-tiny-vit", "--pretrained", "random", "--device", device,
        "--checkpoint-dir", str(folder), "--watch-interval-s", "0.5",
        "--max-queue-images", str(QUEUE_IMAGES), "--max-inflight-requests", str(INFLIGHT), "--request-timeout-s", str(DEADLINE_S),
        "--drain-grace-s", "1", "--drain-timeout-s", "20", "--log-level", "warning",
    ]  # fmt: skip
    return ServerProcess(clipserve_command(port, *flags), port, env={"CLIPSERVE_ADMIN_TOKEN": TOKEN}).start()


# -- traffic ------------------------------------------------------------------------------------


async def one(client: httpx.AsyncClient, blob: bytes, out: list[Answer], model: str) -> None:
    try:
        response = await client.post(
            "/classify", content=blob, params={"model": model}, headers={"content-type": "image/png"}
        )
        out.append(Answer(response.status_code, response.json() if response.status_code == 200 else None))
    except httpx.HTTPError:
        out.append(Answer(0))


def _limits(n: int) -> httpx.Limits:
    return httpx.Limits(max_connections=n, max_keepalive_connections=n)


def figures(records: list[Record], seconds: float) -> dict[str, Any]:
    return summarise(records, seconds).as_dict()


# -- phases -------------------------------------------------------------------------------------


def capacity(server: ServerProcess, request: bytes, seconds: float) -> dict[str, Any]:
    closed_loop(server.port, [request], 4, min(2.0, seconds), processes=2)  # warm-up
    best: dict[str, Any] = {}
    for clients in (4, 16):
        result = figures(closed_loop(server.port, [request], clients, seconds, processes=2), seconds)
        if result["ok_per_s"] > best.get("ok_per_s", 0):
            best = {**result, "clients": clients}
    return best


def sustained(server: ServerProcess, request: bytes, rate: float, seconds: float) -> dict[str, Any]:
    rss: list[tuple[float, int]] = []
    gpu: list[tuple[float, float]] = []  # reserved bytes, from the service's /metrics (CUDA only)
    started = time.monotonic()
    collections_before = full_collections(server)
    with ThreadPoolExecutor(1) as pool:  # the load runs in child processes; this thread samples memory
        load = pool.submit(open_loop, server.port, [request], rate, seconds, 2, 256, DEADLINE_S * 3)
        while not load.done():
            rss.append((time.monotonic(), server.rss()))
            gpu += [(time.monotonic(), value) for value in gpu_reserved_bytes(server)]
            time.sleep(1.0)
        records = load.result()
    rss.append((time.monotonic(), server.rss()))
    collections = [
        after - before for after, before in zip(full_collections(server), collections_before, strict=True)
    ]
    warm = started + 0.2 * seconds
    after = [value for at, value in rss if at >= warm]
    base = after[0] if after else rss[-1][1]
    gpu_after = [value for at, value in gpu if at >= warm]
    start = records[0].due if records else started
    windows = []
    for i in range(10):
        lo, hi = start + i * seconds / 10, start + (i + 1) * seconds / 10
        part = [r.seconds for r in records if lo <= r.due < hi and r.status == 200]
        windows.append(round(1000 * quantile(part, 0.99), 1))
    growth = (max(after, default=base) - base) / base
    settled = [w for w in windows[2:] if w == w]  # no NaN
    return {
        **figures(records, seconds),
        "offered_per_s": round(rate, 1),
        "seconds": seconds,
        "p99_ms_per_tenth": windows,
        "rss_mb_after_warmup": round(base / 2**20, 1),
        "rss_mb_max": round(max(after, default=base) / 2**20, 1),
        "rss_growth": round(growth, 4),
        "gpu_reserved_mb_after_warmup": round(gpu_after[0] / 2**20, 1) if gpu_after else None,
        "gpu_reserved_growth": round(max(gpu_after) / gpu_after[0] - 1, 4) if gpu_after else None,
        "full_collections": int(collections[0]),  # generation-2 garbage collections in the server
        "full_collections_over_50ms": int(collections[1]),
        # no upward drift: the last three tenths' median p99 within 2x (+20 ms) of tenths 3-5's
        "latency_stable": sorted(settled[-3:])[1] <= 2 * sorted(settled[:3])[1] + 20,
    }


def scrape(server: ServerProcess, *names: str) -> dict[str, list[Sample]]:
    """The samples of the named metric families in one scrape of the server's /metrics ([] for a
    family it does not export)."""
    text = httpx.get(server.url + "/metrics", timeout=5).text
    found: dict[str, list[Sample]] = {name: [] for name in names}
    for family in text_string_to_metric_families(text):
        if family.name in found:
            found[family.name] = family.samples
    return found


def gpu_reserved_bytes(server: ServerProcess) -> list[float]:
    """clipserve_gpu_memory_reserved_bytes of the first device ([] on CPU: the gauge is absent)."""
    samples = scrape(server, "clipserve_gpu_memory_reserved_bytes")["clipserve_gpu_memory_reserved_bytes"]
    return [samples[0].value] if samples else []


def full_collections(server: ServerProcess) -> tuple[float, float]:
    """(count, of which over SLOW_COLLECTION_S) of the server's generation-2 garbage collections so far, from
    its clipserve_gc_pause_seconds histogram (service/heap.py)."""
    count = under = 0.0
    for sample in scrape(server, "clipserve_gc_pause_seconds")["clipserve_gc_pause_seconds"]:
        if sample.labels.get("generation") != "2":
            continue
        if sample.name.endswith("_count"):
            count = sample.value
        elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == SLOW_COLLECTION_S:
            under = sample.value
    return count, count - under


def left_in_server(server: ServerProcess) -> dict[str, float]:
    """The in-flight requests and queued images the service reports once every request it was sent has
    been answered: anything but zero is a slot or a queue entry that the overload leaked."""
    gauges = {"clipserve_inflight_requests": "inflight_requests", "clipserve_queue_depth": "queued_images"}
    found = scrape(server, *gauges)
    return {key: sum(sample.value for sample in found[name]) for name, key in gauges.items()}


def overload(server: ServerProcess, request: bytes, rate: float, seconds: float) -> dict[str, Any]:
    # 256 connections: far more than max_inflight_requests, so the server (not the client) must refuse
    records = open_loop(server.port, [request], 3 * rate, seconds, 2, 256, DEADLINE_S * 3)
    refused = [r for r in records if r.status == 429]
    recovery_seconds = max(2.0, seconds / 2)
    recovery = open_loop(server.port, [request], 0.5 * rate, recovery_seconds, 2, 256, DEADLINE_S * 3)
    after_first_second = [r for r in recovery if r.due >= recovery[0].due + 1]
    return {
        **figures(records, seconds),
        "offered_per_s": round(3 * rate, 1),
        "refused_429": len(refused),
        "refused_without_retry_after": sum(1 for r in refused if not r.retry_after),
        "refusal_p99_ms": round(1000 * quantile([r.seconds for r in refused], 0.99), 1),
        "accepted_p99_server_ms": round(
            quantile([r.server_ms or 0.0 for r in records if r.status == 200], 0.99), 1
        ),
        "accepted_over_deadline": sum(1 for r in records if r.status == 200 and r.seconds > DEADLINE_S),
        "recovery": figures(recovery, recovery_seconds),
        # what was still in flight from the overload drains in the first second at 50%
        "recovery_first_second_codes": figures([r for r in recovery if r.due < recovery[0].due + 1], 1)[
            "codes"
        ],
        "recovery_after_first_second_codes": figures(after_first_second, 1)["codes"],
        "recovery_after_first_second_ok_share": round(
            sum(1 for r in after_first_second if r.status == 200) / max(1, len(after_first_second)), 4
        ),
        "left_in_server": left_in_server(server),  # every request above has been answered by now
    }


async def swap_under_load(
    server: ServerProcess, blob: bytes, files: dict[str, str], bad: dict[str, int], swaps: int
) -> dict[str, Any]:
    records: list[Answer] = []
    stop = asyncio.Event()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    good = sorted(files)

    async def traffic(client: httpx.AsyncClient) -> None:
        for _ in range(1_000_000):
            if stop.is_set():
                return
            await one(client, blob, records, model="pets")

    versions: dict[str, str] = {}  # version number -> sha256, from the admin answers
    refusals: list[tuple[str, int, bool]] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=_limits(8)) as client:
        workers = [asyncio.create_task(traffic(client)) for _ in range(4)]
        deadline = time.monotonic() + 600
        for i in range(swaps):
            if time.monotonic() > deadline:
                break
            before = (await client.get("/v1/models")).json()
            if i % 10 == 9:
                name = sorted(bad)[(i // 10) % len(bad)]
                answer = await client.post("/admin/models/pets/swap", json={"file": name}, headers=headers)
                after = (await client.get("/v1/models")).json()
                kept = _pets(after) == _pets(before)
                refusals.append((name, answer.status_code, kept and answer.status_code == bad[name]))
            else:
                answer = await client.post(
                    "/admin/models/pets/swap", json={"file": good[i % len(good)]}, headers=headers
                )
                if answer.status_code == 200:
                    versions[answer.json()["version"]] = answer.json()["sha256"]
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.gather(*workers)
    return _swap_figures(records, versions, files, refusals)


def _pets(listing: dict[str, Any]) -> tuple[str, str]:
    pets = next(m for m in listing["data"] if m["name"] == "pets")
    return pets["version"], pets["sha256"]


def _swap_figures(records: list[Answer], versions: dict[str, str], files: dict[str, str],
                  refusals: list[tuple[str, int, bool]]) -> dict[str, Any]:  # fmt: skip
    first: dict[str, dict[str, float]] = {}  # sha -> label -> score of the first answer it gave
    differing, inconsistent = set(), 0
    for r in records:
        if r.body is None:
            continue
        model = r.body["model"]
        if model["version"] in versions and versions[model["version"]] != model["sha256"]:
            inconsistent += 1
        scores = {p["label"]: p["score"] for p in r.body["results"][0]["predictions"]}
        reference = first.setdefault(model["sha256"], scores)
        # batches of different sizes differ in the last float bits, nothing more
        if scores.keys() != reference.keys() or any(abs(scores[k] - reference[k]) > 1e-4 for k in scores):
            differing.add(model["sha256"])
    return {
        "requests": len(records),
        "failed_requests": sum(1 for r in records if r.status != 200),
        "good_swaps": len(versions),
        "bad_files_tried": len(refusals),
        "bad_files_refused_and_previous_kept": sum(1 for _, _, ok in refusals if ok),
        "versions_answering": len({r.body["model"]["version"] for r in records if r.body}),
        "version_sha_mismatches": inconsistent,
        "shas_not_from_known_files": len(set(first) - set(files.values())),
        "shas_with_differing_answers": len(differing),
    }


def sigterm_under_load(server: ServerProcess, request: bytes) -> dict[str, Any]:
    before = {m["name"]: m["sha256"] for m in httpx.get(server.url + "/v1/models").json()["data"]}
    with ThreadPoolExecutor(1) as pool:  # 8 clients for 4 s in child processes; SIGTERM after 1.5 s
        load = pool.submit(closed_loop, server.port, [request], 8, 4.0, 2, DEADLINE_S * 3)
        time.sleep(1.5)
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        records = load.result()
    started = time.monotonic()
    # the one SIGTERM must be enough: wait for the drain to end by itself (drain_timeout_s=20)
    exited = server.wait(timeout_s=30)
    code = exited if exited is not None else server.stop()
    sent_before = [r for r in records if r.due < signalled]
    return {
        "requests_sent_before_sigterm": len(sent_before),
        "of_which_not_200": sum(1 for r in sent_before if r.status != 200),
        "after_sigterm_codes": figures([r for r in records if r.due >= signalled], 1)["codes"],
        "exit_code": code,
        "exit_seconds_after_load": round(time.monotonic() - started, 1),
        "exited_by_itself": exited is not None,
        "models_before": before,
    }


def restart(folder: Path, device: str, before: dict[str, str]) -> dict[str, Any]:
    server = start_server(folder, device)
    try:
        after = {m["name"]: m["sha256"] for m in httpx.get(server.url + "/v1/models").json()["data"]}
    finally:
        server.stop()
    return {
        "same_model_names": sorted(after) == sorted(before),
        # the state file brings back what was served, swaps through the admin API included
        "serves_what_it_served": after == before,
    }


# -- set-up and main ------------------------------------------------------------------------------


def checkpoints(folder: Path) -> tuple[dict[str, str], dict[str, int]]:
    """pets.safetensors (watched), three good versions, one per lane kind (CoOp: the shared encoder,
    MaPLe: its own image tower, CoCoOp: image-conditioned text), and four bad files in versions/."""
    backbone = build_backbone("clipserve-tiny-vit", pretrained=None, seed=0)
    write_checkpoint(folder / "pets.safetensors", make_learner(backbone, seed=100))
    versions = [make_learner(backbone, seed=100)] + [
        make_method(name, backbone, seed=101 + i).serving_learner().eval()
        for i, name in enumerate(("maple", "cocoop"))
    ]
    files = {}
    for i, learner in enumerate(versions):
        path = write_checkpoint(folder / f"versions/pets-{i}.safetensors", learner)
        files[f"versions/pets-{i}.safetensors"] = file_sha256(path)
    good = (folder / "versions/pets-0.safetensors").read_bytes()
    (folder / "versions/flipped.safetensors").write_bytes(good[:-8] + bytes(8))
    (folder / "versions/garbage.safetensors").write_bytes(b"not a checkpoint")
    (folder / "versions/pickle.safetensors").write_bytes(b"\x80\x04\x95" + bytes(64))
    other = build_backbone("clipserve-tiny-vit", pretrained=None, seed=1)
    write_checkpoint(folder / "versions/other-backbone.safetensors", make_learner(other, seed=3))
    bad = {"versions/flipped.safetensors": 422, "versions/garbage.safetensors": 422,
           "versions/pickle.safetensors": 422, "versions/other-backbone.safetensors": 409}  # fmt: skip
    return files, bad


def progress(phase: str) -> None:
    """One line per phase, so a run stopped at a time limit (bench/gpu_check.py) shows where it was."""
    print(f"reliability: {phase} ({time.strftime('%H:%M:%S')})", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="clipserve-reliability-"))
    blob = image_bytes(7)
    request = raw_classify(blob, LABELS)  # the load phases' request: a raw PNG body, labels in the query
    results: dict[str, Any] = {}
    try:
        files, bad = checkpoints(folder)
        server = start_server(folder, args.device)
        try:
            progress("capacity")
            results["capacity"] = capacity(server, request, args.capacity_seconds)
            rate = results["capacity"]["ok_per_s"]
            sustained_rate = args.sustained_rate or 0.8 * rate
            progress(f"sustained at {sustained_rate:.0f}/s")
            results["sustained"] = sustained(server, request, sustained_rate, args.sustained_seconds)
            results["sustained"]["share_of_capacity"] = round(sustained_rate / rate, 3)
            progress("overload")
            results["overload"] = overload(server, request, rate, args.overload_seconds)
            progress("hot swap")
            results["hot_swap"] = asyncio.run(swap_under_load(server, blob, files, bad, args.swaps))
            progress("sigterm")
            results["sigterm"] = sigterm_under_load(server, request)
        finally:
            server.stop()
        progress("restart")
        results["restart"] = restart(folder, args.device, results["sigterm"].pop("models_before"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def verdicts(r: dict[str, Any]) -> dict[str, bool]:
    s, o, h, t = r["sustained"], r["overload"], r["hot_swap"], r["sigterm"]
    return {
        "sustained: zero 5xx": s["server_errors"] == 0,
        "sustained: every request 200 (no 429)": set(s["codes"]) == {"200"},
        "sustained: latency stable": s["latency_stable"],
        "sustained: RSS growth <= 5% after warm-up": s["rss_growth"] <= 0.05,
        "overload: 429 with Retry-After": o["refused_429"] > 0 and o["refused_without_retry_after"] == 0,
        "overload: refusals fast (p99 < 0.5 s)": o["refusal_p99_ms"] < 500,
        "overload: zero 5xx": o["server_errors"] == 0,
        "overload: accepted requests within their deadline (client-side)": o["accepted_over_deadline"] == 0,
        "overload: recovery within 1 s (all 200 at 50% after the first second)": set(o["recovery_after_first_second_codes"]) == {"200"},
        "overload: nothing leaked (in-flight requests and queued images back to 0)": set(o["left_in_server"].values()) == {0},
        "hot swap: zero failed requests": h["failed_requests"] == 0,
        "hot swap: answers consistent with their version": h["version_sha_mismatches"] == 0
        and h["shas_not_from_known_files"] == 0 and h["shas_with_differing_answers"] == 0,
        "hot swap: bad files refused, previous kept": h["bad_files_refused_and_previous_kept"] == h["bad_files_tried"] > 0,
        "sigterm: every request sent before it answered 200": t["of_which_not_200"] == 0,
        "sigterm: the process exits 0 by itself": t["exited_by_itself"] and t["exit_code"] == 0,
        "restart: same models": r["restart"]["same_model_names"] and r["restart"]["serves_what_it_served"],
    } | ({} if s["gpu_reserved_growth"] is None else {  # measured on CUDA only
        "sustained: GPU memory growth <= 5% after warm-up": s["gpu_reserved_growth"] <= 0.05,
    })  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="~1.5 minutes in all (sustained 20 s)")
    parser.add_argument("--sustained-seconds", type=float, default=None, help="default 600 (--short: 20)")
    parser.add_argument("--swaps", type=int, default=100)
    parser.add_argument("--capacity-seconds", type=float, default=None, help="default 15 (--short: 4)")
    parser.add_argument("--overload-seconds", type=float, default=None, help="default 30 (--short: 6)")
    parser.add_argument(
        "--sustained-rate", type=float, default=None,
        help="req/s of the sustained phase (default: 80%% of the measured capacity); overload and "
        "recovery stay relative to the capacity",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="markdown report (docs/RELIABILITY.md)")
    parser.add_argument("--json", type=Path, default=None, help="raw figures")
    args = parser.parse_args(argv)
    args.sustained_seconds = args.sustained_seconds or (20.0 if args.short else 600.0)
    args.capacity_seconds = args.capacity_seconds or (4.0 if args.short else 15.0)
    args.overload_seconds = args.overload_seconds or (6.0 if args.short else 30.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.time()
    results = run(args)
    checks = verdicts(results)
    meta = {
        "command": "python bench/reliability.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.system()}, "
        f"load average at start {os.getloadavg()[0]:.1f}",
        "wall_seconds": round(time.time() - started),
    }
    print(json.dumps({"meta": meta, "results": results, "checks": checks}, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results, "checks": checks}, indent=1))
    if args.out:
        write_report(args.out, meta, results, checks)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
