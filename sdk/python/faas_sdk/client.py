"""The client of one faas server."""

from __future__ import annotations

import datetime
import fnmatch
import io
import os
import stat
import tarfile
import urllib.parse
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._http import Transport
from .errors import FaaSError
from .models import (
    ApiKey,
    ArchiveUpload,
    CurrentUsage,
    Execution,
    ExecutionResult,
    Exposure,
    FileUpload,
    Health,
    Instance,
    MergeResult,
    PoolsResult,
    PrewarmResult,
    Session,
    Snapshot,
    SSHInfo,
    SyncResult,
    UsageReport,
)
from .stream import ExecutionStream

#: Environment variables: a mapping, or ``(name, value)`` pairs.
EnvVars = Union[Mapping[str, str], Sequence[Tuple[str, str]]]

_DEFAULT_ENDPOINT = "http://127.0.0.1:8080"

#: What ``instances.sync`` leaves out unless told otherwise.
DEFAULT_SYNC_EXCLUDE: Tuple[str, ...] = ("node_modules", ".git", "__pycache__")


def _seg(name: str, value: str) -> str:
    """A path segment from an id; empty ids are refused before any request."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return urllib.parse.quote(value, safe="")


def _body(**fields: Any) -> Dict[str, Any]:
    """A request body without the fields that are None."""
    out: Dict[str, Any] = {}
    for k, v in fields.items():
        if v is None:
            continue
        if k == "env_vars" and not isinstance(v, Mapping):
            v = [list(p) for p in v]
        out[k] = v
    return out


def _opt_seg(name: str, value: Optional[str]) -> None:
    """Refuse an id given as an empty string (``None`` means not given)."""
    if value is not None:
        _seg(name, value)


def _parent(parent_snapshot: Optional[str], branch_from: Optional[str]) -> Optional[str]:
    """``parent_snapshot`` and its alias ``branch_from``: one value, or None."""
    _opt_seg("parent_snapshot", parent_snapshot)
    _opt_seg("branch_from", branch_from)
    if parent_snapshot is not None and branch_from is not None and parent_snapshot != branch_from:
        raise ValueError("parent_snapshot and branch_from name the same thing: give one of them")
    return parent_snapshot if parent_snapshot is not None else branch_from


def _run_fields(
    *,
    env_vars: Optional["EnvVars"] = None,
    timeout_ms: Optional[int] = None,
    resources: Optional[Mapping[str, Any]] = None,
    working_dir: Optional[str] = None,
    image: Optional[str] = None,
) -> Dict[str, Any]:
    """The execute fields shared by ``execute`` and the branch calls."""
    return _body(
        env_vars=env_vars,
        timeout_ms=timeout_ms,
        resources=dict(resources) if resources is not None else None,
        working_dir=working_dir,
        image=image,
    )


def _list_of(answer: Any, key: str) -> List[Any]:
    """Accept a bare list, or an object holding the list under ``key``."""
    if isinstance(answer, list):
        return answer
    if isinstance(answer, dict) and isinstance(answer.get(key), list):
        return answer[key]
    return []


class FaaSClient:
    """A client of one faas server.

    Every method sends one documented API call and returns its answer as a
    dataclass with the wire's snake_case field names, or raises
    :class:`~faas_sdk.FaaSError`. Answers 429 and 503 are retried (see
    ``max_retries``); nothing else is, so a request is never sent twice after
    the server may have acted on it.

    Example::

        client = FaaSClient(api_key="faas_...", endpoint="http://127.0.0.1:8080")
        result = client.execute(code="print(1)", language="python")
        print(result.status, result.exit_code, result.stdout)

    Args:
        api_key: Sent as ``Authorization: Bearer <key>``; default: env
            ``FAAS_API_KEY``.
        endpoint: Server address such as ``http://127.0.0.1:8080`` (a trailing
            slash or a path prefix is fine; ``http://`` is assumed without a
            scheme); default: env ``FAAS_ENDPOINT``, else ``http://127.0.0.1:8080``.
        max_retries: How many times a 429/503 answer is retried (default 3;
            0 disables retries). Each wait is the answer's ``Retry-After``, or
            an exponential back-off with jitter, at most ``max_retry_wait``.
        max_retry_wait: Longest wait before one retry, in seconds (default 30).
        timeout: Time limit of each HTTP attempt in seconds (default: none).
            Leave room for the execution's own ``timeout_ms``.
        headers: Extra headers sent with every request.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        endpoint: Optional[str] = None,
        *,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        timeout: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("FAAS_API_KEY")
        if endpoint is None:
            endpoint = os.environ.get("FAAS_ENDPOINT") or _DEFAULT_ENDPOINT
        endpoint = endpoint.strip()
        if "://" not in endpoint:
            endpoint = "http://" + endpoint
        #: The server address requests go to (no trailing slash).
        self.endpoint: str = endpoint.rstrip("/")
        self._http = Transport(
            self.endpoint, api_key, max_retries, max_retry_wait, timeout, headers or {}
        )
        #: Snapshots: create, list, get, delete, restore.
        self.snapshots = Snapshots(self._http)
        #: Branches: create (one or many from a snapshot), merge.
        self.branches = Branches(self._http)
        #: Live sessions and branches: list, get, delete.
        self.sessions = Sessions(self._http)
        #: Persistent instances: lifecycle, exec, files, SSH, exposed ports.
        self.instances = Instances(self._http)
        #: API keys (needs a key with the ``admin`` scope).
        self.keys = Keys(self._http)
        #: Usage and billing: ``usage()`` and ``usage.current()``.
        self.usage = UsageApi(self._http)

    def __repr__(self) -> str:
        return f"FaaSClient(endpoint={self.endpoint!r})"

    def execute(
        self,
        code: Optional[str] = None,
        language: Optional[str] = None,
        mode: Optional[str] = None,
        *,
        command: Optional[Union[str, Sequence[str]]] = None,
        stdin: Optional[str] = None,
        env_vars: Optional[EnvVars] = None,
        timeout_ms: Optional[int] = None,
        resources: Optional[Mapping[str, Any]] = None,
        working_dir: Optional[str] = None,
        image: Optional[str] = None,
        session_id: Optional[str] = None,
        snapshot_id: Optional[str] = None,
        parent_snapshot: Optional[str] = None,
        branch_from: Optional[str] = None,
        checkpoint_after: Optional[bool] = None,
        instance_id: Optional[str] = None,
        request_timeout: Optional[float] = None,
    ) -> ExecutionResult:
        """Run code (or a command) once and wait for it: ``POST /api/v1/execute``.

        A program that fails or times out is not an error: look at the result's
        ``status`` and ``exit_code``.

        Sessions: with ``session_id``, ``snapshot_id``, ``parent_snapshot`` (or
        ``branch_from``) or ``checkpoint_after`` the code runs in a live
        session whose interpreter keeps its globals, imports and files between
        executions. Sessions run ``code`` in python, javascript or typescript
        only (no ``command``, no ``stdin``); ``language`` may be left out when
        the session or snapshot has one. The result's ``session_id`` names the
        session to continue with.

        Args:
            code: Program source, run as ``language``.
            language: ``python`` (server default), ``javascript``,
                ``typescript`` or ``bash``.
            mode: ``ephemeral`` (default), ``cached``, ``checkpointed`` (run
                in a session; the default with ``session_id``, ``snapshot_id``
                or ``checkpoint_after``), ``branched`` (run in a branch; the
                default with ``parent_snapshot``) or ``persistent``: without
                ``instance_id`` it creates a new instance (with this call's
                ``image``, ``language`` and ``resources``), runs the code or
                command in it and returns its id as the result's
                ``instance_id``; the instance keeps running (and is billed)
                until ``instances.delete``. Without code and command the
                server answers with the new instance itself (only the
                result's ``instance_id`` is meaningful).
            command: Instead of ``code``: a shell command run by ``sh -c``, or
                an argv list.
            stdin: Text given to the program's standard input.
            env_vars: Environment variables, a mapping or ``(name, value)`` pairs.
            timeout_ms: Wall-clock limit (server default 30000, at most 900000).
            resources: ``{"cpu_cores": 1, "memory_mb": 512}``.
            working_dir: Absolute working directory, created if missing.
            image: Root filesystem image (``host``, the only one today).
            session_id: Run in this session: one returned earlier (also a
                branch's ``branch_id``), or a new client-chosen id (letters,
                digits, ``-``, ``_``, ``.``; at most 128) that starts one.
                Mode ``checkpointed`` without it starts a session with a
                generated id.
            snapshot_id: Restore this snapshot into a new session, then run.
            parent_snapshot: Restore this snapshot into a new branch, then run
                (mode ``branched``); the result's ``branch_id`` names it.
            branch_from: Another name for ``parent_snapshot``.
            checkpoint_after: Snapshot the session after the code ran; the
                result's ``snapshot_id`` is the snapshot (or
                ``snapshot_error`` says why there is none).
            instance_id: Run in this existing instance (whatever ``mode``
                says; the result's mode is ``persistent``), as
                ``instances.exec`` does; ``image``, ``resources`` and the
                session arguments are ignored. NotFoundError for an unknown
                instance, ConflictError when it is paused or stopped.
            request_timeout: HTTP time limit of this call, in seconds.

        Raises:
            FaaSError: The server refused the request (400 bad input, 401 bad
                key, 503 busy after the retries, ...) or could not be
                reached; :class:`~faas_sdk.NotFoundError` (404) for an unknown
                snapshot, instance or an ended branch.
            ValueError: An empty id, or ``parent_snapshot`` and
                ``branch_from`` that differ (before any request).
        """
        _opt_seg("session_id", session_id)
        _opt_seg("snapshot_id", snapshot_id)
        parent = _parent(parent_snapshot, branch_from)
        body = _body(
            code=code,
            language=language,
            mode=mode,
            command=list(command) if command is not None and not isinstance(command, str) else command,
            stdin=stdin,
            checkpoint_after=checkpoint_after,
            snapshot_id=snapshot_id,
            parent_snapshot=parent,
            session_id=session_id,
            instance_id=instance_id,
        )
        body.update(_run_fields(env_vars=env_vars, timeout_ms=timeout_ms, resources=resources,
                                working_dir=working_dir, image=image))
        return ExecutionResult.from_dict(
            self._http.call("POST", "/api/v1/execute", body, timeout=request_timeout)
        )

    def get_execution(self, execution_id: str) -> Execution:
        """The stored record of a past execution (no output):
        ``GET /api/v1/executions/{id}``. Raises FaaSError 404 when there is none."""
        path = "/api/v1/executions/" + _seg("execution_id", execution_id)
        return Execution.from_dict(self._http.call("GET", path))

    def prewarm(
        self,
        language: Optional[str] = None,
        count: Optional[int] = None,
        image: Optional[str] = None,
        *,
        memory_mb: Optional[int] = None,
    ) -> PrewarmResult:
        """Ready ``count`` (1...32, default 1) warm sandboxes for ``language``
        (default python) in the caller's pool now: ``POST /api/v1/prewarm``.

        There is one pool per image and memory limit: ``memory_mb`` (default
        the server's) is the sandboxes' memory limit, and only cached
        executions asking for the same ``resources["memory_mb"]`` take them.
        """
        body = _body(language=language, count=count, image=image, memory_mb=memory_mb)
        return PrewarmResult.from_dict(self._http.call("POST", "/api/v1/prewarm", body))

    def pools(self) -> PoolsResult:
        """The caller's warm pools and the server's stock: ``GET /api/v1/pools``."""
        return PoolsResult.from_dict(self._http.call("GET", "/api/v1/pools"))

    def health(self) -> Health:
        """The server's health: ``GET /health`` (no API key, no retries).

        A degraded server answers 503 with a report; that report is returned
        (``status == "degraded"``), not raised.
        """

        def is_report(status: int, body: Any) -> bool:
            return status == 503 and isinstance(body, dict) and isinstance(body.get("status"), str)

        answer = self._http.call("GET", "/health", auth=False, retry=False, accept=is_report)
        return Health.from_dict(answer)

    def stream(self, execution_id: str) -> ExecutionStream:
        """Follow an execution's output live: ``GET /api/v1/executions/{id}/events``
        (Server-Sent Events).

        Replays the output from the start, then follows it until the exit;
        works while the execution runs and for 10 minutes after. Nothing is
        sent until the iteration starts::

            async for output in client.stream(execution_id):
                print(output.data, end="")

        ``for`` works too. Raises FaaSError from the iteration (404 for an
        unknown execution or one of another account).
        """
        _seg("execution_id", execution_id)
        return ExecutionStream(self._http, execution_id)

    def create_snapshot(self, execution_id: str, name: Optional[str] = None) -> Snapshot:
        """Snapshot the session an execution ran in: ``POST /api/v1/snapshots``
        ``{execution_id, name}``.

        The execution must have run in a live session (mode ``checkpointed``
        or ``branched``) that has not ended; the session goes on running.

        Raises:
            NotFoundError: Unknown execution, or one that did not run in a live
                session (an ephemeral one): the message says which.
        """
        _seg("execution_id", execution_id)
        return self.snapshots.create(execution_id=execution_id, name=name)

    def create_branch(
        self,
        snapshot_id: str,
        code: str,
        language: Optional[str] = None,
        *,
        session_id: Optional[str] = None,
        env_vars: Optional[EnvVars] = None,
        timeout_ms: Optional[int] = None,
        resources: Optional[Mapping[str, Any]] = None,
        working_dir: Optional[str] = None,
        image: Optional[str] = None,
        checkpoint_after: Optional[bool] = None,
        request_timeout: Optional[float] = None,
    ) -> ExecutionResult:
        """Restore a snapshot into a new branch and run code in it:
        ``POST /api/v1/branches`` ``{parent_snapshot, code, ...}``.

        Returns the branch's execution result; its ``branch_id`` names the
        branch, to continue with ``execute(session_id=branch_id, code=...)``,
        snapshot with ``snapshots.create(branch_id=...)`` or merge with
        ``branches.merge``. ``session_id`` chooses the branch's id. The other
        arguments are ``execute``'s. For several branches at once, see
        ``branches.create(..., count=N)``.

        Raises:
            NotFoundError: Unknown snapshot.
            ConflictError: The snapshot is broken (code ``snapshot_broken``).
        """
        results = self.branches.create(
            snapshot_id, code, language=language, session_id=session_id, env_vars=env_vars,
            timeout_ms=timeout_ms, resources=resources, working_dir=working_dir, image=image,
            checkpoint_after=checkpoint_after, request_timeout=request_timeout,
        )
        if not results:
            what = "POST /api/v1/branches"
            raise FaaSError(0, "invalid_response", f"the answer to {what} holds no branch", what)
        return results[0]


