"""Sessions, snapshots, branches and merge against a real server with real
gVisor sandboxes (checkpoint and restore included)."""

from __future__ import annotations

import secrets
from typing import Iterator, List

import pytest

from faas_sdk import (
    ConflictError,
    ExecutionResult,
    FaaSClient,
    FaaSError,
    MergeChange,
    MergeConflictError,
    MergeResult,
    NotFoundError,
    Session,
    Snapshot,
)


class Cleanup:
    """Ends the sessions and deletes the snapshots a test made (each session
    holds a live sandbox until it ends)."""

    def __init__(self, client: FaaSClient) -> None:
        self.client = client
        self.sessions: List[str] = []
        self.snapshots: List[str] = []

    def session(self, session_id: str) -> str:
        self.sessions.append(session_id)
        return session_id

    def snapshot(self, snapshot_id: str) -> str:
        self.snapshots.append(snapshot_id)
        return snapshot_id

    def run(self) -> None:
        for sid in self.sessions:
            try:
                self.client.sessions.delete(sid)
            except NotFoundError:
                pass
        for snap in self.snapshots:
            try:
                self.client.snapshots.delete(snap)
            except NotFoundError:
                pass


@pytest.fixture()
def cleanup(client: FaaSClient) -> Iterator[Cleanup]:
    c = Cleanup(client)
    try:
        yield c
    finally:
        c.run()


def new_id(prefix: str = "py-sdk") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def checkpointed(client: FaaSClient, cleanup: Cleanup, code: str) -> ExecutionResult:
    """Runs code in a new python session and snapshots it (checkpoint_after)."""
    r = client.execute(code=code, language="python", session_id=cleanup.session(new_id()), checkpoint_after=True)
    assert r.status == "succeeded", r.stderr
    assert r.snapshot_id, r.snapshot_error
    cleanup.snapshot(r.snapshot_id)
    return r


# --- sessions ----------------------------------------------------------------


def test_session_state_persists_across_executes(client: FaaSClient, cleanup: Cleanup) -> None:
    sid = cleanup.session(new_id())
    r1 = client.execute(
        code="import json\ncounter = 40\nopen('/workspace/f.txt', 'w').write('kept')",
        language="python",
        session_id=sid,
    )
    assert r1.status == "succeeded", r1.stderr
    assert r1.session_id == sid
    assert r1.branch_id is None
    assert r1.mode == "checkpointed"
    assert r1.snapshot_id is None and r1.snapshot_error is None
    # No language: the session's is used. Globals, imports and files are kept.
    r2 = client.execute(code="counter += 2\nprint(json.dumps(counter), open('/workspace/f.txt').read())",
                        session_id=sid)
    assert r2.stdout == "42 kept\n", r2.stderr
    assert r2.session_id == sid
    assert r2.language == "python"
    assert r2.execution_id != r1.execution_id


def test_javascript_session_state_persists(client: FaaSClient, cleanup: Cleanup) -> None:
    sid = cleanup.session(new_id())
    r1 = client.execute(code="globalThis.total = 1;", language="javascript", session_id=sid)
    assert r1.status == "succeeded", r1.stderr
    r2 = client.execute(code="total += 1; console.log(total);", session_id=sid)
    assert r2.stdout == "2\n", r2.stderr
    assert r2.language == "javascript"


def test_checkpointed_mode_without_session_id_makes_one(client: FaaSClient, cleanup: Cleanup) -> None:
    r = client.execute(code="v = 7", language="python", mode="checkpointed")
    assert r.session_id
    cleanup.session(r.session_id)
    assert client.execute(code="print(v)", session_id=r.session_id).stdout == "7\n"


def test_sessions_list_get_delete(client: FaaSClient, cleanup: Cleanup) -> None:
    sid = cleanup.session(new_id())
    client.execute(code="a = 1", language="python", session_id=sid)
    client.execute(code="a += 1", session_id=sid)

    listed = {s.id: s for s in client.sessions.list()}
    assert sid in listed
    assert isinstance(listed[sid], Session)

    s = client.sessions.get(sid)
    assert isinstance(s, Session)
    assert s.id == sid and s.session_id == sid
    assert s.branch_id is None and not s.is_branch
    assert s.language == "python"
    assert s.executions == 2
    assert s.memory_mb > 0
    assert s.memory_used_mb > 0
    assert s.created_at and s.last_used_at
    assert s.extra == {}

    assert client.sessions.delete(sid) is None
    with pytest.raises(NotFoundError) as ei:
        client.sessions.get(sid)
    assert ei.value.status == 404 and ei.value.code == "not_found"
    assert sid not in {x.id for x in client.sessions.list()}
    with pytest.raises(NotFoundError):
        client.sessions.delete(sid)


