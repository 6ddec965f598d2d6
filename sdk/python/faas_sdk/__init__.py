"""Python SDK for the faas code execution platform (standard library only).

Example::

    from faas_sdk import FaaSClient, FaaSError

    client = FaaSClient(api_key="faas_...", endpoint="http://127.0.0.1:8080")
    result = client.execute(code="print('Hello World')", language="python", mode="cached")
    print(result.status, result.exit_code, result.stdout)

Every call raises :class:`FaaSError` (with ``status``, ``code``, ``message``)
when the server refuses it or cannot be reached; 404 answers raise its subclass
:class:`NotFoundError`, 409 answers :class:`ConflictError` (a merge conflict
:class:`MergeConflictError`, with ``paths``).
"""

from ._http import SDK_VERSION, parse_retry_after
from .client import Branches, FaaSClient, Instances, Keys, Sessions, Snapshots, UsageApi
from .errors import ConflictError, FaaSError, MergeConflictError, NotFoundError
from .models import (
    ApiKey,
    CurrentUsage,
    Execution,
    ExecutionResult,
    ExposedPort,
    Health,
    HealthDatabase,
    HealthRuntime,
    HealthSandboxes,
    Instance,
    MergeChange,
    MergeResult,
    Pool,
    PoolsResult,
    PrewarmResult,
    PriceList,
    ResourceUsage,
    Session,
    Snapshot,
    SshInfo,
    Stock,
    SyncResult,
    UsageReport,
    UsageRow,
)
from .stream import ExecutionStream, StreamOutput

__version__ = SDK_VERSION

__all__ = [
    "ApiKey",
    "Branches",
    "ConflictError",
    "CurrentUsage",
    "Execution",
    "ExecutionStream",
    "ExecutionResult",
    "ExposedPort",
    "FaaSClient",
    "FaaSError",
    "Health",
    "HealthDatabase",
    "HealthRuntime",
    "HealthSandboxes",
    "Instance",
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
    "Snapshots",
    "SshInfo",
    "Stock",
    "StreamOutput",
    "SyncResult",
    "UsageApi",
    "UsageReport",
    "UsageRow",
    "__version__",
    "parse_retry_after",
]
