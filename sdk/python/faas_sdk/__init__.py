"""Python SDK for the faas code execution platform (standard library only).

Example::

    from faas_sdk import FaaSClient, FaaSError

    client = FaaSClient(api_key="faas_...", endpoint="http://127.0.0.1:8080")
    result = client.execute(code="print('Hello World')", language="python", mode="cached")
    print(result.status, result.exit_code, result.stdout)

Every call raises :class:`FaaSError` (with ``status``, ``code``, ``message``)
when the server refuses it or cannot be reached.
"""

from ._http import SDK_VERSION, parse_retry_after
from .client import Branches, FaaSClient, Instances, Keys, Snapshots, UsageApi
from .errors import FaaSError
from .models import (
    ApiKey,
    Branch,
    CurrentUsage,
    Execution,
    ExecutionResult,
    ExposedPort,
    Health,
    HealthDatabase,
    HealthRuntime,
    HealthSandboxes,
    Instance,
    Pool,
    PoolsResult,
    PrewarmResult,
    PriceList,
    ResourceUsage,
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
    "Branch",
    "Branches",
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
    "Pool",
    "PoolsResult",
    "PrewarmResult",
    "PriceList",
    "ResourceUsage",
    "SDK_VERSION",
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