def test_sessions_refuse_commands(client: FaaSClient, cleanup: Cleanup) -> None:
    with pytest.raises(FaaSError) as ei:
        client.execute(command="echo hi", session_id=cleanup.session(new_id()))
    assert ei.value.status == 400
    assert ei.value.code == "invalid_request"


def test_branched_mode_needs_a_snapshot(client: FaaSClient) -> None:
    with pytest.raises(FaaSError) as ei:
        client.execute(code="print(1)", language="python", mode="branched")
    assert ei.value.status in (400, 404)
    assert ei.value.message


# --- snapshots ---------------------------------------------------------------


def test_checkpoint_after_returns_snapshot_id(client: FaaSClient, cleanup: Cleanup) -> None:
    r = checkpointed(client, cleanup, "state = 'saved'\nprint(state)")
    assert r.stdout == "saved\n"
    assert r.snapshot_id and r.snapshot_id.startswith("snap_")
    assert r.snapshot_error is None
    sn = client.snapshots.get(r.snapshot_id)
    assert sn.id == r.snapshot_id
    assert sn.session_id == r.session_id
    assert sn.ready


def test_create_snapshot_of_a_checkpointed_execution(client: FaaSClient, cleanup: Cleanup) -> None:
    r = client.execute(code="x = 1", language="python", mode="checkpointed")
    cleanup.session(r.session_id or "")
    sn = client.create_snapshot(r.execution_id, name="py-sdk-snap")
    cleanup.snapshot(sn.id)
    assert isinstance(sn, Snapshot)
    assert sn.id.startswith("snap_") and sn.snapshot_id == sn.id
    assert sn.name == "py-sdk-snap"
    assert sn.execution_id == r.execution_id
    assert sn.session_id == r.session_id
    assert sn.language == "python"
    assert sn.status == "ready" and sn.ready
    assert sn.size_bytes > 0 and len(sn.sha256) == 64
    assert sn.parent_id is None and sn.children == []
    assert sn.created_at
    # The session goes on after a snapshot.
    assert client.execute(code="print(x)", session_id=r.session_id).stdout == "1\n"


def test_create_snapshot_of_an_ephemeral_execution_is_not_found(client: FaaSClient) -> None:
    r = client.execute(code="print(1)", language="python")
    assert r.mode == "ephemeral" and r.session_id is None
    with pytest.raises(NotFoundError) as ei:
        client.create_snapshot(r.execution_id)
    e = ei.value
    assert isinstance(e, FaaSError)
    assert e.status == 404 and e.code == "not_found" and e.is_not_found
    assert r.execution_id in e.message
    assert "did not run in a live session" in e.message
    assert e.request == "POST /api/v1/snapshots"


def test_snapshots_create_by_session_id(client: FaaSClient, cleanup: Cleanup) -> None:
    sid = cleanup.session(new_id())
    client.execute(code="z = 3", language="python", session_id=sid)
    sn = client.snapshots.create(session_id=sid, name="by-session")
    cleanup.snapshot(sn.id)
    assert sn.session_id == sid and sn.name == "by-session"
    assert sn.execution_id is None


def test_snapshots_create_needs_exactly_one_source(client: FaaSClient) -> None:
    with pytest.raises(ValueError):
        client.snapshots.create()
    with pytest.raises(ValueError):
        client.snapshots.create(execution_id="exec_x", session_id="s")
    with pytest.raises(ValueError):
        client.snapshots.create(branch_id="")


def test_snapshots_list_get_delete(client: FaaSClient, cleanup: Cleanup) -> None:
    r = checkpointed(client, cleanup, "n = 1")
    snap = r.snapshot_id or ""
    listed = client.snapshots.list()
    assert all(isinstance(s, Snapshot) for s in listed)
    assert snap in [s.id for s in listed]
    created = [s.created_at for s in listed]
    assert created == sorted(created), "oldest first"

    got = client.snapshots.get(snap)
    assert got.id == snap and got.session_id == r.session_id and got.language == "python"

    assert client.snapshots.delete(snap) is None
    with pytest.raises(NotFoundError) as ei:
        client.snapshots.get(snap)
    assert ei.value.request == f"GET /api/v1/snapshots/{snap}"
    assert snap not in [s.id for s in client.snapshots.list()]
    with pytest.raises(NotFoundError):
        client.snapshots.delete(snap)


