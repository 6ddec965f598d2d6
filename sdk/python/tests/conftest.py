"""Test fixtures: a real ``faas serve`` (bin/faas of this repository) on a free
loopback port with a temporary data directory, started once per session.

The tests need root and bin/faas, bin/faas-agent, bin/runsc (build them as the
main README says). Without them they fail with a message saying what to do;
they never skip. FAAS_TEST_BIN_DIR names another directory holding faas and
faas-agent, FAAS_RUNSC another runsc. FAAS_TEST_ENDPOINT + FAAS_TEST_API_KEY
(an admin key) point the tests at a server that is already running instead.

Each server gets its own free port for the SSH gateway (FAAS_SSH_PORT), so
several can run at once.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

from faas_sdk import FaaSClient


def repo_root() -> Path:
    """The directory above this file holding the faas go.mod."""
    d = Path(__file__).resolve().parent
    for p in [d, *d.parents]:
        mod = p / "go.mod"
        if mod.is_file() and "module github.com/faas-platform/faas\n" in mod.read_text():
            return p
    raise RuntimeError(f"go.mod of github.com/faas-platform/faas not found above {d}")


def _free_ports(n: int) -> List[int]:
    """n distinct free ports (all held until each is known, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Server:
    """A running faas server."""

    def __init__(self, endpoint: str, admin_key: str, proc: Optional[subprocess.Popen] = None,
                 tmp_dir: Optional[str] = None) -> None:
        self.endpoint = endpoint
        self.admin_key = admin_key
        self._proc = proc
        self._tmp_dir = tmp_dir

    def logs(self) -> str:
        """What the server printed so far."""
        if not self._tmp_dir:
            return "(external server)"
        try:
            return (Path(self._tmp_dir) / "serve.log").read_text(errors="replace")
        except OSError:
            return ""

    def client(self, **kwargs: object) -> FaaSClient:
        """A client with the admin key and no retries (override with kwargs)."""
        opts: Dict[str, object] = {"api_key": self.admin_key, "endpoint": self.endpoint, "max_retries": 0}
        opts.update(kwargs)
        return FaaSClient(**opts)  # type: ignore[arg-type]

    def stop(self) -> None:
        """SIGTERM, wait up to 60 s (then SIGKILL), remove the data directory."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._tmp_dir:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)


def _term_with_parent() -> None:
    """In the child before exec: get SIGTERM (a clean shutdown) if pytest dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_server(extra_env: Optional[Dict[str, str]] = None) -> Server:
    """Start a server (extra_env adds environment variables, e.g. FAAS_STOCK)."""
    external = os.environ.get("FAAS_TEST_ENDPOINT")
    if external and not extra_env:
        key = os.environ.get("FAAS_TEST_API_KEY")
        if not key:
            pytest.fail("FAAS_TEST_ENDPOINT is set but FAAS_TEST_API_KEY (an admin key) is not")
        return Server(external, key)

    if os.geteuid() != 0:
        pytest.fail("the SDK tests start a real faas server that runs gVisor sandboxes, "
                    "which needs root: run them as root", pytrace=False)
    root = repo_root()
    bin_dir = Path(os.environ.get("FAAS_TEST_BIN_DIR") or root / "bin")
    faas = bin_dir / "faas"
    agent = bin_dir / "faas-agent"
    runsc = Path(os.environ.get("FAAS_RUNSC") or root / "bin" / "runsc")
    for path, how in [
        (faas, "CGO_ENABLED=0 go build -o bin/faas ./cmd/faas"),
        (agent, "CGO_ENABLED=0 go build -o bin/faas-agent ./cmd/faas-agent"),
        (runsc, "scripts/build-runsc.sh (or set FAAS_RUNSC)"),
    ]:
        if not path.exists():
            pytest.fail(f"{path} is missing: build it in {root} with {how}", pytrace=False)

    port, ssh_port = _free_ports(2)
    tmp_dir = tempfile.mkdtemp(prefix="faas-sdk-py-")
    data_dir = os.path.join(tmp_dir, "data")
    key = "faas_" + secrets.token_hex(20)
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update({
        "FAAS_DATA_DIR": data_dir,
        "FAAS_API_PORT": str(port),
        "FAAS_API_KEY": key,
        "FAAS_HOST": "127.0.0.1",
        "FAAS_RUNSC": str(runsc),
        "FAAS_AGENT": str(agent),
        "FAAS_SSH_PORT": str(ssh_port),
    })
    env.update(extra_env or {})
    # The log goes to a file, not a pipe: a server whose reader died would be
    # killed by SIGPIPE on its next log line, before cleaning up its sandboxes.
    with open(os.path.join(tmp_dir, "serve.log"), "wb") as log:
        proc = subprocess.Popen([str(faas), "serve"], env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_term_with_parent)
    server = Server(endpoint, key, proc, tmp_dir)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            server.stop()
            pytest.fail(f"faas serve exited during start-up ({proc.returncode}):\n{server.logs()}", pytrace=False)
        try:
            with urllib.request.urlopen(endpoint + "/health", timeout=5) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass  # not listening yet, or 503 while starting
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"faas serve not healthy after 60 s:\n{server.logs()}", pytrace=False)
        time.sleep(0.05)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The session's server."""
    s = start_server()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def server_factory() -> Iterator[Callable[[Dict[str, str]], Server]]:
    """Starts extra servers with their own settings; stops them at the end."""
    started: List[Server] = []

    def start(extra_env: Dict[str, str]) -> Server:
        s = start_server(extra_env)
        started.append(s)
        return s

    try:
        yield start
    finally:
        for s in started:
            s.stop()


@pytest.fixture()
def client(server: Server) -> FaaSClient:
    """A client with the admin key and no retries."""
    return server.client()
