"""An HTTP/1.1 load generator light enough not to be the bottleneck: several processes, each an
asyncio loop writing prebuilt request bytes to keep-alive connections and reading the answers.

Why not httpx, wrk or oha: httpx spends more CPU per request than the server under test does on a
small image; wrk is closed-loop only (no fixed arrival rate) and oha is not packaged where the GPU
benchmarks run (no network there). What is needed is small: send the same few request byte
strings, read status, a few headers and the body length.

Two shapes of load:
- closed loop (`closed_loop`): N clients, each sends its next request when the last one is
  answered; "concurrency" in the end-to-end benchmark.
- open loop (`open_loop`): requests are due at a fixed rate whatever the answers, so an overloaded
  server sees the excess (the overload phase of the reliability run). Latency counts from the
  moment a request was due, not when a connection was free (no coordinated omission); a request
  due while `max_connections` are all busy is recorded as not sent (status -1), so a saturated
  client shows up in the figures instead of silently lowering the offered load.

Every load is bounded in time; a request unanswered after `timeout_s` counts as status 0.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field
from subprocess import PIPE
from typing import Any
from urllib.parse import quote

NOT_SENT = -1  # open loop: due while every connection was busy
NO_ANSWER = 0  # connection refused, reset or closed, or no answer within the timeout


@dataclass(frozen=True)
class Record:
    due: float  # time.monotonic() when the request was due (closed loop: when it was sent)
    seconds: float  # from `due` to the last byte of the answer
    status: int  # HTTP status, or NOT_SENT / NO_ANSWER
    retry_after: bool = False  # the answer carried Retry-After
    server_ms: float | None = None  # Server-Timing "app" duration, when the server sent one


# -- request bytes --------------------------------------------------------------------------------


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """One keep-alive HTTP/1.1 request, as bytes on the wire."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def multipart_classify(
    images: Sequence[bytes],
    labels: Sequence[str] = (),
    fields: dict[str, str] | None = None,
    image_type: str = "image/jpeg",
    path: str = "/classify",
) -> bytes:
    """POST /classify as `curl -F images=@a.jpg -F labels=cat ...` sends it."""
    boundary = "clipserve-loadgen-7d1f0a"
    parts: list[bytes] = []
    for i, image in enumerate(images):
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{i}.jpg"\r\n'
            f"Content-Type: {image_type}\r\n\r\n"
        )
        parts.append(head.encode() + image + b"\r\n")
    named = [("labels", label) for label in labels] + list((fields or {}).items())
    for name, value in named:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return http_request("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def raw_classify(image: bytes, labels: Sequence[str] = (), image_type: str = "image/png") -> bytes:
    """POST /classify with the image as the body and the labels in the query string."""
    query = "&".join(f"labels={quote(label)}" for label in labels)
    return http_request(
        "POST", "/classify" + (f"?{query}" if query else ""), image, {"Content-Type": image_type}
    )


# -- one connection --------------------------------------------------------------------------------


class KeepAliveConnection:
    """A keep-alive connection that sends a request and reads one answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[int, bool, float | None]:
        """-> (status, has Retry-After, Server-Timing app ms). Raises OSError or
        asyncio.IncompleteReadError when the server closes or resets the connection."""
        reused = self.reader is not None and not self.reader.at_eof()
        if not reused:
            await self.connect()
        try:
            return await self._exchange(request)
        except (OSError, asyncio.IncompleteReadError) as error:
            # The server may close an idle keep-alive connection (uvicorn: after 5 s) just as we
            # reuse it; like any HTTP client, retry once on a fresh connection, but only if not
            # one byte of an answer came back.
            if not reused or (isinstance(error, asyncio.IncompleteReadError) and error.partial):
                raise
            await self.connect()
            return await self._exchange(request)

    async def connect(self) -> None:
        self.close()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def _exchange(self, request: bytes) -> tuple[int, bool, float | None]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length, retry_after, server_ms, close, chunked = parse_head(head)
        if chunked:
            await read_chunked(self.reader)
        elif length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status, retry_after, server_ms

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def parse_head(head: bytes) -> tuple[int, int, bool, float | None, bool, bool]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, retry_after, server_ms, close, chunked = 0, False, None, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "retry-after":
            retry_after = True
        elif name == "server-timing":
            server_ms = server_timing_ms(value)
        elif name == "connection":
            close = value.lower() == "close"
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
    return status, length, retry_after, server_ms, close, chunked


def server_timing_ms(value: str, metric: str = "app") -> float | None:
    """'app;dur=3.2, x;dur=1' -> 3.2"""
    for entry in value.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        if name == metric:
            for param in params:
                if param.startswith("dur="):
                    return float(param[4:])
    return None


async def read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


async def timed_exchange(
    connection: KeepAliveConnection, request: bytes, due: float, timeout_s: float
) -> Record:
    try:
        status, retry_after, server_ms = await asyncio.wait_for(connection.exchange(request), timeout_s)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
        connection.close()  # the next request on it reconnects
        return Record(due, time.monotonic() - due, NO_ANSWER)
    return Record(due, time.monotonic() - due, status, retry_after, server_ms)


# -- which worker answers -------------------------------------------------------------------------


async def probe_round(port: int, path: str, connections: int) -> list[tuple[int, Any]]:
    """`connections` GETs at once, each on a new connection, so that with several worker processes
    (`clipserve serve --workers N`) each worker gets some even while another is busy: (the pid in
    the X-Clipserve-Worker header, the JSON body) for each."""

    async def one() -> tuple[int, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        raw = await reader.read()  # until the server closes
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        fields = (line.partition(":") for line in lines)
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        return int(headers["x-clipserve-worker"]), json.loads(body)

    return list(await asyncio.gather(*(one() for _ in range(connections))))


# -- one worker process ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    port: int
    requests: tuple[bytes, ...]  # sent in turn
    seconds: float
    timeout_s: float
    clients: int = 0  # closed loop: this many clients in this process
    rate: float = 0.0  # open loop: requests per second from this process
    phase: float = 0.0  # open loop: offset of this process's schedule, in seconds
    max_connections: int = 64  # open loop


async def run_closed(plan: Plan, start: float, connections: list[KeepAliveConnection]) -> list[Record]:
    records: list[Record] = []
    stop_at = start + plan.seconds

    async def client(index: int, connection: KeepAliveConnection) -> None:
        turn = index
        while time.monotonic() < stop_at:
            request = plan.requests[turn % len(plan.requests)]
            records.append(await timed_exchange(connection, request, time.monotonic(), plan.timeout_s))
            turn += 1
        connection.close()

    await asyncio.sleep(max(0.0, start - time.monotonic()))
    await asyncio.gather(*(client(i, connection) for i, connection in enumerate(connections)))
    return records


async def run_open(plan: Plan, start: float, connections: list[KeepAliveConnection]) -> list[Record]:
    records: list[Record] = []
    idle = list(connections)
    busy = 0
    tasks: set[asyncio.Task[None]] = set()

    async def send(request: bytes, due: float) -> None:
        nonlocal busy
        connection = idle.pop() if idle else KeepAliveConnection(plan.port)
        busy += 1
        try:
            records.append(await timed_exchange(connection, request, due, plan.timeout_s))
        finally:
            busy -= 1
            idle.append(connection)

    count = int(plan.rate * plan.seconds)
    for i in range(count):
        due = start + plan.phase + i / plan.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if busy >= plan.max_connections:
            records.append(Record(due, 0.0, NOT_SENT))
            continue
        task = asyncio.create_task(send(plan.requests[i % len(plan.requests)], due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return records


async def work(plan: Plan) -> list[Record]:
    """Open every connection first (clients that are already connected, as in a steady state:
    a storm of TCP handshakes at the start would be measured otherwise), say ready, wait for the
    common start time, run."""
    connections = [KeepAliveConnection(plan.port) for _ in range(plan.clients or plan.max_connections)]
    await asyncio.gather(*(connection.connect() for connection in connections))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    start = float(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
    runner = run_closed if plan.clients else run_open
    return await runner(plan, start, connections)


def worker() -> None:
    """Child process (`python bench/loadgen.py --worker`): read a pickled Plan from stdin, run it,
    write the pickled records to stdout."""
    plan = Plan(**pickle.load(sys.stdin.buffer))
    records = asyncio.run(work(plan))
    pickle.dump([astuple(r) for r in records], sys.stdout.buffer)
    sys.stdout.flush()


def run_plans(plans: Sequence[Plan]) -> list[Record]:
    """Each plan in its own process, all starting at the same moment; every record, in due order.

    Plain child processes running this file, not multiprocessing: they import nothing but the
    standard library (no re-import of a caller's main module that loads torch) and start fast."""
    children = [
        subprocess.Popen([sys.executable, __file__, "--worker"], stdin=PIPE, stdout=PIPE) for _ in plans
    ]
    try:
        for child, plan in zip(children, plans, strict=True):
            assert child.stdin is not None and child.stdout is not None
            pickle.dump(vars(plan), child.stdin)  # fields only: the child knows no `bench` package
            child.stdin.flush()
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline() != b"ready\n":
                raise RuntimeError("a load-generator process did not start")
        start = time.monotonic() + 0.2  # CLOCK_MONOTONIC is system-wide: one start for all processes
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"{start!r}\n".encode())
            child.stdin.close()
        records: list[Record] = []
        for child in children:
            assert child.stdout is not None
            records += [Record(*row) for row in pickle.load(child.stdout)]
            child.wait(10)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return sorted(records, key=lambda r: r.due)


def split(total: int | float, parts: int) -> list[float]:
    """`total` spread over `parts` as evenly as integers allow (clients) or exactly (rates)."""
    if isinstance(total, int):
        return [float(total // parts + (1 if i < total % parts else 0)) for i in range(parts)]
    return [total / parts] * parts


def closed_loop(
    port: int,
    requests: Sequence[bytes],
    clients: int,
    seconds: float,
    processes: int = 4,
    timeout_s: float = 30.0,
) -> list[Record]:
    """`clients` clients (spread over `processes`) each send, wait for the answer, send again."""
    counts = [int(n) for n in split(clients, min(processes, clients)) if n]
    plans = [Plan(port, tuple(requests), seconds, timeout_s, clients=n) for n in counts]
    return run_plans(plans)


def open_loop(
    port: int,
    requests: Sequence[bytes],
    rate: float,
    seconds: float,
    processes: int = 4,
    max_connections: int = 256,
    timeout_s: float = 30.0,
) -> list[Record]:
    """`rate` requests per second in all, evenly spaced, whatever the answers."""
    processes = max(1, min(processes, int(rate * seconds)))
    plans = [
        Plan(
            port,
            tuple(requests),
            seconds,
            timeout_s,
            rate=rate / processes,
            phase=i / rate,  # interleave the processes' schedules
            max_connections=max(1, max_connections // processes),
        )
        for i in range(processes)
    ]
    return run_plans(plans)


# -- figures -------------------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Summary:
    requests: int
    ok_per_s: float
    codes: dict[str, int] = field(default_factory=dict)
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    server_p50_ms: float = float("nan")
    server_errors: int = 0  # 5xx and no answer at all

    def as_dict(self) -> dict[str, Any]:
        return {
            key: (round(value, 2) if isinstance(value, float) else value) for key, value in vars(self).items()
        }


def summarise(records: Sequence[Record], seconds: float) -> Summary:
    """Figures of the answered-200 requests; every status counted. Throughput is answers per second
    of the run, the run being `seconds` or, when answers came later (a closed loop's last requests,
    slower than its window), until the last answer."""
    ok = [r for r in records if r.status == 200]
    start = min((r.due for r in records), default=0.0)
    last = max((r.due + r.seconds for r in ok), default=start)
    elapsed = max(seconds, last - start)
    codes: dict[str, int] = {}
    for r in records:
        codes[str(r.status)] = codes.get(str(r.status), 0) + 1
    server = [r.server_ms for r in ok if r.server_ms is not None]
    return Summary(
        requests=len(records),
        ok_per_s=len(ok) / elapsed,
        codes=codes,
        p50_ms=1000 * quantile([r.seconds for r in ok], 0.5),
        p99_ms=1000 * quantile([r.seconds for r in ok], 0.99),
        max_ms=1000 * max((r.seconds for r in ok), default=float("nan")),
        server_p50_ms=quantile(server, 0.5),
        server_errors=sum(1 for r in records if r.status >= 500 or r.status == NO_ANSWER),
    )


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    worker()
