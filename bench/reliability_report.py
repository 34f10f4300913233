# ruff: noqa: E501  (tables of flags and checks read better one per line)
"""Writes the results section of docs/RELIABILITY.md (between its markers; the rest is prose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

START, END = "<!-- reliability:results:start -->", "<!-- reliability:results:end -->"


def table(results: dict[str, Any], checks: dict[str, bool]) -> str:
    c, s, o, h, t = (results[k] for k in ("capacity", "sustained", "overload", "hot_swap", "sigterm"))
    rows = [
        ("capacity (closed loop)", f"{c['clients']} clients, {c['requests']} requests",
         f"{c['ok_per_s']} req/s, p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms"),
        (f"sustained at {100 * s['share_of_capacity']:.0f}%", f"{s['offered_per_s']} req/s for {s['seconds']:.0f} s, {s['requests']} requests",
         f"codes {s['codes']}; p99 per tenth of the run (ms) {s['p99_ms_per_tenth']}; RSS "
         f"{s['rss_mb_after_warmup']} -> max {s['rss_mb_max']} MB ({100 * s['rss_growth']:.1f}%); full garbage "
         f"collections in the server {s['full_collections']}, over 50 ms {s['full_collections_over_50ms']}"
         + ("" if s.get("gpu_reserved_growth") is None else f"; GPU reserved {s['gpu_reserved_mb_after_warmup']} MB, "
            f"growth {100 * s['gpu_reserved_growth']:.1f}%")),
        ("overload at 3x", f"{o['offered_per_s']} req/s offered, {o['requests']} requests",
         f"codes {o['codes']}; 429 p99 {o['refusal_p99_ms']} ms, all with Retry-After: "
         f"{o['refused_without_retry_after'] == 0}; accepted p99 {o['p99_ms']} ms (in the server "
         f"{o['accepted_p99_server_ms']} ms), max {o['max_ms']} ms "
         f"(deadline 5 s); recovery at 50%: codes {o['recovery_first_second_codes']} in the first second, "
         f"then {o['recovery_after_first_second_codes']}, p99 {o['recovery']['p99_ms']} ms; left in the server "
         f"after it: {o['left_in_server']}"),
        ("hot swap under load", f"{h['good_swaps']} good swaps + {h['bad_files_tried']} bad files, "
         f"{h['requests']} requests", f"failed {h['failed_requests']}; {h['versions_answering']} versions answered; "
         f"version/sha mismatches {h['version_sha_mismatches']}; bad refused and previous kept "
         f"{h['bad_files_refused_and_previous_kept']}/{h['bad_files_tried']}"),
        ("SIGTERM under load", f"8 clients; {t['requests_sent_before_sigterm']} requests sent before the signal",
         f"not 200: {t['of_which_not_200']}; after the signal: {t['after_sigterm_codes']}; exit code "
         f"{t['exit_code']} after {t['exit_seconds_after_load']} s"),
        ("restart", "same folder", json.dumps(results["restart"])),
    ]  # fmt: skip
    lines = ["| phase | how much | what happened |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c_} |" for a, b, c_ in rows]
    lines += ["", "| check | held |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**NO**'} |" for name, ok in checks.items()]
    return "\n".join(lines)


def write_report(path: Path, meta: dict[str, Any], results: dict[str, Any], checks: dict[str, bool]) -> None:
    section = "\n".join([
        START,
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}; machine: {meta['machine']}; wall time {meta['wall_seconds']} s.",
        "",
        table(results, checks),
        END,
    ])  # fmt: skip
    text = path.read_text() if path.exists() else f"# Reliability\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(head + section + tail)
