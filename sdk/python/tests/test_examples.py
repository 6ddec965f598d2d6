"""Runs examples/seed.py as its own process against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_seed_example(server) -> None:  # type: ignore[no-untyped-def]
    here = Path(__file__).resolve().parent.parent
    env = dict(os.environ, FAAS_API_KEY=server.admin_key, FAAS_ENDPOINT=server.endpoint)
    env["PYTHONPATH"] = str(here) + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run([sys.executable, str(here / "examples" / "seed.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    said = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == 0, said
    # The execute part, then the streamed (replayed) output. The example prints
    # each chunk with print(), and how output is cut in chunks may vary, so only
    # the text without newlines is compared.
    first = "execute: succeeded 'Hello World\\n'\n"
    assert run.stdout.startswith(first), said
    assert run.stdout[len(first):].replace("\n", "") == "Hello World", said
