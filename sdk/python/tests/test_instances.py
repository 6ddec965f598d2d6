"""Persistent instances against a real server: lifecycle, exec (commands and a
live interpreter), files, sync, pause/resume, stop/start, exposed ports, SSH,
development servers and account isolation."""

from __future__ import annotations

import io
import os
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from faas_sdk import (
    DEFAULT_SYNC_EXCLUDE,
    ConflictError,
    Exposure,
    FaaSClient,
    FaaSError,
    Instance,
    NotFoundError,
    SSHInfo,
    UnprocessableError,
    build_sync_archive,
)

# exec on an instance may wait for a cold sandbox; leave HTTP room for it.
TIMEOUT = 120.0


@pytest.fixture()
def make_instance(client: FaaSClient) -> Iterator[Callable[..., Instance]]:
    """Creates instances (with the admin key) and deletes them at the end."""
    made: List[str] = []

    def make(**kwargs: object) -> Instance:
        inst = client.instances.create(request_timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]
        made.append(inst.id)
        return inst

    yield make
    for i in made:
        try:
            client.instances.delete(i)
        except NotFoundError:
            pass


@pytest.fixture(scope="module")
def shared(server) -> Iterator[Instance]:  # type: ignore[no-untyped-def]
    """One running instance for the tests that do not change its state."""
    c = server.client(timeout=TIMEOUT)
    inst = c.instances.create(name="sdk-shared", language="python")
    try:
        yield inst
    finally:
        try:
            c.instances.delete(inst.id)
        except NotFoundError:
            pass


def sh(client: FaaSClient, instance_id: str, command: str) -> str:
    """Runs a command that must succeed; its stdout."""
    r = client.instances.exec(instance_id, command, request_timeout=TIMEOUT)
    assert r.status == "succeeded", (r.exit_code, r.stdout, r.stderr, r.error)
    return r.stdout


def test_create_get_list_and_exec(client: FaaSClient, make_instance: Callable[..., Instance]) -> None:
    inst = make_instance(name="sdk-basic", language="python", cpu_cores=1, resources={"memory_mb": 256})
    assert inst.id.startswith("i-")
    assert inst.instance_id == inst.id
    assert inst.name == "sdk-basic"
    assert inst.state == "running" and inst.status == "running" and inst.running
    assert inst.language == "python"
    assert inst.image == "host"
    assert inst.resources.memory_mb == 256
    assert inst.resources.cpu_cores == 1
    assert inst.enable_ssh is False
    assert inst.exposures == []
    assert inst.created_at

    got = client.instances.get(inst.id)
    assert got.id == inst.id and got.running
    assert inst.id in [i.id for i in client.instances.list()]

    # Commands: files and the shell's effects persist.
    r = client.instances.exec(inst.id, "echo hello > /workspace/greeting; cat /workspace/greeting",
                              request_timeout=TIMEOUT)
    assert r.status == "succeeded"
    assert r.exit_code == 0
    assert r.stdout == "hello\n"
    assert r.mode == "persistent"
    assert r.execution_id
    assert sh(client, inst.id, "cat greeting") == "hello\n"  # default working dir /workspace

    # Code: the live interpreter keeps its globals between execs.
    r = client.instances.exec(inst.id, code="import math\nx = 41", request_timeout=TIMEOUT)
    assert r.status == "succeeded", r.stderr
    r = client.instances.exec(inst.id, code="print(x + 1, math.pi > 3)", request_timeout=TIMEOUT)
    assert r.stdout == "42 True\n", r.stderr

    # Options: argv command, stdin, environment, working directory, failure.
    r = client.instances.exec(inst.id, ["sh", "-c", 'read v; echo "$v $GREETING $(pwd)"'], stdin="in\n",
                              env_vars={"GREETING": "hi"}, working_dir="/tmp", request_timeout=TIMEOUT)
    assert r.stdout == "in hi /tmp\n", (r.stdout, r.stderr)
    r = client.instances.exec(inst.id, "exit 3", request_timeout=TIMEOUT)
    assert r.status == "failed"
    assert r.exit_code == 3