class _Api:
    def __init__(self, http: Transport) -> None:
        self._http = http


class Snapshots(_Api):
    """Snapshots: ``client.snapshots``. They persist until deleted (across
    server restarts); the sessions they come from do not."""

    def create(
        self,
        execution_id: Optional[str] = None,
        *,
        session_id: Optional[str] = None,
        branch_id: Optional[str] = None,
        instance_id: Optional[str] = None,
        name: Optional[str] = None,
    ) -> Snapshot:
        """``POST /api/v1/snapshots``: snapshot a live session, named by one of
        ``execution_id`` (the session it ran in), ``session_id`` or
        ``branch_id``, or a running instance (``instance_id``). The session or
        instance goes on running. A branch's snapshot has the snapshot it
        branched from as ``parent_id``. Start a new instance from an instance's
        snapshot with ``instances.create(snapshot_id=...)``.

        Raises:
            ValueError: Not exactly one of the four given (before any request).
            NotFoundError: Unknown or ended session or instance, or an
                execution that did not run in a live session.
        """
        given = {k: v for k, v in (("execution_id", execution_id), ("session_id", session_id),
                                   ("branch_id", branch_id), ("instance_id", instance_id)) if v is not None}
        if len(given) != 1:
            raise ValueError("give exactly one of execution_id, session_id, branch_id, instance_id")
        for k, v in given.items():
            _seg(k, v)
        body = _body(name=name, **given)
        return Snapshot.from_dict(self._http.call("POST", "/api/v1/snapshots", body))

    def list(self) -> List[Snapshot]:
        """``GET /api/v1/snapshots``: the account's snapshots, oldest first."""
        return [Snapshot.from_dict(x) for x in _list_of(self._http.call("GET", "/api/v1/snapshots"), "snapshots")]

    def get(self, snapshot_id: str) -> Snapshot:
        """``GET /api/v1/snapshots/{id}``; NotFoundError for an unknown id (or
        another account's)."""
        return Snapshot.from_dict(self._http.call("GET", "/api/v1/snapshots/" + _seg("snapshot_id", snapshot_id)))

    def delete(self, snapshot_id: str) -> None:
        """``DELETE /api/v1/snapshots/{id}``; NotFoundError for an unknown id."""
        self._http.call("DELETE", "/api/v1/snapshots/" + _seg("snapshot_id", snapshot_id))

    def restore(self, snapshot_id: str, session_id: Optional[str] = None) -> Session:
        """``POST /api/v1/snapshots/{id}/restore`` ``{session_id?}``: a new live
        session restored from the snapshot (with ``session_id`` as its id when
        given). Run code in it with ``execute(session_id=session.id, code=...)``.

        Raises:
            NotFoundError: Unknown snapshot.
            ConflictError: The snapshot is broken (code ``snapshot_broken``).
        """
        _opt_seg("session_id", session_id)
        path = "/api/v1/snapshots/" + _seg("snapshot_id", snapshot_id) + "/restore"
        return Session.from_dict(self._http.call("POST", path, _body(session_id=session_id)))


