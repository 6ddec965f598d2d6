"""Python SDK for the faas code execution platform (standard library only).

Example::

    from faas_sdk import FaaSClient, FaaSError

    client = FaaSClient(api_key="faas_...", endpoint="http://127.0.0.1:8080")
    result = client.execute(code="print('Hello World')", language="python", mode="cached")
    print(result.status, result.exit_code, result.stdout)

Every call raises :class:`FaaSError` (with ``status``, ``code``, ``message``)
when the server refuses it or cannot be reached; 404 answers raise its subclass
:class:`NotFoundError`, 409 answers :class:`ConflictError` (a merge conflict
:class:`MergeConflictError`, with ``paths``), 422 answers
:class:`UnprocessableError`.
"""

from ._http import SDK_VERSION, parse_retry_after
from .client import (
    DEFAULT_SYNC_EXCLUDE,
    Branches,
    FaaSClient,
    Instances,
    Keys,
    Sessions,
    Snapshots,
    UsageApi,
    build_sync_archive,
)
from .errors import ConflictError, FaaSError, MergeConflictError, NotFoundError, UnprocessableError
from .models import (
    ApiKey,
    ArchiveUpload,
    CurrentUsage,
    Execution,
    ExecutionResult,
    ExposedPort,
    Exposure,
    FileUpload,
    Health,
    HealthDatabase,
    HealthRuntime,
    HealthSandboxes,
    Instance,
    InstanceResources,
    MergeChange,
    MergeResult,
    Pool,
    PoolsResult,
    PrewarmResult,
    PriceList,
    ResourceUsage,
    Session,
    Snapshot,
    SnapshotUsage,
    SSHInfo,
    SshInfo,
    Stock,
    StockTarget,
    SyncResult,
    UsageReport,
    UsageRow,
)
from .stream import ExecutionStream, StreamOutput

__version__ = SDK_VERSION

__all__ = [
    "ApiKey",
    "ArchiveUpload",
    "Branches",
    "ConflictError",
    "CurrentUsage",
    "DEFAULT_SYNC_EXCLUDE",
    "Execution",
    "ExecutionStream",
    "ExecutionResult",
    "ExposedPort",
    "Exposure",
    "FaaSClient",
    "FaaSError",
    "FileUpload",
    "Health",
    "HealthDatabase",
    "HealthRuntime",
    "HealthSandboxes",
    "Instance",
    "InstanceResources",
    "Instances",
    "Keys",
    "MergeChange",
    "MergeConflictError",
    "MergeResult",
    "NotFoundError",
    "Pool",
    "PoolsResult",
    "PrewarmResult",
    "PriceList",
    "ResourceUsage",
    "SDK_VERSION",
    "Session",
    "Sessions",
    "Snapshot",
    "SnapshotUsage",
    "Snapshots",
    "SSHInfo",
    "SshInfo",
    "Stock",
    "StockTarget",
    "StreamOutput",
    "SyncResult",
    "UnprocessableError",
    "UsageApi",
    "UsageReport",
    "UsageRow",
    "__version__",
    "build_sync_archive",
    "parse_retry_after",
]