def test_upload_download_round_trip(client: FaaSClient, shared: Instance) -> None:
    data = bytes(range(256)) * 64
    up = client.instances.upload(shared.id, "/workspace/files/blob.bin", data)
    assert up.path == "/workspace/files/blob.bin"
    assert up.size == len(data)
    assert client.instances.download(shared.id, "/workspace/files/blob.bin") == data

    client.instances.upload(shared.id, "/workspace/files/run.sh", "#!/bin/sh\necho ran\n", mode=0o755)
    assert sh(client, shared.id, "stat -c %a files/run.sh && ./files/run.sh") == "755\nran\n"
    client.instances.upload(shared.id, "/tmp/t.txt", "ünïcode", mode="600")
    assert client.instances.download(shared.id, "/tmp/t.txt").decode("utf-8") == "ünïcode"

    # A directory comes as a tar archive whose names have no leading slash.
    tar_bytes = client.instances.download_archive(shared.id, "/workspace/files")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        names = tar.getnames()
        assert "workspace/files/blob.bin" in names, names
        f = tar.extractfile("workspace/files/blob.bin")
        assert f is not None and f.read() == data

    # And a tar archive goes back in under dest.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        body = b"from an archive\n"
        info = tarfile.TarInfo("unpacked/a.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    res = client.instances.upload_archive(shared.id, buf.getvalue(), dest="/workspace/arch")
    assert res.dest == "/workspace/arch"
    assert res.entries >= 1
    assert client.instances.download(shared.id, "/workspace/arch/unpacked/a.txt") == b"from an archive\n"

    with pytest.raises(NotFoundError):
        client.instances.download(shared.id, "/workspace/files/nothing-here")
    with pytest.raises(FaaSError) as ei:
        client.instances.upload(shared.id, "/etc/passwd", b"x")
    assert ei.value.status == 400
    with pytest.raises(FaaSError) as ei:
        client.instances.upload_archive(shared.id, b"not a tar archive" * 40)
    assert ei.value.status == 400


def make_tree(root: Path) -> None:
    files = {
        "README.md": "top\n",
        "src/app.py": "print('app')\n",
        "src/pkg/deep/mod.py": "X = 1\n",
        "src/pkg/deep/run.log": "log\n",
        "node_modules/left/index.js": "nope\n",
        "src/node_modules/x.js": "nope\n",
        ".git/HEAD": "ref: refs/heads/main\n",
        "src/__pycache__/app.cpython-311.pyc": "nope\n",
        "build/out/bin.o": "nope\n",
        "build/keep.txt": "kept\n",
    }
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "src" / "app.py").chmod(0o755)
    (root / "empty").mkdir()
    os.symlink("src/app.py", root / "link.py")
    os.mkfifo(root / "pipe")  # a special file: never sent


def test_sync_with_exclude(client: FaaSClient, shared: Instance, tmp_path: Path) -> None:
    local = tmp_path / "proj"
    local.mkdir()
    make_tree(local)

    res = client.instances.sync(shared.id, local, "/workspace/proj",
                                exclude=["node_modules", ".git", "__pycache__", "*.log", "build/out"])
    assert res.dest == "/workspace/proj"
    assert res.entries > 0
    assert res.files_sent == 4  # README.md, src/app.py, src/pkg/deep/mod.py, build/keep.txt
    assert res.bytes_sent == sum(len(t) for t in ["top\n", "print('app')\n", "X = 1\n", "kept\n"])
    assert sorted(res.excluded) == [".git", "build/out", "node_modules", "src/__pycache__",
                                    "src/node_modules", "src/pkg/deep/run.log"]

    listing = sh(client, shared.id, "cd /workspace/proj && find . | sort")
    found = set(listing.split())
    for present in ["./README.md", "./src/app.py", "./src/pkg/deep/mod.py", "./build/keep.txt", "./empty",
                    "./link.py"]:
        assert present in found, listing
    for absent in ["./node_modules", "./.git", "./src/__pycache__", "./src/node_modules",
                   "./src/pkg/deep/run.log", "./build/out", "./pipe"]:
        assert absent not in found, listing
    assert sh(client, shared.id, "cd /workspace/proj && stat -c %a src/app.py && readlink link.py "
                                 "&& cat src/pkg/deep/mod.py") == "755\nsrc/app.py\nX = 1\n"

    # The default exclusions, and delete=True mirroring the local directory.
    (local / "README.md").unlink()
    res = client.instances.sync(shared.id, str(local), "/workspace/proj", delete=True)
    assert "node_modules" in res.excluded and ".git" in res.excluded
    found = set(sh(client, shared.id, "cd /workspace/proj && find . | sort").split())
    assert "./README.md" not in found
    assert "./src/pkg/deep/run.log" in found  # not excluded this time
    assert "./build/out/bin.o" in found
    assert "./node_modules" not in found and "./.git" not in found