class Branches(_Api):
    """Branches: ``client.branches``. A branch is a session restored from a
    snapshot; its ``branch_id`` is its session id."""

    def create(
        self,
        snapshot_id: str,
        code: str,
        *,
        language: Optional[str] = None,
        count: Optional[int] = None,
        session_id: Optional[str] = None,
        env_vars: Optional[EnvVars] = None,
        timeout_ms: Optional[int] = None,
        resources: Optional[Mapping[str, Any]] = None,
        working_dir: Optional[str] = None,
        image: Optional[str] = None,
        checkpoint_after: Optional[bool] = None,
        request_timeout: Optional[float] = None,
    ) -> List[ExecutionResult]:
        """``POST /api/v1/branches`` ``{parent_snapshot, code, count, ...}``:
        restore the snapshot into ``count`` (1...32, default 1) new branches at
        once and run ``code`` in each.

        Returns one execution result per branch, each with its own
        ``branch_id``. A branch whose code fails is not an error (see its
        ``status``); if a branch cannot start, none is kept and the call raises.
        ``session_id`` names the branch (only with ``count`` 1).

        Raises:
            NotFoundError: Unknown snapshot.
            ConflictError: The snapshot is broken (code ``snapshot_broken``).
        """
        _seg("snapshot_id", snapshot_id)
        _opt_seg("session_id", session_id)
        body = _body(parent_snapshot=snapshot_id, code=code, language=language, count=count,
                     session_id=session_id, checkpoint_after=checkpoint_after)
        body.update(_run_fields(env_vars=env_vars, timeout_ms=timeout_ms, resources=resources,
                                working_dir=working_dir, image=image))
        answer = self._http.call("POST", "/api/v1/branches", body, timeout=request_timeout)
        items = _list_of(answer, "branches")
        if not items and isinstance(answer, dict) and answer.get("branch_id"):
            items = [answer]  # only the single branch's fields at the top level
        return [ExecutionResult.from_dict(x) for x in items if isinstance(x, Mapping)]

    def merge(
        self, branch_ids: Iterable[str], strategy: str = "union", name: Optional[str] = None
    ) -> MergeResult:
        """``POST /api/v1/branches/merge`` ``{branch_ids, strategy, name}``:
        merge the file changes (under ``/workspace`` and ``/home/user``) of two
        or more branches of the same snapshot into a new snapshot, which
        carries the memory state of that common parent snapshot.

        Args:
            branch_ids: The branches (at least two).
            strategy: ``union`` (every change; the same path changed
                differently is a conflict), ``intersection`` or ``latest``.
            name: The new snapshot's name.

        Raises:
            MergeConflictError: 409 ``merge_conflict``; ``paths`` lists the
                conflicting paths.
            NotFoundError: An unknown or ended branch.
        """
        ids = list(branch_ids)
        for b in ids:
            _seg("branch_id", b)
        body = _body(branch_ids=ids, strategy=strategy, name=name)
        return MergeResult.from_dict(self._http.call("POST", "/api/v1/branches/merge", body))


