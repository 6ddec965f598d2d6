"""execute and get_execution against a real server with real gVisor sandboxes."""

from __future__ import annotations

import time

import pytest

from faas_sdk import ExecutionResult, FaaSClient

PROGRAMS = {
    "python": ('import sys\nprint("py out")\nprint("py err", file=sys.stderr)\nsys.exit(3)', "py out\n", "py err\n", 3),
    "javascript": ('console.log("js out"); console.error("js err"); process.exitCode = 4;', "js out\n", "js err\n", 4),
    "typescript": (
        'const n: number = 5; console.log(`ts out ${n}`); console.error("ts err"); process.exit(n);',
        "ts out 5\n",
        "ts err\n",
        5,
    ),
    "bash": ('echo "sh out"; echo "sh err" >&2; exit 6', "sh out\n", "sh err\n", 6),
}


@pytest.mark.parametrize("mode", ["ephemeral", "cached"])
@pytest.mark.parametrize("language", sorted(PROGRAMS))
def test_languages_and_modes(client: FaaSClient, language: str, mode: str) -> None:
    code, out, err, exit_code = PROGRAMS[language]
    r = client.execute(code=code, language=language, mode=mode)
    assert isinstance(r, ExecutionResult)
    assert r.status == "failed"
    assert not r.succeeded
    assert r.exit_code == exit_code
    assert r.stdout == out
    assert r.stderr == err
    assert r.output == r.stdout and r.logs == r.stderr
    assert r.mode == mode
    assert r.language == language
    assert r.execution_id.startswith("exec_")
    assert r.request_id == r.execution_id
    assert r.timed_out is False and r.oom_killed is False
    assert isinstance(r.duration_ms, int)
    assert isinstance(r.usage.cpu_ms, int)
    assert isinstance(r.usage.memory_peak_mb, int)
    assert isinstance(r.usage.cost_usd, float) or r.usage.cost_usd == 0


@pytest.mark.parametrize("mode", ["ephemeral", "cached"])
def test_command_string(client: FaaSClient, mode: str) -> None:
    r = client.execute(command="echo hello from sh; id -u", mode=mode)
    assert r.status == "succeeded" and r.succeeded
    assert r.exit_code == 0
    assert r.stdout == "hello from sh\n1000\n"
    if mode == "ephemeral":
        assert r.warm is False


def test_cached_mode_reuses_a_warm_sandbox(server, client: FaaSClient) -> None:  # type: ignore[no-untyped-def]
    # A key of its own, so the account's pool holds only this test's sandbox.
    c = server.client(api_key=client.keys.create(name="sdk-test-cached").key)
    c.execute(code="print(1)", language="python", mode="cached")
    # The sandbox is reset after each execution before it is idle again; a
    # request that comes sooner misses the pool and takes a fresh one.
    deadline = time.monotonic() + 20
    while not (c.pools().pools and c.pools().pools[0].idle == 1):
        assert time.monotonic() < deadline, "the warm sandbox never became idle"
        time.sleep(0.02)
    r = c.execute(code="print(2)", language="python", mode="cached")
    assert r.stdout == "2\n"
    assert r.warm is True


def test_command_as_argv_list(client: FaaSClient) -> None:
    r = client.execute(command=["printf", "%s|", "a b", "it's"])
    assert r.stdout == "a b|it's|"


def test_stdin(client: FaaSClient) -> None:
    r = client.execute(
        code="import sys; data = sys.stdin.read(); print(len(data), data.upper())",
        language="python",
        stdin="abc\ndef",
    )
    assert r.stdout == "7 ABC\nDEF\n"


@pytest.mark.parametrize("env_vars", [
    {"MY_VAR": "one", "lower_name": "two"},
    [("MY_VAR", "one"), ("lower_name", "two")],
])
def test_env_vars(client: FaaSClient, env_vars: object) -> None:
    r = client.execute(
        code='import os; print(os.environ["MY_VAR"], os.environ["lower_name"])',
        language="python",
        env_vars=env_vars,  # type: ignore[arg-type]
    )
    assert r.stdout == "one two\n", r.stderr


def test_working_dir_and_resources(client: FaaSClient) -> None:
    r = client.execute(
        code="import os; print(os.getcwd())",
        language="python",
        working_dir="/tmp/sdk-wd",
        resources={"cpu_cores": 1, "memory_mb": 256},
    )
    assert r.status == "succeeded", r.stderr
    assert r.stdout == "/tmp/sdk-wd\n"


def test_timeout(client: FaaSClient) -> None:
    r = client.execute(code="import time; time.sleep(30)", language="python", timeout_ms=500)
    assert r.status == "timeout"
    assert r.timed_out is True
    assert r.error
    assert r.duration_ms < 20_000


def test_persistent_mode_creates_an_instance_that_keeps_running(client: FaaSClient) -> None:
    r = client.execute(code="counter = 41\nprint(counter)", language="python", mode="persistent",
                       resources={"memory_mb": 256})
    assert r.instance_id, r
    assert "instance_id" not in r.extra
    try:
        assert r.instance_id.startswith("i-")
        assert r.status == "succeeded", r.stderr
        assert r.stdout == "41\n"
        assert r.mode == "persistent"
        # The instance lives on, with the call's resources and its interpreter's state.
        inst = client.instances.get(r.instance_id)
        assert inst.running and inst.language == "python"
        assert inst.resources.memory_mb == 256
        again = client.instances.exec(r.instance_id, code="counter += 1; print(counter)")
        assert again.stdout == "42\n", again.stderr
        # execute with instance_id runs in that instance (whatever the mode says).
        in_it = client.execute(code="print(counter)", instance_id=r.instance_id)
        assert in_it.stdout == "42\n", in_it.stderr
        assert in_it.instance_id == r.instance_id and in_it.mode == "persistent"
        cmd = client.execute(command="echo from-sh", mode="persistent", instance_id=r.instance_id)
        assert cmd.stdout == "from-sh\n" and cmd.instance_id == r.instance_id
    finally:
        client.instances.delete(r.instance_id)
    # Other modes carry no instance_id.
    assert client.execute(code="print(1)", language="python").instance_id is None


def test_persistent_mode_without_code_answers_the_instance(client: FaaSClient) -> None:
    r = client.execute(mode="persistent", language="python")
    assert r.instance_id, r
    try:
        assert r.extra["id"] == r.instance_id
        assert r.extra["state"] == "running"
        assert r.execution_id == ""
    finally:
        client.instances.delete(r.instance_id)


def test_get_execution(client: FaaSClient) -> None:
    r = client.execute(code='print("x")', language="python")
    e = client.get_execution(r.execution_id)
    assert e.execution_id == r.execution_id
    assert e.status == "succeeded"
    assert e.exit_code == 0
    assert e.mode == "ephemeral"
    assert e.language == "python"
    assert e.created_at
    assert isinstance(e.usage.cost_micro_usd, int)


def test_x_api_key_header(server) -> None:  # type: ignore[no-untyped-def]
    c = server.client(api_key="", headers={"x-api-key": server.admin_key})
    assert c.execute(command="echo ok").stdout == "ok\n"
