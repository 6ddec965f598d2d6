"""health, prewarm, pools and API keys against a real server."""

from __future__ import annotations

import datetime

import pytest

from faas_sdk import FaaSClient, FaaSError


def test_health_needs_no_key(server) -> None:  # type: ignore[no-untyped-def]
    h = server.client(api_key="").health()
    assert h.status == "ok"
    assert h.runtime.name == "gvisor"
    assert h.runtime.ready is True
    assert h.database.ok is True
    assert isinstance(h.sandboxes.live, int)
    for name in ("live", "stocked", "sessions", "branch_stocked", "instances"):
        assert name in h.sandboxes.to_dict() and isinstance(getattr(h.sandboxes, name), int), name
    assert h.sandboxes.extra == {}


def test_prewarm_and_pools(server, client: FaaSClient) -> None:  # type: ignore[no-untyped-def]
    # A key of its own, so this account's pool starts empty.
    k = client.keys.create(name="sdk-test-pools")
    c = server.client(api_key=k.key)
    before = c.pools()
    assert before.pools == []
    assert isinstance(before.stock.target, int)
    assert isinstance(before.stock.languages, list)
    # The test server keeps the default stock: of the host image only.
    assert [t.image for t in before.stock.targets] == ["host"]
    assert before.stock.targets[0].target == before.stock.target
    assert before.stock.targets[0].languages == before.stock.languages

    p = c.prewarm(language="python", count=1)
    assert p.added == 1
    assert p.language == "python"
    assert p.image == "host"
    assert p.pool.idle == 1
    assert isinstance(p.pool.memory_mb, int) and p.pool.memory_mb > 0
    assert p.pool.idle_memory_mb > 0

    pools = c.pools()
    assert len(pools.pools) == 1
    assert pools.pools[0].image == "host"
    assert pools.pools[0].idle == 1
    assert isinstance(pools.pools[0].in_use, int)
    assert pools.pools[0].memory_mb == p.pool.memory_mb
    assert isinstance(pools.pools[0].idle_memory_mb, (int, float))
    assert pools.pools[0].extra == {} and pools.extra == {}

    r = c.execute(code='print("warm")', language="python", mode="cached")
    assert r.stdout == "warm\n"
    assert r.warm is True
    assert c.pools().pools[0].hits >= 1


def test_prewarm_with_memory_mb(server, client: FaaSClient) -> None:  # type: ignore[no-untyped-def]
    k = client.keys.create(name="sdk-test-pools-mem")
    c = server.client(api_key=k.key)
    p = c.prewarm(language="python", count=1, memory_mb=256)
    assert p.added == 1
    assert p.pool.memory_mb == 256 and p.pool.idle == 1
    r = c.execute(code='print("warm")', language="python", mode="cached", resources={"memory_mb": 256})
    assert r.stdout == "warm\n" and r.warm is True
    pool = [x for x in c.pools().pools if x.memory_mb == 256]
    assert pool and pool[0].hits >= 1, pool


def test_prewarm_bad_count(client: FaaSClient) -> None:
    with pytest.raises(FaaSError) as ei:
        client.prewarm(count=1000)
    assert ei.value.status == 400


def test_keys_create_use_list_revoke(server, client: FaaSClient) -> None:  # type: ignore[no-untyped-def]
    k = client.keys.create(name="sdk-test", scopes=["execute"])
    assert k.key and k.key.startswith("faas_")
    assert k.id
    assert k.scopes == ["execute"]
    assert k.account.startswith("acct_")
    assert k.key.startswith(k.prefix)
    assert k.created_at

    user = server.client(api_key=k.key)
    assert user.execute(command="echo as user").stdout == "as user\n"

    mine = [x for x in client.keys.list() if x.id == k.id]
    assert len(mine) == 1
    assert mine[0].key is None, "a listing never shows the secret"
    assert [x.id for x in client.keys.list(account=k.account)] == [k.id]

    client.keys.revoke(k.id)
    with pytest.raises(FaaSError) as ei:
        user.pools()
    assert ei.value.status == 401
    assert client.keys.list(account=k.account)[0].revoked_at

    with pytest.raises(FaaSError) as ei:
        client.keys.revoke("key_does_not_exist")
    assert ei.value.status == 404


def test_keys_unknown_scope(client: FaaSClient) -> None:
    with pytest.raises(FaaSError) as ei:
        client.keys.create(name="x", scopes=["root"])
    assert ei.value.status == 400
    assert "unknown scope" in ei.value.message


def test_usage(server, client: FaaSClient) -> None:  # type: ignore[no-untyped-def]
    # A new account, so its usage is exactly what this test runs.
    k = client.keys.create(name="sdk-test-usage")
    c = server.client(api_key=k.key)
    empty = c.usage()
    assert empty.account == k.account
    assert empty.total.executions == 0
    assert empty.rows == []
    assert empty.snapshots.gb_months == 0 and empty.snapshots.cost_micro_usd == 0
    assert empty.extra == {}

    # A tenth of a second of CPU: billed CPU time is measured (in 10 ms ticks), so
    # a bare print may use none.
    c.execute(code="import time\nt = time.process_time()\nwhile time.process_time() - t < 0.1: pass", language="python")
    c.execute(code="print(2)", language="python", mode="cached")

    u = c.usage()
    assert u.total.executions == 2
    assert u.total.cpu_seconds > 0
    assert u.total.gb_seconds > 0
    assert isinstance(u.total.cost_micro_usd, int)
    assert u.from_ and u.to

    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    by_mode = c.usage(from_=since, group_by="mode")
    assert by_mode.group_by == "mode"
    assert sorted((r.group, r.executions) for r in by_mode.rows) == [("cached", 1), ("ephemeral", 1)]

    cur = c.usage.current()
    assert cur.account == k.account
    assert cur.usage.executions == 2
    assert isinstance(cur.snapshots.cost_micro_usd, int) and isinstance(cur.snapshots.gb_months, (int, float))
    assert cur.extra == {}
    assert cur.tier == "starter"
    assert cur.discount_percent == 0
    assert isinstance(cur.bill_micro_usd, int)
    assert cur.prices.cpu_per_vcpu_second_usd == 0.000024
    assert cur.prices.memory_per_gb_second_usd == 0.000003
    assert cur.prices.mode_multipliers["cached"] == 0.8
    assert cur.period_end > cur.period_start


def test_usage_bad_range(client: FaaSClient) -> None:
    with pytest.raises(FaaSError) as ei:
        client.usage(from_=datetime.date(2026, 2, 1), to="2026-01-01")
    assert ei.value.status == 400


def test_keys_with_rate_limit(client: FaaSClient) -> None:
    k = client.keys.create(name="sdk-test-rate", rate_per_minute=600, burst=5)
    assert k.rate_per_minute == 600
    assert k.burst == 5