class Sessions(_Api):
    """Live sessions and branches: ``client.sessions``. Start one with
    ``execute(session_id=...)``, ``execute(checkpoint_after=True)``,
    ``snapshots.restore`` or a branch call."""

    def list(self) -> List[Session]:
        """``GET /api/v1/sessions``: the account's live sessions and branches."""
        return [Session.from_dict(x) for x in _list_of(self._http.call("GET", "/api/v1/sessions"), "sessions")]

    def get(self, session_id: str) -> Session:
        """``GET /api/v1/sessions/{id}``; NotFoundError when there is none (or
        it ended)."""
        return Session.from_dict(self._http.call("GET", "/api/v1/sessions/" + _seg("session_id", session_id)))

    def delete(self, session_id: str) -> None:
        """``DELETE /api/v1/sessions/{id}``: end the session (or branch) and
        free its sandbox; its snapshots stay."""
        self._http.call("DELETE", "/api/v1/sessions/" + _seg("session_id", session_id))


class Instances(_Api):
    """Persistent instances: ``client.instances``.

    An instance is a sandbox that lives until deleted: files, background
    processes and the interpreter's state (python, javascript) persist between
    ``exec`` calls. It can be paused (checkpointed to disk, memory freed) and
    resumed, stopped (processes end, files under ``/workspace`` and
    ``/home/user`` kept) and started again, reached over SSH, and its ports
    exposed through the server. Instance ids look like ``i-0123456789abcdef``.

    Needs a key with the ``instances`` scope. An unknown id (or another
    account's) raises :class:`~faas_sdk.NotFoundError`; acting on a paused or
    stopped instance where it must run raises :class:`~faas_sdk.ConflictError`.
    """

    def _path(self, instance_id: str, action: str = "") -> str:
        p = "/api/v1/instances/" + _seg("instance_id", instance_id)
        return p + "/" + action if action else p

    # -- lifecycle -------------------------------------------------------------

    def create(
        self,
        *,
        name: Optional[str] = None,
        image: Optional[str] = None,
        language: Optional[str] = None,
        snapshot_id: Optional[str] = None,
        resources: Optional[Mapping[str, Any]] = None,
        cpu_cores: Optional[float] = None,
        memory_mb: Optional[int] = None,
        disk_mb: Optional[int] = None,
        enable_ssh: Optional[bool] = None,
        network: Optional[bool] = None,
        idle_ttl_seconds: Optional[int] = None,
        request_timeout: Optional[float] = None,
    ) -> Instance:
        """Create and start an instance: ``POST /api/v1/instances``.

        Args:
            name: A name of your choice (shown in lists).
            image: Root filesystem image (server default ``host``).
            language: Language of its live interpreter for ``exec(code=...)``
                (server default ``python``).
            snapshot_id: Start from this snapshot (memory, processes and
                files), e.g. one taken of another instance.
            resources: ``{"cpu_cores": 1, "memory_mb": 512, "disk_mb": 1024}``.
            cpu_cores: Same as ``resources["cpu_cores"]`` (overrides it).
            memory_mb: Same as ``resources["memory_mb"]`` (overrides it).
            disk_mb: Same as ``resources["disk_mb"]`` (overrides it).
            enable_ssh: Allow SSH access (``ssh()``); default off.
            network: Outside network access (``True`` answers 501 today).
            idle_ttl_seconds: Pause the instance after this long without use.
            request_timeout: HTTP time limit of this call, in seconds.

        Raises:
            FaaSError: 400 bad input, 501 ``network=True``, ...;
                :class:`~faas_sdk.NotFoundError` for an unknown snapshot.
        """
        _opt_seg("snapshot_id", snapshot_id)
        res: Dict[str, Any] = dict(resources) if resources is not None else {}
        for k, v in (("cpu_cores", cpu_cores), ("memory_mb", memory_mb), ("disk_mb", disk_mb)):
            if v is not None:
                res[k] = v
        body = _body(
            name=name,
            image=image,
            language=language,
            snapshot_id=snapshot_id,
            resources=res or None,
            enable_ssh=enable_ssh,
            network=network,
            idle_ttl_seconds=idle_ttl_seconds,
        )
        return Instance.from_dict(self._http.call("POST", "/api/v1/instances", body, timeout=request_timeout))

    def list(self) -> List[Instance]:
        """``GET /api/v1/instances``: the account's instances."""
        return [Instance.from_dict(x) for x in _list_of(self._http.call("GET", "/api/v1/instances"), "instances")]

    def get(self, instance_id: str) -> Instance:
        """``GET /api/v1/instances/{id}``; NotFoundError for an unknown id (or
        another account's, or a deleted one)."""
        return Instance.from_dict(self._http.call("GET", self._path(instance_id)))

    def delete(self, instance_id: str) -> None:
        """``DELETE /api/v1/instances/{id}``: end the instance and remove its
        files; NotFoundError for an unknown id."""
        self._http.call("DELETE", self._path(instance_id))

    def _action(self, instance_id: str, action: str, request_timeout: Optional[float]) -> Instance:
        path = self._path(instance_id, action)
        return Instance.from_dict(self._http.call("POST", path, {}, timeout=request_timeout))

    def stop(self, instance_id: str, *, request_timeout: Optional[float] = None) -> Instance:
        """``POST /api/v1/instances/{id}/stop``: end its processes; the files
        under ``/workspace`` and ``/home/user`` are kept for ``start``."""
        return self._action(instance_id, "stop", request_timeout)

    def start(self, instance_id: str, *, request_timeout: Optional[float] = None) -> Instance:
        """``POST /api/v1/instances/{id}/start``: boot a stopped instance again,
        with its kept files."""
        return self._action(instance_id, "start", request_timeout)

    def pause(self, instance_id: str, *, request_timeout: Optional[float] = None) -> Instance:
        """``POST /api/v1/instances/{id}/pause``: checkpoint it to disk and free
        its memory. ``exec`` on a paused instance raises ConflictError (409)
        until ``resume``."""
        return self._action(instance_id, "pause", request_timeout)

    def resume(self, instance_id: str, *, request_timeout: Optional[float] = None) -> Instance:
        """``POST /api/v1/instances/{id}/resume``: restore a paused instance as
        it was (files, processes, interpreter state)."""
        return self._action(instance_id, "resume", request_timeout)

    # -- running things ----------------------------------------------------------

    def exec(
        self,
        instance_id: str,
        command: Optional[Union[str, Sequence[str]]] = None,
        code: Optional[str] = None,
        language: Optional[str] = None,
        *,
        stdin: Optional[str] = None,
        env_vars: Optional[EnvVars] = None,
        timeout_ms: Optional[int] = None,
        working_dir: Optional[str] = None,
        request_timeout: Optional[float] = None,
    ) -> ExecutionResult:
        """Run a command or code in the instance and wait for it:
        ``POST /api/v1/instances/{id}/exec``.

        ``command`` runs by ``sh -c`` (or give an argv list); background
        processes it starts (``nohup ... &``) keep running. ``code`` runs in
        the instance's live interpreter (python or javascript), whose globals
        persist between execs. As with ``execute``, a failing program is not an
        error: see the result's ``status`` and ``exit_code`` (its ``mode`` is
        ``persistent``).

        Args:
            command: Shell command (string) or argv list.
            code: Instead of ``command``: source for the live interpreter.
            language: Language of ``code`` (default: the instance's).
            stdin: Text given to the program's standard input.
            env_vars: Environment variables, a mapping or ``(name, value)`` pairs.
            timeout_ms: Wall-clock limit (server default 30000).
            working_dir: Absolute working directory (default ``/workspace``).
            request_timeout: HTTP time limit of this call, in seconds.

        Raises:
            ConflictError: The instance is paused or stopped (409 ``conflict``:
                resume or start it first).
            NotFoundError: Unknown instance.
        """
        body = _body(
            command=list(command) if command is not None and not isinstance(command, str) else command,
            code=code,
            language=language,
            stdin=stdin,
            env_vars=env_vars,
            timeout_ms=timeout_ms,
            working_dir=working_dir,
        )
        path = self._path(instance_id, "exec")
        return ExecutionResult.from_dict(self._http.call("POST", path, body, timeout=request_timeout))

    def ssh(self, instance_id: str) -> SSHInfo:
        """``GET /api/v1/instances/{id}/ssh``: a new key pair authorized for the
        instance, and where to connect. The private key is shown only in this
        answer; each call authorizes another one.

        Write ``private_key`` to a file of mode 0600 and run ``command`` with
        ``KEYFILE`` replaced by its path (add ``known_hosts`` to
        ``~/.ssh/known_hosts`` first, or the host key is asked about).

        Raises:
            ConflictError: The instance was created without ``enable_ssh``.
            FaaSError: 501 when the server runs no SSH gateway.
        """
        return SSHInfo.from_dict(self._http.call("GET", self._path(instance_id, "ssh")))

    #: Another name for :meth:`ssh`.
    ssh_info = ssh

    # -- ports -------------------------------------------------------------------

    def expose(self, instance_id: str, port: int, name: Optional[str] = None, public: bool = False) -> Exposure:
        """``POST /api/v1/instances/{id}/expose`` ``{port, name, public}``:
        reach a service listening on ``port`` inside the instance (on
        127.0.0.1 or any address) through the server.

        Args:
            port: The port inside the instance.
            name: 1-32 lowercase letters or digits (default ``"p" + port``);
                exposing a name again replaces it.
            public: Reachable without a key; otherwise requests need the
                owner's API key (header, or ``?api_key=``).

        Returns:
            The exposure, with ``url`` (by path) and ``host_url`` (by host name).
        """
        body = _body(port=port, name=name, public=public)
        return Exposure.from_dict(self._http.call("POST", self._path(instance_id, "expose"), body))

    def unexpose(self, instance_id: str, name: str) -> None:
        """``DELETE /api/v1/instances/{id}/expose/{name}``: stop exposing it;
        NotFoundError when nothing is exposed under that name."""
        self._http.call("DELETE", self._path(instance_id, "expose/" + _seg("name", name)))

    def _dev_server(self, instance_id: str, service: str, request_timeout: Optional[float]) -> Exposure:
        path = self._path(instance_id, service)
        return Exposure.from_dict(self._http.call("POST", path, {}, timeout=request_timeout))

    def jupyter(self, instance_id: str, *, request_timeout: Optional[float] = None) -> Exposure:
        """``POST /api/v1/instances/{id}/jupyter``: start Jupyter Notebook in
        the instance (if it is not running yet) and expose it to the owner's
        key; answers once the server answers (up to about a minute).

        Raises:
            UnprocessableError: 422: the image lacks Jupyter, or it did not
                start; ``message`` says what is missing.
        """
        return self._dev_server(instance_id, "jupyter", request_timeout)

    def vscode(self, instance_id: str, *, request_timeout: Optional[float] = None) -> Exposure:
        """``POST /api/v1/instances/{id}/vscode``: start ``code-server`` (VS Code
        in the browser) on ``/workspace`` and expose it; UnprocessableError
        (422) when the image lacks it."""
        return self._dev_server(instance_id, "vscode", request_timeout)

    def vnc(self, instance_id: str, *, request_timeout: Optional[float] = None) -> Exposure:
        """``POST /api/v1/instances/{id}/vnc``: start a virtual display (Xvfb,
        x11vnc, websockify) and expose its noVNC/WebSocket port;
        UnprocessableError (422) naming the missing programs when the image
        lacks them."""
        return self._dev_server(instance_id, "vnc", request_timeout)

    # -- files -------------------------------------------------------------------

    def upload(
        self,
        instance_id: str,
        remote_path: str,
        data: Union[bytes, bytearray, str],
        mode: Optional[Union[int, str]] = None,
        *,
        request_timeout: Optional[float] = None,
    ) -> FileUpload:
        """Write one file: ``PUT /api/v1/instances/{id}/files?path=...``.

        Args:
            remote_path: Absolute path under ``/workspace``, ``/home/user`` or
                ``/tmp`` (no ``..``); parent directories are created.
            data: The content (``str`` is written as UTF-8).
            mode: Permission bits, an int (``0o755``) or an octal string
                (``"755"``); default 0644.

        Raises:
            FaaSError: 400 for a path outside those directories.
        """
        if isinstance(data, str):
            raw = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise TypeError("data must be bytes or str")
        query = {"path": remote_path, "mode": _octal(mode)}
        answer = self._http.call("PUT", self._path(instance_id, "files"), query=query, data=raw,
                                 timeout=request_timeout)
        return FileUpload.from_dict(answer)

    def download(self, instance_id: str, remote_path: str, *, request_timeout: Optional[float] = None) -> bytes:
        """Read one file: ``GET /api/v1/instances/{id}/files?path=...``; its
        content as bytes.

        Raises:
            NotFoundError: No file there.
            FaaSError: 400 for a directory (use :meth:`download_archive`).
        """
        return self._http.call_bytes("GET", self._path(instance_id, "files"), query={"path": remote_path},
                                     timeout=request_timeout)

    def download_archive(self, instance_id: str, remote_path: str, *,
                         request_timeout: Optional[float] = None) -> bytes:
        """A tar archive of a file or directory:
        ``GET /api/v1/instances/{id}/files?path=...&format=tar``. Entries are
        named without the leading slash (``workspace/dir/a.txt``); read it with
        ``tarfile.open(fileobj=io.BytesIO(data))``."""
        return self._http.call_bytes("GET", self._path(instance_id, "files"),
                                     query={"path": remote_path, "format": "tar"},
                                     accept="application/x-tar", timeout=request_timeout)

    def upload_archive(
        self, instance_id: str, tar_bytes: bytes, dest: str = "/workspace", *,
        request_timeout: Optional[float] = None,
    ) -> ArchiveUpload:
        """Unpack a tar archive under ``dest``:
        ``POST /api/v1/instances/{id}/files/archive?dest=...``. Entries must be
        relative (no ``..``) regular files, directories or symbolic links.

        Raises:
            FaaSError: 400 for a bad archive or an escaping entry name.
        """
        answer = self._http.call("POST", self._path(instance_id, "files/archive"), query={"dest": dest},
                                 data=bytes(tar_bytes), content_type="application/x-tar",
                                 timeout=request_timeout)
        return ArchiveUpload.from_dict(answer)

    def sync(
        self,
        instance_id: str,
        local_dir: Union[str, "os.PathLike[str]"],
        remote_dir: str = "/workspace",
        exclude: Union[str, Iterable[str], None] = DEFAULT_SYNC_EXCLUDE,
        delete: bool = False,
        *,
        request_timeout: Optional[float] = None,
    ) -> SyncResult:
        """Upload a local directory into the instance:
        ``POST /api/v1/instances/{id}/sync?dest=...[&delete=true]``.

        The SDK packs ``local_dir`` into a tar archive in memory (regular
        files, directories and symbolic links; sockets, pipes and devices are
        left out; the server takes up to 1 GiB) and the server unpacks it
        under ``remote_dir``.

        Args:
            local_dir: The directory to send (its content, not itself).
            remote_dir: Where it goes in the instance (default ``/workspace``).
            exclude: Glob patterns (``fnmatch``) of what to leave out; a file
                or directory is left out when a pattern matches one of its
                path's names (``node_modules``, ``*.pyc``) or its whole path
                relative to ``local_dir`` (``build/*.o``, ``docs/tmp``).
                Default: ``node_modules``, ``.git``, ``__pycache__``; give
                ``()`` to send everything.
            delete: Empty ``remote_dir`` first, so it mirrors ``local_dir``.

        Raises:
            ValueError: ``local_dir`` is not a directory (before any request).
            FaaSError: 400 for a bad ``remote_dir``; ConflictError when the
                instance does not run.
        """
        tar_bytes, files, size, skipped = build_sync_archive(local_dir, exclude)
        query = {"dest": remote_dir, "delete": "true" if delete else None}
        answer = self._http.call("POST", self._path(instance_id, "sync"), query=query, data=tar_bytes,
                                 content_type="application/x-tar", timeout=request_timeout)
        result = SyncResult.from_dict(answer)
        result.files_sent, result.bytes_sent, result.excluded = files, size, skipped
        return result


