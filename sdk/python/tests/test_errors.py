"""Errors: every refusal is a FaaSError (404 a NotFoundError, 409 a
ConflictError, 422 an UnprocessableError) with the server's status, code and
message; what the server does not offer surfaces its 501."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from faas_sdk import (
    ConflictError,
    FaaSClient,
    FaaSError,
    MergeConflictError,
    NotFoundError,
    UnprocessableError,
)


def test_bad_api_key(server) -> None:  # type: ignore[no-untyped-def]
    bad = server.client(api_key="faas_not_a_real_key")
    with pytest.raises(FaaSError) as ei:
        bad.execute(code="print(1)", language="python")
    e = ei.value
    assert e.status == 401
    assert e.code == "unauthorized"
    assert e.message == "invalid API key"
    assert e.request == "POST /api/v1/execute"
    assert str(e) == "invalid API key (401 unauthorized, POST /api/v1/execute)"


def test_no_api_key(server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FaaSError) as ei:
        server.client(api_key="").pools()
    assert ei.value.status == 401
    assert "Authorization: Bearer" in ei.value.message


def test_unknown_language(client: FaaSClient) -> None:
    with pytest.raises(FaaSError) as ei:
        client.execute(code="x", language="cobol")
    e = ei.value
    assert e.status == 400
    assert e.code == "invalid_request"
    assert 'unknown language "cobol"' in e.message
    assert not e.is_retryable


def test_limit_out_of_range(client: FaaSClient) -> None:
    with pytest.raises(FaaSError) as ei:
        client.execute(code="print(1)", language="python", resources={"memory_mb": 1})
    assert ei.value.status == 400
    assert "memory" in ei.value.message


def test_execute_in_an_unknown_instance_is_not_found(client: FaaSClient) -> None:
    with pytest.raises(NotFoundError) as ei:
        client.execute(code="print(1)", mode="persistent", instance_id="i-0000000000000000")
    assert ei.value.status == 404 and ei.value.code == "not_found"


def test_unknown_execution_is_404(client: FaaSClient) -> None:
    with pytest.raises(FaaSError) as ei:
        client.get_execution("exec_does_not_exist")
    assert ei.value.status == 404
    assert ei.value.code == "not_found"
    assert ei.value.is_not_found
    assert isinstance(ei.value, NotFoundError)
    assert repr(ei.value).startswith("NotFoundError(status=404, code='not_found'")


def test_error_classes() -> None:
    from faas_sdk.errors import error_class

    assert error_class(404, "not_found") is NotFoundError
    assert error_class(409, "snapshot_broken") is ConflictError
    assert error_class(409, "merge_conflict") is MergeConflictError
    assert error_class(422, "unprocessable") is UnprocessableError
    assert error_class(400, "invalid_request") is FaaSError
    e = MergeConflictError(409, "merge_conflict", "conflict", body={"paths": ["/workspace/a", 3]})
    assert e.paths == ["/workspace/a"]
    assert MergeConflictError(409, "merge_conflict", "conflict").paths == []


def test_missing_scope_is_403(server, client: FaaSClient) -> None:  # type: ignore[no-untyped-def]
    k = client.keys.create(name="sdk-test-exec-only", scopes=["execute"])
    assert k.key
    with pytest.raises(FaaSError) as ei:
        server.client(api_key=k.key).keys.list()
    assert ei.value.status == 403
    assert ei.value.code == "forbidden"


def test_no_server_is_network_error() -> None:
    gone = FaaSClient(api_key="x", endpoint="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(FaaSError) as ei:
        gone.pools()
    assert ei.value.status == 0
    assert ei.value.code == "network_error"
    assert ei.value.__cause__ is not None


def test_empty_ids_are_refused_before_any_request(client: FaaSClient) -> None:
    with pytest.raises(ValueError):
        client.get_execution("")
    with pytest.raises(ValueError):
        client.create_snapshot("")
    with pytest.raises(ValueError):
        client.sessions.get("")
    with pytest.raises(ValueError):
        client.snapshots.restore("snap_x", session_id="")
    with pytest.raises(ValueError):
        client.branches.merge(["br_a", ""])


# Unknown ids are 404 (NotFoundError) on endpoints the server has.
UNKNOWN: dict = {
    "create_snapshot": lambda c: c.create_snapshot("exec_does_not_exist", name="n"),
    "snapshots.get": lambda c: c.snapshots.get("snap_does_not_exist"),
    "snapshots.delete": lambda c: c.snapshots.delete("snap_does_not_exist"),
    "snapshots.restore": lambda c: c.snapshots.restore("snap_does_not_exist"),
    "create_branch": lambda c: c.create_branch("snap_does_not_exist", "print(1)", language="python"),
    "sessions.get": lambda c: c.sessions.get("ses_does_not_exist"),
    "sessions.delete": lambda c: c.sessions.delete("ses_does_not_exist"),
}


@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_unknown_ids_are_not_found(client: FaaSClient, name: str) -> None:
    with pytest.raises(NotFoundError) as ei:
        UNKNOWN[name](client)
    assert ei.value.status == 404, str(ei.value)
    assert ei.value.code == "not_found"
    assert ei.value.message


# Instance endpoints: an unknown instance is 404 (NotFoundError) on each.
UNKNOWN_INSTANCE: dict = {
    "instances.get": lambda c, d: c.instances.get("i-0000000000000000"),
    "instances.exec": lambda c, d: c.instances.exec("i-0000000000000000", command="true"),
    "instances.stop": lambda c, d: c.instances.stop("i-0000000000000000"),
    "instances.pause": lambda c, d: c.instances.pause("i-0000000000000000"),
    "instances.expose": lambda c, d: c.instances.expose("i-0000000000000000", 3000, name="web"),
    "instances.unexpose": lambda c, d: c.instances.unexpose("i-0000000000000000", "web"),
    "instances.ssh": lambda c, d: c.instances.ssh("i-0000000000000000"),
    "instances.delete": lambda c, d: c.instances.delete("i-0000000000000000"),
    "instances.upload": lambda c, d: c.instances.upload("i-0000000000000000", "/workspace/a.txt", b"x"),
    "instances.download": lambda c, d: c.instances.download("i-0000000000000000", "/workspace/a.txt"),
    "instances.sync": lambda c, d: c.instances.sync("i-0000000000000000", str(d)),
    "instances.vscode": lambda c, d: c.instances.vscode("i-0000000000000000"),
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_INSTANCE))
def test_unknown_instance_is_not_found(client: FaaSClient, tmp_path: Path, name: str) -> None:
    (tmp_path / "a.txt").write_text("hello")
    call: Callable[[FaaSClient, Path], Any] = UNKNOWN_INSTANCE[name]
    with pytest.raises(NotFoundError) as ei:
        call(client, tmp_path)
    assert ei.value.status == 404, str(ei.value)
    assert ei.value.code == "not_found"
    assert ei.value.message


def test_sync_goes_to_the_documented_endpoint(client: FaaSClient, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(FaaSError) as ei:
        client.instances.sync("i-0000000000000000", str(tmp_path), "/workspace")
    assert ei.value.request == "POST /api/v1/instances/i-0000000000000000/sync"


def test_instance_ids_and_arguments_are_checked_before_any_request(client: FaaSClient, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        client.instances.get("")
    with pytest.raises(ValueError):
        client.instances.unexpose("i-0000000000000000", "")
    with pytest.raises(ValueError):
        client.instances.sync("i-0000000000000000", str(tmp_path / "missing"))
    with pytest.raises(TypeError):
        client.instances.upload("i-0000000000000000", "/workspace/a", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.instances.upload("i-0000000000000000", "/workspace/a", b"", mode=0o1000)
