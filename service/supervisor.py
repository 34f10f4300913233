"""`clipserve serve --workers N`: N worker processes on one port and one device, under uvicorn's own
multi-process supervisor (uvicorn.supervisors.Multiprocess), with three things of ours:

- Each worker runs clipserve's DrainingServer on an app it builds itself (spawned, so each has its
  own CUDA context, batcher, lanes and CUDA graphs), and takes connections only once its models
  are loaded and warm, so a replacement worker never answers 503 while its peers could serve.
- SO_REUSEPORT: each worker listens on its own socket bound to the same port, and the kernel
  spreads new connections evenly over the listening ones (by a hash of the connection). A worker
  binds before loading but listens only once ready, and a dead worker's socket leaves the group, so
  connections go to the workers that can serve them. (uvicorn's own way, one socket shared by all,
  lets one worker's accept loop take a whole burst of connections: 7 of 8 keep-alive clients ended
  up on one worker here.) This process binds the port too, without listening, to reserve it (and
  resolve port 0). Sockets are made with proto=TCP so that asyncio sets TCP_NODELAY. Linux only.
- Metrics: a fresh PROMETHEUS_MULTIPROC_DIR per service run (service/metrics.py); the files of a
  dead worker's live gauges are dropped when it is replaced.

The supervisor checks its workers every 0.5 s and replaces one that died, or that stopped answering
its health pipe for HEALTHCHECK_TIMEOUT_S (uvicorn's behaviour); a worker that fails to start stops
the service (exit 1), as a broken configuration would fail the same way on every restart. SIGTERM:
every worker drains as one process does (service/server.py), so the port closes when the last
worker's grace period ends; this process waits for the workers to finish.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from service.settings import Settings

log = logging.getLogger("clipserve")
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# A worker that does not answer the supervisor's health pipe for this long is killed and replaced
# (a dead one is replaced within 0.5 s whatever this is). uvicorn's default, 5 s, is shorter than a
# spawned worker's start on a loaded machine (the interpreter and its imports come before it can
# answer), which would kill healthy workers in a loop.
HEALTHCHECK_TIMEOUT_S = 30


class WorkerProcess(Process):
    """uvicorn's worker process, serving clipserve's app and shutdown (built in the child)."""

    def __init__(self, config: uvicorn.Config, settings: Settings, started: int) -> None:
        self.settings, self.started = settings, started
        super().__init__(config, [])

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # runs in the child
        # Answer the supervisor's health pings from the start: building the app imports torch,
        # which takes longer than the ping timeout.
        threading.Thread(target=self.always_pong, daemon=True).start()
        from service.api.app import create_app
        from service.logs import configure_logging
        from service.server import DrainingServer

        configure_logging(str(self.config.log_level), self.settings.log_format)
        self.config.configure_logging()  # again after ours: uvicorn's access log stays off
        app = create_app(self.settings, self.started)
        self.config.app = app
        server = self._server = DrainingServer(self.config, app.state.clipserve)
        # bound now, listening once the app's start-up (loading and warming) is done
        server.run([reuseport_socket(self.settings.host, self.config.port)])
        if server.exit_code != 0:
            sys.exit(STARTUP_FAILURE)

    def pong(self) -> None:
        self.child_conn.recv()
        self.child_conn.send(self._server is not None and self._server.started)


class Supervisor(Multiprocess):
    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        super().__init__(config, [])
        self.settings = settings
        self.started = int(time.time())  # the zeroshot model's `created` in every worker
        self.failed_start = False
        # uvicorn queues signals and looks every 0.5 s; stop at once, so that every worker starts
        # draining (readiness 503) as soon as the service is told to stop, as one process does.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop_now)

    def stop_now(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit.set()  # the supervisor's loop ends and SIGTERMs every worker

    def new_process(self) -> WorkerProcess:
        process = WorkerProcess(self.config, self.settings, self.started)
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self.new_process() for _ in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        """uvicorn's own loop, starting our workers and dropping a dead one's gauge files."""
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: kill it; dead: reap it
            process.join()
            forget_metrics(process.pid)
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %s failed to start; stopping", process.pid)
                self.failed_start = True
                self.should_exit.set()
                return
            log.warning("worker %s died (exit code %s); starting another", process.pid, process.exitcode)
            self.processes[index] = self.new_process()

    def handle_hup(self) -> None:
        log.warning("SIGHUP ignored: restart the service to restart its workers")

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: the number of workers is --workers")

    def handle_ttou(self) -> None:
        log.warning("SIGTTOU ignored: the number of workers is --workers")


def serve_workers(settings: Settings, log_level: str) -> int:
    """Run settings.workers workers until SIGTERM/SIGINT; the exit code of the service."""
    from service.server import uvicorn_config

    owned = prepare_metrics_dir()
    try:
        config = uvicorn_config(
            "service.api.app:create_app", settings.host, settings.port, log_level, settings.drain_timeout_s
        )
        config.workers = settings.workers
        config.timeout_worker_healthcheck = HEALTHCHECK_TIMEOUT_S
        with reuseport_socket(settings.host, settings.port) as reserved:  # the port, for the workers
            config.port = reserved.getsockname()[1]
            log.info("%d workers on http://%s:%d", settings.workers, settings.host, config.port)
            supervisor = Supervisor(config, settings)
            supervisor.run()
        return 1 if supervisor.failed_start else 0
    finally:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT, not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def prepare_metrics_dir() -> Path | None:
    """PROMETHEUS_MULTIPROC_DIR for the workers: the operator's (emptied: its files are from an
    earlier run) or a new temporary folder, removed at exit (returned)."""
    given = os.environ.get(METRICS_DIR)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return None
    folder = Path(tempfile.mkdtemp(prefix="clipserve-metrics-"))
    os.environ[METRICS_DIR] = str(folder)  # inherited by the spawned workers
    return folder


def forget_metrics(pid: int | None) -> None:
    if pid is not None and os.environ.get(METRICS_DIR):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
