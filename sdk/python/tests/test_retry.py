"""Retries of 429/503 honouring Retry-After, against a real server made busy: it
may hold one sandbox at a time, so a second concurrent execution gets 503 busy
with Retry-After: 1."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterator

import pytest

from faas_sdk import FaaSError, parse_retry_after


@pytest.fixture(scope="module")
def busy_server(server_factory: Callable[[Dict[str, str]], Any]) -> Iterator[Any]:
    yield server_factory({"FAAS_MAX_SANDBOXES": "1", "FAAS_STOCK": "0"})


class Occupied:
    """Takes the server's one sandbox with a 3-second execution, from a thread."""

    def __init__(self, server: Any) -> None:
        c = server.client(max_retries=20)
        deadline = time.monotonic() + 20
        # The previous test's sandbox may still be on its way out.
        while c.health().sandboxes.live > 0:
            assert time.monotonic() < deadline, "a sandbox stays live on an idle server"
            time.sleep(0.02)
        self.result: Any = None
        self.thread = threading.Thread(target=self._run, args=(c,))
        self.thread.start()
        while c.health().sandboxes.live < 1:
            assert time.monotonic() < deadline, "the long execution never started"
            time.sleep(0.02)

    def _run(self, c: Any) -> None:
        self.result = c.execute(code='import time; time.sleep(3); print("long")', language="python")

    def wait(self) -> None:
        self.thread.join(30)
        assert self.result is not None and self.result.stdout == "long\n"


def test_without_retries_503_surfaces(busy_server: Any) -> None:
    occ = Occupied(busy_server)
    t0 = time.monotonic()
    with pytest.raises(FaaSError) as ei:
        busy_server.client(max_retries=0).execute(command="echo second")
    e = ei.value
    assert e.status == 503
    assert e.code == "busy"
    assert e.retry_after == 1.0
    assert e.is_retryable
    assert time.monotonic() - t0 < 0.9, "no retry was made"
    occ.wait()


def test_retries_wait_and_succeed(busy_server: Any) -> None:
    occ = Occupied(busy_server)
    t0 = time.monotonic()
    r = busy_server.client(max_retries=10).execute(command="echo second")
    assert r.stdout == "second\n"
    assert time.monotonic() - t0 >= 0.9, "it waited at least one Retry-After second"
    occ.wait()


def test_retries_are_bounded(busy_server: Any) -> None:
    occ = Occupied(busy_server)
    t0 = time.monotonic()
    with pytest.raises(FaaSError) as ei:
        busy_server.client(max_retries=1, max_retry_wait=0.1).execute(command="echo x")
    took = time.monotonic() - t0
    assert ei.value.status == 503
    assert 0.1 <= took < 2.5, f"one capped wait of 0.1 s, took {took:.2f} s"
    occ.wait()


def test_rate_limited_429(busy_server: Any) -> None:
    # A key allowed one request a second, with no burst beyond it.
    k = busy_server.client().keys.create(name="sdk-test-slow", rate_per_minute=60, burst=1)
    strict = busy_server.client(api_key=k.key, max_retries=0)
    strict.pools()
    with pytest.raises(FaaSError) as ei:
        strict.pools()
    e = ei.value
    assert e.status == 429
    assert e.code == "rate_limited"
    assert e.retry_after is not None and e.retry_after >= 1
    patient = busy_server.client(api_key=k.key, max_retries=5)
    assert isinstance(patient.pools().pools, list)


def test_parse_retry_after() -> None:
    now = 1767225600.0  # 2026-01-01T00:00:00Z
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:05 GMT", now) == 5.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
