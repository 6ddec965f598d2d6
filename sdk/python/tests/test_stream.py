"""client.stream(): live output over Server-Sent Events, against a real server.

To follow an execution while it runs, the test needs its id before it ends,
which POST /api/v1/execute only gives at the end; so the test starts it over the
server's WebSocket endpoint (GET /api/v1/execute/stream) with Debian's
python3-websockets (a test-only dependency; the SDK itself uses no WebSocket).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, List

import pytest

from faas_sdk import FaaSClient, FaaSError, StreamOutput


def test_replay_of_a_finished_execution(client: FaaSClient) -> None:
    r = client.execute(
        code='import sys\nprint("one")\nprint("oops", file=sys.stderr)\nprint("two")\nsys.exit(3)',
        language="python",
    )
    stream = client.stream(r.execution_id)
    outputs: List[StreamOutput] = list(stream)
    assert "".join(o.data for o in outputs if o.stream == "stdout") == "one\ntwo\n"
    assert "".join(o.data for o in outputs if o.stream == "stderr") == "oops\n"
    assert stream.exit_code == 3
    assert stream.result is not None
    assert stream.result.status == "failed"
    assert stream.result.exit_code == 3
    assert stream.result.execution_id == r.execution_id
    assert stream.result.stdout == "one\ntwo\n"
    assert list(stream) == [], "a finished stream yields nothing more"


def test_async_for_replay(client: FaaSClient) -> None:
    r = client.execute(command="echo a; echo b >&2")

    async def collect() -> List[Any]:
        return [(o.stream, o.data) async for o in client.stream(r.execution_id)]

    got = asyncio.run(collect())
    assert sorted(got) == [("stderr", "b\n"), ("stdout", "a\n")]


def test_live_following(server: Any, client: FaaSClient) -> None:
    try:
        import websockets  # type: ignore[import-not-found]
    except ImportError:
        pytest.fail("this test needs python3-websockets (apt-get install -y python3-websockets; "
                    "scripts/test-sdk.sh installs it)", pytrace=False)
    url = server.endpoint.replace("http", "ws", 1) + "/api/v1/execute/stream?api_key=" + server.admin_key

    async def scenario() -> None:
        async with websockets.connect(url) as ws:
            # The program writes "ready", then blocks until the test sends a line.
            await ws.send(json.dumps({
                "type": "exec",
                "language": "python",
                "code": 'import sys\nprint("ready", flush=True)\nline = sys.stdin.readline()\nprint("got", line.strip())',
            }))
            while True:
                f = json.loads(await ws.recv())
                if f["type"] == "started":
                    execution_id = f["execution_id"]
                    break
            stream = client.stream(execution_id)
            out = ""
            sent = False
            async for o in stream:
                assert o.stream == "stdout"
                out += o.data
                if "ready" in out and not sent:
                    # "ready" arrived while the program still waits for its input.
                    assert stream.exit_code is None
                    record = client.get_execution(execution_id)
                    assert record.status == "running" and record.exit_code is None
                    await ws.send(json.dumps({"type": "stdin", "data": "go\n"}))
                    sent = True
            assert out == "ready\ngot go\n"
            assert stream.exit_code == 0
            assert stream.result is not None and stream.result.status == "succeeded"
            assert client.get_execution(execution_id).exit_code == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_unknown_execution_is_404(client: FaaSClient) -> None:
    with pytest.raises(FaaSError) as ei:
        list(client.stream("exec_does_not_exist"))
    assert ei.value.status == 404


def test_another_account_gets_404(server: Any, client: FaaSClient) -> None:
    r = client.execute(command="echo mine")
    k = client.keys.create(name="sdk-test-stream-other")
    with pytest.raises(FaaSError) as ei:
        list(server.client(api_key=k.key).stream(r.execution_id))
    assert ei.value.status == 404


def test_close_stops_following(client: FaaSClient) -> None:
    r = client.execute(command="echo x; echo y")
    with client.stream(r.execution_id) as stream:
        first = next(stream)
        assert first.data
    assert list(stream) == []
    assert stream.exit_code is None, "closed before the exit"
