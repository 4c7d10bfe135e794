"""A real Bevan server in a subprocess on a data directory (fresh unless given) and a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

BEVAN = Path(sys.executable).with_name("bevan")
STARTUP_SECONDS = 90.0


class ServerFailed(RuntimeError):
    """The server did not start, or died while it was being measured."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is listening on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class BevanServer:
    """`bevan serve` (with N worker processes) for one scenario.

    Use as a context manager: the data directory is created on entry and removed, with
    the process, on exit; a given data_dir (already loaded) is used and kept. `token` is
    a system bearer token for this server's key.
    """

    def __init__(
        self, database: str | None = None, workers: int = 1, data_dir: Path | None = None
    ) -> None:
        self.database = database
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self.token = ""
        self._keep_data_dir = data_dir is not None
        self._data_dir = data_dir or Path(tempfile.mkdtemp(prefix="bevan-bench-"))
        self._log_path = self._data_dir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BevanServer:
        try:
            # The signing key is written by the first command that needs it; making the
            # token first means every worker process reads the same key.
            self.token = self._bevan("token", "create", "--role", "system").strip().splitlines()[-1]
            self._start()
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _data_flags(self) -> list[str]:
        flags = ["--data-dir", str(self._data_dir)]
        return flags + (["--database", self.database] if self.database else [])

    def _bevan(self, *args: str) -> str:
        done = subprocess.run(
            [str(BEVAN), *args, *self._data_flags()], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ServerFailed(f"bevan {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def _start(self) -> None:
        host_port = ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        env = dict(os.environ)
        workers = ["--workers", str(self.workers)]
        command = [str(BEVAN), "serve", *self._data_flags(), *host_port, *workers]
        log = self._log_path.open("wb")
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.base_url}/metadata", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise ServerFailed(f"no answer from {self.base_url}/metadata:\n{self.log_tail()}")

    def check_alive(self) -> None:
        """Raise ServerFailed, with the end of its log, if the server process has exited."""
        if self._process is not None and self._process.poll() is not None:
            raise ServerFailed(
                f"the server exited with code {self._process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 40) -> str:
        if not self._log_path.exists():
            return ""
        text = self._log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Return the log lines that report a server-side failure (tracebacks, errors)."""
        if not self._log_path.exists():
            return []
        text = self._log_path.read_text(errors="replace")
        return [
            line
            for line in text.splitlines()
            if "Traceback" in line or line.startswith(("ERROR", "CRITICAL"))
        ]

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL) and remove its data directory unless given."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if not self._keep_data_dir:
            shutil.rmtree(self._data_dir, ignore_errors=True)
