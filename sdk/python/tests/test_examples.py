"""Runs the examples as their own processes against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Tuple


def run_example(server, name: str) -> Tuple[str, str]:  # type: ignore[no-untyped-def]
    """Runs examples/<name> with the server's endpoint and admin key; returns
    its stdout and a description of the run for assertion messages."""
    here = Path(__file__).resolve().parent.parent
    env = dict(os.environ, FAAS_API_KEY=server.admin_key, FAAS_ENDPOINT=server.endpoint)
    env["PYTHONPATH"] = str(here) + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run([sys.executable, str(here / "examples" / name)], env=env,
                         capture_output=True, text=True, timeout=120)
    said = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == 0, said
    return run.stdout, said


def test_seed_example(server) -> None:  # type: ignore[no-untyped-def]
    stdout, said = run_example(server, "seed.py")
    # The execute part, then the streamed (replayed) output. The example prints
    # each chunk with print(), and how output is cut in chunks may vary, so only
    # the text without newlines is compared.
    first = "execute: succeeded 'Hello World\\n'\n"
    assert stdout.startswith(first), said
    assert stdout[len(first):].replace("\n", "") == "Hello World", said


def test_branching_example(server) -> None:  # type: ignore[no-untyped-def]
    stdout, said = run_example(server, "branching.py")
    assert stdout == (
        "session: succeeded setup done\n"
        "checkpoint: 10 snapshot\n"
        "branch: 4 base -> 20\n"
        "branch: 4 base -> 30\n"
        "branch: 4 base -> 100\n"
        "session again: 10\n"
    ), said
