"""`bevan serve --workers N`: N server processes that share the port's connections.

uvicorn's own workers accept from one shared listening socket, and the process that
wakes first takes every connection waiting. A client or proxy that opens its
connections together lands them all on one process while the others idle (a
benchmark's keep-alive connections all on the first of two workers, the second using
no CPU at all: benchmarks/search.py with --workers 2). Here each worker listens on a socket of its own, bound with SO_REUSEPORT,
and Linux hands each new connection to one of them by a hash of its addresses, so
connections spread across the workers.

The supervisor opens every socket first (a port in use fails at once, before a worker
starts), starts each worker with its own socket, starts another in the place of one
that dies, and on SIGINT or SIGTERM asks each to finish what it is answering and stop.
Where SO_REUSEPORT does not share out connections (it does on Linux), uvicorn's workers
serve instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

log = logging.getLogger("bevan.serve")

APP = "bevan.app:app_from_environment"
BACKLOG = 2048
# A worker that exits by itself this soon after it started failed to start (a database
# it cannot reach, say): another would fail the same way, so the server stops with an
# error. One killed by a signal is replaced however young.
STARTUP_SECONDS = 10.0
# How long stopping workers get to finish the requests they hold before they are killed.
STOP_SECONDS = 30.0


def spreads_connections() -> bool:
    """Return True if sockets bound with SO_REUSEPORT share out connections here."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """Return count sockets listening on host:port together (SO_REUSEPORT); port 0 picks
    one free port for all. Raises OSError if the port cannot be had."""
    family, kind, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            address = sock.getsockname()  # port 0: the others join the port it was given
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def run_worker(options: dict[str, Any], sock: socket.socket) -> None:
    """One worker process: build the app from BEVAN_* settings and serve on sock."""
    import uvicorn

    config = uvicorn.Config(APP, factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def serve(workers: int, options: dict[str, Any]) -> int:
    """Serve with workers processes (uvicorn options: host, port, logging); return the
    exit status: 0 when stopped by a signal, 1 if a worker could not start."""
    if not spreads_connections():
        import uvicorn

        uvicorn.run(APP, factory=True, workers=workers, **options)
        return 0
    host, port = options.pop("host"), options.pop("port")
    try:
        sockets = listening_sockets(host, port, workers)
    except OSError as error:
        print(f"bevan serve: cannot listen on {host}:{port}: {error.strerror}", file=sys.stderr)
        return 1
    return Supervisor(sockets, options).run()


class Supervisor:
    """Keeps one worker process running on each listening socket until told to stop."""

    def __init__(self, sockets: list[socket.socket], options: dict[str, Any]) -> None:
        self.sockets = sockets
        self.options = options
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.started: list[float] = []
        self.stopping = False

    def run(self) -> int:
        previous = {
            number: signal.signal(number, self._stop) for number in (signal.SIGINT, signal.SIGTERM)
        }
        failed = False
        try:
            for sock in self.sockets:
                self.processes.append(self._start(sock))
                self.started.append(time.monotonic())
            while not self.stopping:
                wait([process.sentinel for process in self.processes], timeout=1.0)
                failed = self._replace_exited()
                self.stopping = self.stopping or failed
        finally:
            self._stop_all()
            for number, handler in previous.items():
                signal.signal(number, handler)
            for sock in self.sockets:
                sock.close()
        return 1 if failed else 0

    def _start(self, sock: socket.socket) -> BaseProcess:
        process = self.context.Process(
            target=run_worker, args=(self.options, sock), name="bevan-worker"
        )
        process.start()
        return process

    def _replace_exited(self) -> bool:
        """Start a worker in place of each that exited; return True if one failed to start."""
        for i, process in enumerate(self.processes):
            if process.exitcode is None or self.stopping:
                continue
            young = time.monotonic() - self.started[i] < STARTUP_SECONDS
            if young and process.exitcode >= 0:
                log.error(
                    "worker process %s exited with code %s while starting; stopping the server",
                    process.pid,
                    process.exitcode,
                )
                return True
            log.warning(
                "worker process %s exited with code %s; starting another",
                process.pid,
                process.exitcode,
            )
            self.processes[i] = self._start(self.sockets[i])
            self.started[i] = time.monotonic()
        return False

    def _stop(self, number: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        """SIGTERM every worker (each finishes its requests and flushes its audit), then
        kill whichever is still running after STOP_SECONDS."""
        for process in self.processes:
            if process.exitcode is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker process %s did not stop; killing it", process.pid)
                process.kill()
                process.join()