def test_unknown_snapshot_is_not_found(client: FaaSClient) -> None:
    for call in (
        lambda: client.snapshots.get("snap_does_not_exist"),
        lambda: client.snapshots.restore("snap_does_not_exist"),
        lambda: client.create_branch("snap_does_not_exist", "print(1)"),
        lambda: client.execute(code="print(1)", snapshot_id="snap_does_not_exist"),
    ):
        with pytest.raises(NotFoundError) as ei:
            call()
        assert "snap_does_not_exist" in ei.value.message or ei.value.message == "not found"


def test_restore_gives_a_usable_session(client: FaaSClient, cleanup: Cleanup) -> None:
    r = checkpointed(client, cleanup, "items = ['a']\nopen('/workspace/r.txt', 'w').write('file')")
    snap = r.snapshot_id or ""

    s = client.snapshots.restore(snap)
    cleanup.session(s.id)
    assert isinstance(s, Session)
    assert s.id and s.session_id == s.id and s.id != r.session_id
    assert s.parent_snapshot == snap
    assert s.language == "python"
    out = client.execute(code="items.append('b')\nprint(items, open('/workspace/r.txt').read())", session_id=s.id)
    assert out.stdout == "['a', 'b'] file\n", out.stderr
    assert out.session_id == s.id

    # A chosen id; the first restore's change is not in it.
    chosen = cleanup.session(new_id("py-sdk-restored"))
    s2 = client.snapshots.restore(snap, session_id=chosen)
    assert s2.id == chosen
    assert client.execute(code="print(items)", session_id=chosen).stdout == "['a']\n"
    # The original session was left as it was.
    assert client.execute(code="print(items)", session_id=r.session_id).stdout == "['a']\n"


def test_execute_with_snapshot_id_restores_into_a_new_session(client: FaaSClient, cleanup: Cleanup) -> None:
    r = checkpointed(client, cleanup, "k = 'restored'")
    out = client.execute(code="print(k)", snapshot_id=r.snapshot_id)
    cleanup.session(out.session_id or "")
    assert out.stdout == "restored\n", out.stderr
    assert out.session_id and out.session_id != r.session_id
    assert out.mode == "checkpointed"


# --- branches ----------------------------------------------------------------


def test_create_branch(client: FaaSClient, cleanup: Cleanup) -> None:
    r = checkpointed(client, cleanup, "base = 10")
    b = client.create_branch(r.snapshot_id or "", code="base += 1\nprint(base)", language="python")
    assert isinstance(b, ExecutionResult)
    cleanup.session(b.branch_id or "")
    assert b.branch_id and b.branch_id == b.session_id
    assert b.stdout == "11\n", b.stderr
    assert b.status == "succeeded" and b.mode == "branched"

    # The branch is a session of its own: continue it, look it up.
    assert client.execute(code="print(base)", session_id=b.branch_id).stdout == "11\n"
    cont = client.execute(code="print(base * 2)", mode="branched", session_id=b.branch_id)
    assert cont.stdout == "22\n" and cont.branch_id == b.branch_id
    s = client.sessions.get(b.branch_id)
    assert s.is_branch and s.branch_id == b.branch_id
    assert s.parent_snapshot == r.snapshot_id
    # The parent session did not change.
    assert client.execute(code="print(base)", session_id=r.session_id).stdout == "10\n"


def test_branch_from_alias_in_execute(client: FaaSClient, cleanup: Cleanup) -> None:
    r = checkpointed(client, cleanup, "word = 'branch'")
    b = client.execute(code="print(word)", branch_from=r.snapshot_id)
    cleanup.session(b.branch_id or "")
    assert b.stdout == "branch\n", b.stderr
    assert b.mode == "branched" and b.branch_id
    b2 = client.execute(code="print(word)", parent_snapshot=r.snapshot_id)
    cleanup.session(b2.branch_id or "")
    assert b2.branch_id and b2.branch_id != b.branch_id
    with pytest.raises(ValueError):
        client.execute(code="print(1)", parent_snapshot=r.snapshot_id, branch_from="snap_other")


