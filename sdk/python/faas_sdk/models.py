"""Result types. Field names are the wire's JSON names (snake_case).

Every class is built with ``from_dict``, which tolerates missing fields (they
keep their defaults) and keeps fields it does not know in ``extra``, so a
newer server's answers never break an older SDK.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Type, TypeVar

T = TypeVar("T", bound="Model")


class Model:
    """Base of the result types (dataclasses whose fields all have defaults)."""

    # Nested models: field name -> model class (for an object or a list of objects).
    _nested: ClassVar[Dict[str, Type["Model"]]] = {}
    # Wire names that are not valid Python names: wire name -> field name.
    _aliases: ClassVar[Dict[str, str]] = {}

    @property
    def extra(self) -> Dict[str, Any]:
        """Fields of the answer this SDK version does not know, as sent."""
        return self.__dict__.setdefault("_extra", {})

    @classmethod
    def from_dict(cls: Type[T], data: Optional[Mapping[str, Any]]) -> T:
        """Build an instance from a decoded JSON object."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs: Dict[str, Any] = {}
        extra: Dict[str, Any] = {}
        for k, v in dict(data or {}).items():
            k = cls._aliases.get(k, k)
            if k not in known:
                extra[k] = v
                continue
            sub = cls._nested.get(k)
            if sub is not None and isinstance(v, list):
                v = [sub.from_dict(x) if isinstance(x, Mapping) else x for x in v]
            elif sub is not None and isinstance(v, Mapping):
                v = sub.from_dict(v)
            kwargs[k] = v
        obj = cls(**kwargs)
        obj.__dict__["_extra"] = extra
        return obj

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a plain dict (``extra`` merged in), as the server sent them."""
        out = dict(self.extra)
        wire = {v: k for k, v in self._aliases.items()}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Model):
                v = v.to_dict()
            elif isinstance(v, list):
                v = [x.to_dict() if isinstance(x, Model) else x for x in v]
            out[wire.get(f.name, f.name)] = v
        return out


@dataclass
class ResourceUsage(Model):
    """Resources an execution consumed and their price."""

    cpu_ms: int = 0
    memory_peak_mb: int = 0
    cost_usd: float = 0.0
    cost_micro_usd: int = 0


@dataclass
class ExecutionResult(Model):
    """Result of ``execute``: the finished execution with its output.

    ``status`` is ``succeeded`` (exit 0), ``failed`` (non-zero exit, killed by a
    signal or at the memory limit), ``timeout`` or ``error`` (the platform
    failed; ``error`` says what).

    In a session (modes ``checkpointed`` and ``branched``) ``session_id`` is
    the session it ran in, and ``branch_id`` the same id when that session is
    a branch. ``snapshot_id`` is the snapshot ``checkpoint_after`` made, or
    ``None`` with the reason in ``snapshot_error``.

    ``instance_id`` is the instance an ``execute`` of mode ``persistent`` ran
    in: the one it created (it keeps running until deleted), or the request's
    ``instance_id``. ``None`` for other modes and for ``instances.exec``.
    """

    execution_id: str = ""
    request_id: str = ""
    status: str = ""
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    output: str = ""
    logs: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    oom_killed: bool = False
    error: Optional[str] = None
    duration_ms: int = 0
    mode: str = ""
    language: Optional[str] = None
    warm: bool = False
    session_id: Optional[str] = None
    branch_id: Optional[str] = None
    snapshot_id: Optional[str] = None
    snapshot_error: Optional[str] = None
    instance_id: Optional[str] = None
    usage: ResourceUsage = field(default_factory=ResourceUsage)

    _nested: ClassVar[Dict[str, Type[Model]]] = {"usage": ResourceUsage}

    @property
    def succeeded(self) -> bool:
        """True when the program exited with status 0."""
        return self.status == "succeeded"


@dataclass
class Execution(Model):
    """The stored record of an execution (``get_execution``); it holds no output.

    ``created_at`` and ``finished_at`` are RFC 3339 strings; ``exit_code`` is
    None while the execution runs (``status`` ``"running"``).
    """

    execution_id: str = ""
    status: str = ""
    exit_code: Optional[int] = None
    mode: str = ""
    language: Optional[str] = None
    image: str = ""
    error: Optional[str] = None
    duration_ms: int = 0
    created_at: str = ""
    finished_at: Optional[str] = None
    usage: ResourceUsage = field(default_factory=ResourceUsage)

    _nested: ClassVar[Dict[str, Type[Model]]] = {"usage": ResourceUsage}


@dataclass
class HealthRuntime(Model):
    """The sandbox runtime in a health report."""

    name: str = ""
    version: Optional[str] = None
    ready: bool = False
    error: Optional[str] = None


@dataclass
class HealthDatabase(Model):
    """The database in a health report."""

    driver: str = ""
    ok: bool = False
    error: Optional[str] = None


@dataclass
class HealthSandboxes(Model):
    """Sandbox counts in a health report: ``live`` (running now, of every
    kind), ``stocked`` (pre-booted, never used), ``sessions`` (held by live
    sessions and branches), ``branch_stocked`` (restored from snapshots ahead of
    demand) and ``instances`` (held by running instances)."""

    live: int = 0
    stocked: int = 0
    sessions: int = 0
    branch_stocked: int = 0
    instances: int = 0


@dataclass
class Health(Model):
    """Answer of ``health``: ``status`` is ``ok`` or ``degraded``."""

    status: str = ""
    version: str = ""
    runtime: HealthRuntime = field(default_factory=HealthRuntime)
    database: HealthDatabase = field(default_factory=HealthDatabase)
    sandboxes: HealthSandboxes = field(default_factory=HealthSandboxes)

    _nested: ClassVar[Dict[str, Type[Model]]] = {
        "runtime": HealthRuntime,
        "database": HealthDatabase,
        "sandboxes": HealthSandboxes,
    }


@dataclass
class Pool(Model):
    """One warm pool of the caller's account: one per image and memory limit.

    ``memory_mb`` is its sandboxes' memory limit (cached executions asking for
    the same take them); ``idle_memory_mb`` what its idle sandboxes hold
    together; ``account`` is set in the answer of ``prewarm`` only.
    """

    account: Optional[str] = None
    image: str = ""
    memory_mb: int = 0
    idle: int = 0
    in_use: int = 0
    hits: int = 0
    misses: int = 0
    boots: int = 0
    retired: int = 0
    reaped: int = 0
    evicted: int = 0
    idle_memory_mb: float = 0.0


@dataclass
class StockTarget(Model):
    """The stock of one image, with the interpreters of ``languages`` started ahead."""

    image: str = ""
    languages: List[str] = field(default_factory=list)
    target: int = 0
    ready: int = 0
    booted: int = 0
    #: languages beyond ``languages`` whose interpreters new stocked sandboxes
    #: start because requests asked for them lately
    demanded: List[str] = field(default_factory=list)
    #: ready sandboxes running each interpreter (``python``, ``node``, ``bash``)
    warm: Dict[str, int] = field(default_factory=dict)
    error: str = ""


@dataclass
class Stock(Model):
    """The server's stock of pre-booted, never-used sandboxes: totals over every
    image (``languages`` are the host image's), then per image in ``targets``."""

    target: int = 0
    ready: int = 0
    booted: int = 0
    languages: List[str] = field(default_factory=list)
    targets: List[StockTarget] = field(default_factory=list)

    _nested: ClassVar[Dict[str, Type[Model]]] = {"targets": StockTarget}


@dataclass
class PoolsResult(Model):
    """Answer of ``pools``."""

    pools: List[Pool] = field(default_factory=list)
    stock: Stock = field(default_factory=Stock)

    _nested: ClassVar[Dict[str, Type[Model]]] = {"pools": Pool, "stock": Stock}


@dataclass
class PrewarmResult(Model):
    """Answer of ``prewarm``: how many warm sandboxes were added, and the pool."""

    image: str = ""
    language: str = ""
    added: int = 0
    pool: Pool = field(default_factory=Pool)

    _nested: ClassVar[Dict[str, Type[Model]]] = {"pool": Pool}


@dataclass
class ApiKey(Model):
    """An API key; ``key`` (the secret) is only set in the answer of ``keys.create``."""

    id: str = ""
    key: Optional[str] = None
    name: str = ""
    account: str = ""
    prefix: str = ""
    scopes: List[str] = field(default_factory=list)
    #: The key's own rate limit, when it has one.
    rate_per_minute: Optional[int] = None
    burst: Optional[int] = None
    created_at: str = ""
    revoked_at: Optional[str] = None


@dataclass
class UsageRow(Model):
    """Usage summed over a group of executions (``group`` is the day or mode)."""

    group: Optional[str] = None
    executions: int = 0
    cpu_seconds: float = 0.0
    gb_seconds: float = 0.0
    cost_micro_usd: int = 0
    cost_usd: float = 0.0


@dataclass
class SnapshotUsage(Model):
    """Snapshot storage over a range: each snapshot's size for as long as it
    existed, in GB-months, and its cost."""

    gb_months: float = 0.0
    cost_micro_usd: int = 0
    cost_usd: float = 0.0


@dataclass
class UsageReport(Model):
    """Answer of ``usage()``: usage over a range (``from_`` and ``to`` are RFC
    3339 strings; the wire name of ``from_`` is ``from``). ``snapshots`` is the
    snapshot storage over the range (not in ``rows``; ``total`` includes its
    cost)."""

    account: str = ""
    from_: str = ""
    to: str = ""
    group_by: Optional[str] = None
    rows: List[UsageRow] = field(default_factory=list)
    snapshots: SnapshotUsage = field(default_factory=SnapshotUsage)
    total: UsageRow = field(default_factory=UsageRow)

    _nested: ClassVar[Dict[str, Type[Model]]] = {"rows": UsageRow, "snapshots": SnapshotUsage, "total": UsageRow}
    _aliases: ClassVar[Dict[str, str]] = {"from": "from_"}


@dataclass
class PriceList(Model):
    """The server's price list."""

    cpu_per_vcpu_second_usd: float = 0.0
    memory_per_gb_second_usd: float = 0.0
    gpu_per_hour_usd: float = 0.0
    snapshot_per_gb_month_usd: float = 0.0
    egress_per_gb_usd: float = 0.0
    #: Mode name -> price multiplier (ephemeral 1.0, cached 0.8, ...).
    mode_multipliers: Dict[str, float] = field(default_factory=dict)


@dataclass
class CurrentUsage(Model):
    """Answer of ``usage.current()``: this billing period (calendar month, UTC)."""

    account: str = ""
    period_start: str = ""
    period_end: str = ""
    #: Executions and instances; its cost includes the snapshots'.
    usage: UsageRow = field(default_factory=UsageRow)
    #: Snapshot storage this period.
    snapshots: SnapshotUsage = field(default_factory=SnapshotUsage)
    #: Volume tier: starter, growth, scale or enterprise.
    tier: str = ""
    discount_percent: int = 0
    #: Spend so far, discount applied.
    bill_micro_usd: int = 0
    bill_usd: float = 0.0
    #: The bill at this rate for the whole period, discount applied.
    projected_micro_usd: int = 0
    projected_usd: float = 0.0
    projected_tier: str = ""
    prices: PriceList = field(default_factory=PriceList)

    _nested: ClassVar[Dict[str, Type[Model]]] = {"usage": UsageRow, "snapshots": SnapshotUsage, "prices": PriceList}


# --- sessions, snapshots, branches ----------------------------------------


@dataclass
class Snapshot(Model):
    """A snapshot: the memory, processes and files of a session at one moment.

    ``parent_id`` is the snapshot the snapshotted session was restored or
    branched from (the snapshot tree), ``children`` the snapshots taken of
    sessions restored from this one. ``status`` is ``ready`` or ``broken``
    (its image cannot be restored; ``error`` says why). ``created_at`` is an
    RFC 3339 string.
    """

    id: str = ""
    snapshot_id: str = ""
    name: Optional[str] = None
    parent_id: Optional[str] = None
    children: List[str] = field(default_factory=list)
    session_id: Optional[str] = None
    execution_id: Optional[str] = None
    image: Optional[str] = None
    language: Optional[str] = None
    memory_mb: int = 0
    cpu_cores: float = 0.0
    size_bytes: int = 0
    sha256: str = ""
    status: str = ""
    error: Optional[str] = None
    created_at: str = ""

    @property
    def ready(self) -> bool:
        """True when the snapshot can be restored (``status == "ready"``)."""
        return self.status == "ready"


@dataclass
class Session(Model):
    """A live session: one sandbox whose interpreter keeps its state (globals,
    imports, open files) between executions, like a notebook kernel.

    ``branch_id`` is set (to ``id``) when the session is a branch;
    ``parent_snapshot`` is the snapshot it was restored or branched from.
    ``executions`` counts the executions run in it so far; ``memory_used_mb``
    is what its sandbox holds now (measured at each call). Timestamps are
    RFC 3339 strings. A session ends when deleted, after an idle timeout
    (server default 10 minutes) or when the server restarts.
    """

    id: str = ""
    session_id: str = ""
    branch_id: Optional[str] = None
    language: Optional[str] = None
    parent_snapshot: Optional[str] = None
    executions: int = 0
    memory_mb: int = 0
    cpu_cores: float = 0.0
    created_at: str = ""
    last_used_at: str = ""
    memory_used_mb: float = 0.0

    @property
    def is_branch(self) -> bool:
        """True when the session is a branch."""
        return bool(self.branch_id)


@dataclass
class MergeChange(Model):
    """One file change a merge took: ``action`` ``write`` or ``delete`` of
    ``path`` (e.g. ``/workspace/x``), from branch ``branch_id``."""

    path: str = ""
    action: str = ""
    branch_id: Optional[str] = None


@dataclass
class MergeResult(Model):
    """Answer of ``branches.merge``: the new ``snapshot``, holding the memory
    state of the branches' common parent ``base_snapshot`` plus the merged file
    ``changes``, and the ``strategy`` used."""

    snapshot: Snapshot = field(default_factory=Snapshot)
    strategy: str = ""
    base_snapshot: Optional[str] = None
    changes: List[MergeChange] = field(default_factory=list)

    _nested: ClassVar[Dict[str, Type[Model]]] = {"snapshot": Snapshot, "changes": MergeChange}


# --- persistent instances --------------------------------------------------


@dataclass
class InstanceResources(Model):
    """The resources of an instance: CPU cores, memory and disk limit (MB)."""

    cpu_cores: float = 0.0
    memory_mb: int = 0
    disk_mb: int = 0


@dataclass
class Exposure(Model):
    """A port of an instance exposed through the server.

    ``url`` reaches it by path (``http://server/p/{id}/{name}/``), ``host_url``
    by host name (``http://{name}-{id}.localhost:PORT/``; empty when the
    server routes no host names). A port that is not ``public`` needs the
    owner's API key (``x-api-key`` / ``Authorization`` header, or the
    ``api_key`` query parameter).
    """

    name: str = ""
    port: int = 0
    public: bool = False
    url: str = ""
    host_url: str = ""


@dataclass
class Instance(Model):
    """A persistent instance: a sandbox that lives until deleted, keeping its
    files, processes and interpreter state between executions.

    ``state`` (and its copy ``status``) is ``running``, ``paused`` or
    ``stopped``; ``error`` says why it is not running when that was not asked
    for. ``idle_ttl_seconds`` (when set) pauses it after that long idle.
    Timestamps are RFC 3339 strings.
    """

    id: str = ""
    instance_id: str = ""
    name: Optional[str] = None
    image: str = ""
    language: str = ""
    state: str = ""
    status: str = ""
    error: Optional[str] = None
    resources: InstanceResources = field(default_factory=InstanceResources)
    enable_ssh: bool = False
    idle_ttl_seconds: Optional[int] = None
    exposures: List[Exposure] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""

    _nested: ClassVar[Dict[str, Type[Model]]] = {"resources": InstanceResources, "exposures": Exposure}

    @property
    def running(self) -> bool:
        """True when the instance runs (``state == "running"``)."""
        return (self.state or self.status) == "running"

    @property
    def paused(self) -> bool:
        """True when the instance is paused (checkpointed to disk)."""
        return (self.state or self.status) == "paused"

    @property
    def stopped(self) -> bool:
        """True when the instance is stopped (processes ended, files kept)."""
        return (self.state or self.status) == "stopped"


@dataclass
class SSHInfo(Model):
    """Answer of ``instances.ssh``: where and how to connect over SSH.

    ``private_key`` is a new OpenSSH private key authorized for the instance
    on this call (it is shown only here); ``public_key`` its authorized_keys
    line; ``known_hosts`` a line for ``~/.ssh/known_hosts``; ``command`` the
    ``ssh`` command line, with ``KEYFILE`` standing for the file holding
    ``private_key``. ``user`` is the instance id.
    """

    instance_id: str = ""
    host: str = ""
    port: int = 0
    user: str = ""
    private_key: str = ""
    public_key: str = ""
    known_hosts: str = ""
    command: str = ""


@dataclass
class FileUpload(Model):
    """Answer of ``instances.upload``: the file's ``path``, its ``size`` in
    bytes, and how many archive ``entries`` the server wrote."""

    path: str = ""
    size: int = 0
    entries: int = 0


@dataclass
class ArchiveUpload(Model):
    """Answer of ``instances.upload_archive``: the directory ``dest`` the tar
    archive was unpacked under, and how many ``entries`` it held."""

    dest: str = ""
    entries: int = 0


@dataclass
class SyncResult(Model):
    """Answer of ``instances.sync``: the server's ``dest`` and ``entries``
    (files and directories unpacked), and what the SDK sent: ``files_sent``
    regular files of ``bytes_sent`` bytes in all, and the relative paths it
    left out (``excluded``: the excluded names, not what lies below them)."""

    dest: str = ""
    entries: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    excluded: List[str] = field(default_factory=list)


#: Former names of :class:`Exposure` and :class:`SSHInfo`.
ExposedPort = Exposure
SshInfo = SSHInfo