class Keys(_Api):
    """API keys (admin scope): ``client.keys``."""

    def create(
        self,
        name: Optional[str] = None,
        scopes: Optional[Iterable[str]] = None,
        account: Optional[str] = None,
        *,
        rate_per_minute: Optional[int] = None,
        burst: Optional[int] = None,
    ) -> ApiKey:
        """``POST /api/v1/keys``: a new key; its secret is in ``key``, shown only here.

        ``scopes`` default to execute, instances, snapshots; without ``account``
        the key gets a new account of its own. ``rate_per_minute`` and
        ``burst`` give the key its own rate limit (default: the server's)."""
        body = _body(
            name=name,
            scopes=list(scopes) if scopes is not None else None,
            account=account,
            rate_per_minute=rate_per_minute,
            burst=burst,
        )
        return ApiKey.from_dict(self._http.call("POST", "/api/v1/keys", body))

    def list(self, account: Optional[str] = None) -> List[ApiKey]:
        """``GET /api/v1/keys[?account=...]``: keys (prefix only, never the secret)."""
        answer = self._http.call("GET", "/api/v1/keys", query={"account": account})
        return [ApiKey.from_dict(x) for x in _list_of(answer, "keys")]

    def revoke(self, key_id: str) -> None:
        """``DELETE /api/v1/keys/{id}``."""
        self._http.call("DELETE", "/api/v1/keys/" + _seg("key_id", key_id))