def test_branches_create_count_3(client: FaaSClient, cleanup: Cleanup) -> None:
    r = checkpointed(client, cleanup, "seen = ['parent']\nopen('/workspace/p.txt', 'w').write('p')")
    snap = r.snapshot_id or ""
    branches = client.branches.create(snap, code="print(seen, open('/workspace/p.txt').read())", count=3)
    for b in branches:
        cleanup.session(b.branch_id or "")
    assert len(branches) == 3
    assert all(isinstance(b, ExecutionResult) for b in branches)
    ids = [b.branch_id for b in branches]
    assert all(ids) and len(set(ids)) == 3
    assert len({b.execution_id for b in branches}) == 3
    for b in branches:
        assert b.stdout == "['parent'] p\n", b.stderr
        assert b.mode == "branched" and b.session_id == b.branch_id

    # Each branch goes its own way.
    for i, b in enumerate(branches):
        client.execute(code=f"seen.append({i})", session_id=b.branch_id)
    for i, b in enumerate(branches):
        assert client.execute(code="print(seen)", session_id=b.branch_id).stdout == f"['parent', {i}]\n"

    # Snapshot of a branch: its parent is the snapshot it branched from.
    child = client.snapshots.create(branch_id=branches[0].branch_id)
    cleanup.snapshot(child.id)
    assert child.parent_id == snap
    assert child.session_id == branches[0].branch_id


def test_branches_create_with_options(client: FaaSClient, cleanup: Cleanup) -> None:
    r = checkpointed(client, cleanup, "import os")
    name = new_id("py-sdk-branch")
    [b] = client.branches.create(r.snapshot_id or "", code="print(1)", session_id=name, checkpoint_after=True)
    cleanup.session(b.branch_id or "")
    assert b.branch_id == name
    assert b.snapshot_id, b.snapshot_error
    cleanup.snapshot(b.snapshot_id)
    assert client.snapshots.get(b.snapshot_id).parent_id == r.snapshot_id


# --- merge -------------------------------------------------------------------


def test_merge_branches(client: FaaSClient, cleanup: Cleanup) -> None:
    r = checkpointed(client, cleanup, "import os\nopen('/workspace/base.txt', 'w').write('base')")
    snap = r.snapshot_id or ""

    # Union of two branches writing different files.
    a, b = client.branches.create(snap, code="pass", count=2)
    cleanup.session(a.branch_id or "")
    cleanup.session(b.branch_id or "")
    client.execute(code="open('/workspace/a.txt', 'w').write('from a')", session_id=a.branch_id)
    client.execute(code="open('/workspace/b.txt', 'w').write('from b')", session_id=b.branch_id)
    m = client.branches.merge([a.branch_id or "", b.branch_id or ""], strategy="union", name="py-sdk-merged")
    assert isinstance(m, MergeResult)
    cleanup.snapshot(m.snapshot.id)
    assert isinstance(m.snapshot, Snapshot) and m.snapshot.id.startswith("snap_")
    assert m.strategy == "union"
    assert m.base_snapshot == snap
    assert all(isinstance(c, MergeChange) for c in m.changes)
    changes = {(c.path, c.action, c.branch_id) for c in m.changes}
    assert ("/workspace/a.txt", "write", a.branch_id) in changes
    assert ("/workspace/b.txt", "write", b.branch_id) in changes
    # The merged snapshot restores with both files and the parent's memory.
    s = client.snapshots.restore(m.snapshot.id)
    cleanup.session(s.id)
    out = client.execute(
        code="print(open('/workspace/a.txt').read(), open('/workspace/b.txt').read(), os.name)", session_id=s.id
    )
    assert out.stdout == "from a from b posix\n", out.stderr

    # Conflict: both write the same path with different content.
    c, d = client.branches.create(snap, code="pass", count=2)
    cleanup.session(c.branch_id or "")
    cleanup.session(d.branch_id or "")
    client.execute(code="open('/workspace/same.txt', 'w').write('one')", session_id=c.branch_id)
    client.execute(code="open('/workspace/same.txt', 'w').write('two')", session_id=d.branch_id)
    with pytest.raises(MergeConflictError) as ei:
        client.branches.merge([c.branch_id or "", d.branch_id or ""])
    e = ei.value
    assert isinstance(e, ConflictError) and isinstance(e, FaaSError)
    assert e.status == 409 and e.code == "merge_conflict"
    assert "/workspace/same.txt" in e.paths
    assert e.request == "POST /api/v1/branches/merge"
