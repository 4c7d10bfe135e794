"""`bevan serve --workers 2`: connections spread over both workers, a worker that dies is
replaced, a port in use is refused at once, and SIGTERM stops every process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, serve_command

CONNECTIONS = 32


def serve_two(data_dir: Path, port: int) -> list[str]:
    return serve_command(data_dir, port, "--workers", "2")


def wait_until_answering(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("bevan serve --workers 2 did not answer within 60 s")


def children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def workers_of(pid: int) -> set[int]:
    """The server's worker processes: its children that listen on sockets."""
    return {child for child in children(pid) if socket_inodes(child)}


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def established_on(port: int) -> set[str]:
    """Socket inodes of the connections accepted on port (server side, ESTABLISHED)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    process = subprocess.Popen(
        serve_two(tmp_path, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until_answering(port, process)
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_connections_opened_together_reach_both_workers(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = server
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}") for _ in range(CONNECTIONS)]
    try:
        for client in clients:
            assert client.get("/fhir/metadata").status_code == 200
        accepted = established_on(port)
        holders: Counter[int] = Counter()
        for worker in workers_of(process.pid):
            holders[worker] = len(socket_inodes(worker) & accepted)
        assert len(holders) == 2, f"expected two worker processes, found {holders}"
        assert sum(holders.values()) == CONNECTIONS
        # Shared out by a hash of each connection's addresses: at least 4 of 32 each
        # unless something sends them all one way (a chance of about 3 in a million).
        assert min(holders.values()) >= 4, f"connections per worker: {dict(holders)}"
    finally:
        for client in clients:
            client.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_that_dies_is_replaced_and_sigterm_stops_all(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = server
    first = workers_of(process.pid)
    assert len(first) == 2
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = workers_of(process.pid)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no worker replaced {victim}: workers now {workers_of(process.pid)}")
    # Fresh connections, to either worker, are answered; the new worker may still be
    # starting (a busy machine), so each may wait for it.
    for _ in range(20):
        answer = httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=60)
        assert answer.status_code == 200
    everyone = workers_of(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in everyone)


def test_a_port_in_use_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(serve_two(tmp_path, port), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