class UsageApi(_Api):
    """Usage and billing: ``client.usage()`` and ``client.usage.current()``."""

    def __call__(
        self,
        from_: Optional[Union[str, datetime.date]] = None,
        to: Optional[Union[str, datetime.date]] = None,
        group_by: Optional[str] = None,
    ) -> UsageReport:
        """``GET /api/v1/usage``: the caller's account's usage over a range.

        Args:
            from_: Start: RFC 3339, a date (``YYYY-MM-DD``), or a date/datetime
                (default: this month's start). A naive datetime is taken as UTC.
            to: End (default: now).
            group_by: ``day`` or ``mode`` for one row per group.
        """
        query = {"from": _when(from_), "to": _when(to), "group_by": group_by}
        return UsageReport.from_dict(self._http.call("GET", "/api/v1/usage", query=query))

    def current(self) -> CurrentUsage:
        """``GET /api/v1/usage/current``: this billing period's usage, volume
        tier, bill so far, projected bill and the price list."""
        return CurrentUsage.from_dict(self._http.call("GET", "/api/v1/usage/current"))


def _when(t: Optional[Union[str, datetime.date]]) -> Optional[str]:
    if t is None or isinstance(t, str):
        return t
    if isinstance(t, datetime.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=datetime.timezone.utc)
        return t.isoformat()
    return t.isoformat()