def test_default_sync_exclude(tmp_path: Path) -> None:
    # The same default as the TypeScript SDK's DEFAULT_SYNC_EXCLUDE: these names
    # at any depth, files or directories; a name that only starts alike is kept.
    assert DEFAULT_SYNC_EXCLUDE == ("node_modules", ".git", "__pycache__")
    for rel in ["app.py", "node_modules.txt", "pkg/.gitignore", "pkg/mod.py",
                "node_modules/left/index.js", "pkg/node_modules/deep.js", ".git/HEAD",
                "pkg/sub/.git", "__pycache__/app.pyc", "pkg/__pycache__/mod.pyc"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    data, files, _, skipped = build_sync_archive(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(m.name for m in tar.getmembers())
    assert names == ["app.py", "node_modules.txt", "pkg", "pkg/.gitignore", "pkg/mod.py", "pkg/sub"]
    assert files == 4
    assert sorted(skipped) == [".git", "__pycache__", "node_modules", "pkg/__pycache__", "pkg/node_modules",
                               "pkg/sub/.git"]


def test_build_sync_archive_offline(tmp_path: Path) -> None:
    make_tree(tmp_path)
    data, files, size, skipped = build_sync_archive(tmp_path, exclude="src")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "src" in skipped and not any(n.startswith("src/") for n in members)
    assert members["empty"].isdir()
    assert members["link.py"].issym() and members["link.py"].linkname == "src/app.py"
    assert "pipe" not in members
    assert members["build/out/bin.o"].isfile()
    assert files == sum(1 for m in members.values() if m.isfile())
    assert size == sum(m.size for m in members.values() if m.isfile())
    _, all_files, _, none_skipped = build_sync_archive(tmp_path, exclude=())
    assert none_skipped == [] and all_files == 10


def test_pause_and_resume(client: FaaSClient, make_instance: Callable[..., Instance]) -> None:
    inst = make_instance(language="python")
    sh(client, inst.id, "echo kept > /workspace/state.txt")
    client.instances.exec(inst.id, code="counter = 7", request_timeout=TIMEOUT)

    paused = client.instances.pause(inst.id, request_timeout=TIMEOUT)
    assert paused.state == "paused" and paused.paused
    assert client.instances.get(inst.id).paused

    with pytest.raises(ConflictError) as ei:
        client.instances.exec(inst.id, "true", request_timeout=TIMEOUT)
    assert ei.value.status == 409
    assert ei.value.code == "conflict"
    assert "paused" in ei.value.message

    resumed = client.instances.resume(inst.id, request_timeout=TIMEOUT)
    assert resumed.state == "running" and resumed.running
    assert sh(client, inst.id, "cat /workspace/state.txt") == "kept\n"
    r = client.instances.exec(inst.id, code="print(counter)", request_timeout=TIMEOUT)
    assert r.stdout == "7\n", r.stderr


def test_stop_and_start(client: FaaSClient, make_instance: Callable[..., Instance]) -> None:
    inst = make_instance()
    sh(client, inst.id, "echo durable > /workspace/d.txt")
    stopped = client.instances.stop(inst.id, request_timeout=TIMEOUT)
    assert stopped.state == "stopped" and stopped.stopped
    with pytest.raises(ConflictError):
        client.instances.exec(inst.id, "true", request_timeout=TIMEOUT)
    started = client.instances.start(inst.id, request_timeout=TIMEOUT)
    assert started.running
    assert sh(client, inst.id, "cat /workspace/d.txt") == "durable\n"


def get_until_200(url: str, headers: dict, within: float = 10.0) -> bytes:
    """GETs url until it answers 200 (the server in the instance may still be
    starting); its body."""
    deadline = time.monotonic() + within
    last = ""
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
                if r.status == 200:
                    return r.read()
                last = f"status {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}: {e.read(300)!r}"
        except OSError as e:
            last = repr(e)
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {within} s; last: {last}")
        time.sleep(0.25)


def test_expose_a_web_server(server, client: FaaSClient, shared: Instance) -> None:  # type: ignore[no-untyped-def]
    sh(client, shared.id, "mkdir -p /workspace/site && echo '<h1>from the instance</h1>' > /workspace/site/index.html")
    sh(client, shared.id, "cd /workspace/site && "
                          "nohup python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &")

    ex = client.instances.expose(shared.id, 8000, name="web")
    assert isinstance(ex, Exposure)
    assert ex.name == "web" and ex.port == 8000 and ex.public is False
    assert ex.url == f"{server.endpoint}/p/{shared.id}/web/"
    assert ex.host_url.startswith(f"http://web-{shared.id}.")
    assert [e.name for e in client.instances.get(shared.id).exposures] == ["web"]

    body = get_until_200(ex.url, {"x-api-key": server.admin_key})
    assert b"<h1>from the instance</h1>" in body

    # Not public: no key, no page.
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(ex.url, timeout=10)
    assert ei.value.code == 404  # as if nothing were there

    # The default name is "p" + port.
    ex2 = client.instances.expose(shared.id, 8000, public=True)
    assert ex2.name == "p8000" and ex2.public is True
    assert b"from the instance" in get_until_200(ex2.url, {})

    client.instances.unexpose(shared.id, "web")
    client.instances.unexpose(shared.id, "p8000")
    assert client.instances.get(shared.id).exposures == []
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(urllib.request.Request(ex.url, headers={"x-api-key": server.admin_key}), timeout=10)
    assert ei.value.code == 404
    with pytest.raises(NotFoundError):
        client.instances.unexpose(shared.id, "web")


def test_ssh_credentials(client: FaaSClient, make_instance: Callable[..., Instance]) -> None:
    inst = make_instance(enable_ssh=True)
    assert inst.enable_ssh is True
    info = client.instances.ssh(inst.id)
    assert isinstance(info, SSHInfo)
    assert info.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert info.public_key.startswith("ssh-ed25519 ")
    assert info.user == inst.id
    assert info.instance_id == inst.id
    assert info.port > 0
    assert info.host
    assert info.known_hosts.startswith(f"[{info.host}]:{info.port} ")
    assert info.command == f"ssh -i KEYFILE -p {info.port} {inst.id}@{info.host}"
    # Each call authorizes a new key pair.
    again = client.instances.ssh_info(inst.id)
    assert again.private_key != info.private_key

    no_ssh = make_instance()
    with pytest.raises(ConflictError):
        client.instances.ssh(no_ssh.id)


def test_dev_server_missing_from_the_image(client: FaaSClient, shared: Instance) -> None:
    with pytest.raises(UnprocessableError) as ei:
        client.instances.vscode(shared.id, request_timeout=TIMEOUT)
    e = ei.value
    assert e.status == 422
    assert e.code == "unprocessable"
    assert "code-server" in e.message
    assert e.request == f"POST /api/v1/instances/{shared.id}/vscode"


def test_another_account_sees_nothing(server, client: FaaSClient, shared: Instance) -> None:  # type: ignore[no-untyped-def]
    k = client.keys.create(name="sdk-test-instances-other")
    other = server.client(api_key=k.key)
    assert shared.id not in [i.id for i in other.instances.list()]
    for call in [
        lambda: other.instances.get(shared.id),
        lambda: other.instances.exec(shared.id, "true"),
        lambda: other.instances.download(shared.id, "/workspace/greeting"),
        lambda: other.instances.expose(shared.id, 8000),
        lambda: other.instances.ssh(shared.id),
        lambda: other.instances.delete(shared.id),
    ]:
        with pytest.raises(NotFoundError):
            call()
    assert client.instances.get(shared.id).running  # still there


def test_delete(client: FaaSClient) -> None:
    inst = client.instances.create(request_timeout=TIMEOUT)
    client.instances.delete(inst.id)
    with pytest.raises(NotFoundError) as ei:
        client.instances.get(inst.id)
    assert ei.value.code == "not_found"
    with pytest.raises(NotFoundError):
        client.instances.delete(inst.id)
    assert inst.id not in [i.id for i in client.instances.list()]


def test_network_is_not_available(client: FaaSClient) -> None:
    with pytest.raises(FaaSError) as ei:
        client.instances.create(network=True, request_timeout=TIMEOUT)
    assert ei.value.status == 501
    assert ei.value.is_not_implemented


def test_snapshot_an_instance_and_start_another_from_it(client: FaaSClient,
                                                         make_instance: Callable[..., Instance]) -> None:
    inst = make_instance(language="python")
    sh(client, inst.id, "echo from-the-snapshot > /workspace/s.txt")
    client.instances.exec(inst.id, code="remembered = 'yes'", request_timeout=TIMEOUT)
    snap = client.snapshots.create(instance_id=inst.id, name="sdk-instance-snap")
    try:
        assert snap.id and snap.ready
        assert client.instances.get(inst.id).running  # the instance runs on

        copy = make_instance(snapshot_id=snap.id)
        assert copy.id != inst.id and copy.running
        assert sh(client, copy.id, "cat /workspace/s.txt") == "from-the-snapshot\n"
        r = client.instances.exec(copy.id, code="print(remembered)", request_timeout=TIMEOUT)
        assert r.stdout == "yes\n", r.stderr
    finally:
        client.snapshots.delete(snap.id)
    with pytest.raises(ValueError):
        client.snapshots.create(instance_id=inst.id, session_id="s")
