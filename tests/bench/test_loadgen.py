"""bench/loadgen.py: the load generator the reliability and end-to-end benchmarks trust. Driven against
a real clipserve on loopback, and against small raw servers that misbehave on purpose."""

from __future__ import annotations

import itertools
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.loadgen import (
    NO_ANSWER,
    NOT_SENT,
    closed_loop,
    multipart_classify,
    open_loop,
    parse_head,
    raw_classify,
    server_timing_ms,
    summarise,
)
from tests.service.conftest import image_bytes, running, server_settings


def test_answer_heads_are_read_for_status_length_retry_after_and_server_timing() -> None:
    head = (
        b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 12\r\nretry-after: 1\r\n"
        b"server-timing: db;dur=9, app;dur=0.25\r\nconnection: close\r\n\r\n"
    )
    assert parse_head(head) == (429, 12, True, 0.25, True, False)
    assert server_timing_ms("total;dur=3") is None
    assert parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")[5] is True


def test_closed_and_open_loops_against_clipserve_get_answers_with_server_timing() -> None:
    jpeg, png = image_bytes(1, fmt="JPEG"), image_bytes(2)
    requests = [multipart_classify([jpeg, jpeg], ["cat", "dog"]), raw_classify(png, ["cat", "dog"])]
    with running(server_settings()) as server:
        port = int(server.url.rsplit(":", 1)[1])
        closed = closed_loop(port, requests, clients=3, seconds=1.0, processes=2)
        opened = open_loop(port, requests, rate=40, seconds=1.0, processes=2)
    for records in (closed, opened):
        figures = summarise(records, 1.0)
        assert figures.codes == {"200": len(records)} and figures.server_errors == 0
        assert all(r.server_ms is not None and 0 < r.server_ms <= 1000 * r.seconds + 1 for r in records)
    assert len(opened) == 40  # open loop: every due request, however fast the answers
    dues = [r.due for r in opened]
    assert max(b - a for a, b in itertools.pairwise(dues)) < 0.05  # evenly spaced, interleaved


@contextmanager
def raw_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback TCP server that gives each connection to `handle` on its own thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_a_keep_alive_connection_the_server_closed_is_retried_once_on_a_fresh_one() -> None:
    def one_answer_then_close(connection: socket.socket) -> None:  # no "connection: close" header
        with connection:
            if connection.recv(65536):
                connection.sendall(OK)

    with raw_server(one_answer_then_close) as port:
        records = closed_loop(
            port, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], clients=1, seconds=0.5, processes=1
        )
    assert len(records) > 3 and {r.status for r in records} == {200}


def test_silence_is_no_answer_and_a_busy_client_records_what_it_could_not_send() -> None:
    def never_answer(connection: socket.socket) -> None:
        time.sleep(3)
        connection.close()

    with raw_server(never_answer) as port:
        records = open_loop(port, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], rate=20, seconds=0.5,
                            processes=1, max_connections=2, timeout_s=1.0)  # fmt: skip
    statuses = [r.status for r in records]
    assert statuses.count(NO_ANSWER) == 2 and statuses.count(NOT_SENT) == 8
    assert summarise(records, 0.5).server_errors == 2


@pytest.mark.parametrize("clients", [1, 5])
def test_a_closed_loop_has_one_connection_per_client_across_processes(clients: int) -> None:
    accepted: list[int] = []

    def echo_ok(connection: socket.socket) -> None:
        accepted.append(1)
        with connection:
            while connection.recv(65536):
                connection.sendall(OK)

    with raw_server(echo_ok) as port:
        records = closed_loop(port, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], clients, 0.3, processes=2)
    assert {r.status for r in records} == {200}
    assert len(accepted) == clients  # connected once each, before the start, and kept alive