def _octal(mode: Optional[Union[int, str]]) -> Optional[str]:
    """A file mode as the octal digits the server takes (``0o755`` -> ``"755"``)."""
    if mode is None:
        return None
    if isinstance(mode, bool) or not isinstance(mode, (int, str)):
        raise TypeError("mode must be an int such as 0o755 or an octal string such as '755'")
    if isinstance(mode, int):
        if not 0 <= mode <= 0o777:
            raise ValueError("mode must be permission bits 0...0o777")
        return format(mode, "o")
    m = mode.strip().lower()
    return m[2:] if m.startswith("0o") else m


def _excluded(rel: str, patterns: Sequence[str]) -> bool:
    """True when a pattern matches one of rel's names or rel itself."""
    parts = rel.split("/")
    for p in patterns:
        if fnmatch.fnmatchcase(rel, p) or any(fnmatch.fnmatchcase(part, p) for part in parts):
            return True
    return False


def build_sync_archive(
    local_dir: Union[str, "os.PathLike[str]"],
    exclude: Union[str, Iterable[str], None] = DEFAULT_SYNC_EXCLUDE,
) -> Tuple[bytes, int, int, List[str]]:
    """The tar archive ``instances.sync`` sends: ``(archive, regular files,
    their bytes, excluded relative paths)``.

    Entries are relative POSIX paths (``src/a.py``, directories ``src/``) with
    the local modes and times; symbolic links stay links; hard links become
    separate files; sockets, pipes and devices are left out. See
    :meth:`Instances.sync` for ``exclude``.
    """
    root = os.fspath(local_dir)
    if not os.path.isdir(root):
        raise ValueError(f"local_dir {root!r} is not a directory")
    if exclude is None:
        exclude = ()
    elif isinstance(exclude, str):
        exclude = (exclude,)
    patterns = []
    for e in exclude:
        e = e.strip().strip("/")
        while e.startswith("./"):
            e = e[2:]
        if e:
            patterns.append(e)
    buf = io.BytesIO()
    files = size = 0
    skipped: List[str] = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(full: str, rel: str, st: os.stat_result) -> None:
            nonlocal files, size
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = int(st.st_mtime)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(full)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    info.size = os.fstat(f.fileno()).st_size
                    tar.addfile(info, f)
                files += 1
                size += info.size

        for dirpath, dirs, names in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            kept = []
            for d in sorted(dirs):
                rel = rel_dir + d
                if _excluded(rel, patterns):
                    skipped.append(rel)
                    continue
                full = os.path.join(dirpath, d)
                st = os.lstat(full)
                add(full, rel, st)  # a link to a directory is kept as a link, not followed
                if stat.S_ISDIR(st.st_mode):
                    kept.append(d)
            dirs[:] = kept
            for n in sorted(names):
                rel = rel_dir + n
                if _excluded(rel, patterns):
                    skipped.append(rel)
                    continue
                full = os.path.join(dirpath, n)
                add(full, rel, os.lstat(full))
    return buf.getvalue(), files, size, skipped
