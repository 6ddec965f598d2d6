// health, prewarm, pools and API keys against a real server.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FaaSError, type FaaSClient } from '@faas/sdk';

import { startServer, type TestServer } from './server.js';

let server: TestServer;
let client: FaaSClient;

before(async () => {
  server = await startServer();
  client = server.client();
});

after(async () => {
  await server?.stop();
});

test('health needs no key', async () => {
  const h = await server.client({ apiKey: '' }).health();
  assert.equal(h.status, 'ok');
  assert.equal(h.runtime.name, 'gvisor');
  assert.equal(h.runtime.ready, true);
  assert.equal(h.database.ok, true);
  assert.equal(typeof h.sandboxes.live, 'number');
  for (const k of ['live', 'stocked', 'sessions', 'branchStocked', 'instances'] as const) {
    assert.equal(typeof h.sandboxes[k], 'number', `sandboxes.${k}: ${JSON.stringify(h.sandboxes)}`);
  }
});

test('prewarm readies warm sandboxes that pools reports and cached mode uses', { timeout: 120_000 }, async () => {
  // A key of its own, so this account's pool starts empty.
  const k = await client.keys.create({ name: 'sdk-test-pools' });
  const c = server.client({ apiKey: k.key! });
  const before = await c.pools();
  assert.deepEqual(before.pools, []);
  assert.equal(typeof before.stock.target, 'number');
  assert.ok(Array.isArray(before.stock.languages));
  // The test server keeps the default stock: of the host image only.
  assert.deepEqual(before.stock.targets.map((t) => t.image), ['host']);
  assert.equal(before.stock.targets[0].target, before.stock.target);
  assert.deepEqual(before.stock.targets[0].languages, before.stock.languages);

  const p = await c.prewarm({ language: 'python', count: 1 });
  assert.equal(p.added, 1);
  assert.equal(p.language, 'python');
  assert.equal(p.image, 'host');
  assert.equal(p.pool.idle, 1);
  assert.equal(typeof p.pool.memoryMb, 'number');
  assert.ok(p.pool.memoryMb > 0, JSON.stringify(p.pool));
  assert.ok(p.pool.idleMemoryMb > 0, JSON.stringify(p.pool));

  const pools = await c.pools();
  assert.equal(pools.pools.length, 1);
  assert.equal(pools.pools[0]!.image, 'host');
  assert.equal(pools.pools[0]!.idle, 1);
  assert.equal(typeof pools.pools[0]!.inUse, 'number');
  assert.equal(pools.pools[0]!.memoryMb, p.pool.memoryMb);
  assert.equal(typeof pools.pools[0]!.idleMemoryMb, 'number');

  const r = await c.execute({ code: 'print("warm")', language: 'python', mode: 'cached' });
  assert.equal(r.stdout, 'warm\n');
  assert.equal(r.warm, true);
  const afterRun = await c.pools();
  assert.ok(afterRun.pools[0]!.hits >= 1, JSON.stringify(afterRun));
});

test('prewarm with memoryMb: a pool of that memory limit, which cached executions asking for it use', { timeout: 120_000 }, async () => {
  const k = await client.keys.create({ name: 'sdk-test-pools-mem' });
  const c = server.client({ apiKey: k.key! });
  const p = await c.prewarm({ language: 'python', count: 1, memoryMb: 256 });
  assert.equal(p.added, 1);
  assert.equal(p.pool.memoryMb, 256);
  assert.equal(p.pool.idle, 1);
  const r = await c.execute({ code: 'print("warm")', language: 'python', mode: 'cached', resources: { memoryMb: 256 } });
  assert.equal(r.stdout, 'warm\n');
  assert.equal(r.warm, true);
  const pools = await c.pools();
  const pool = pools.pools.find((x) => x.memoryMb === 256);
  assert.ok(pool && pool.hits >= 1, JSON.stringify(pools.pools));
});

test('prewarm with a bad count: 400', async () => {
  await assert.rejects(client.prewarm({ count: 1000 }), (e: unknown) => e instanceof FaaSError && e.status === 400);
});

test('keys: create, use, list, revoke', { timeout: 60_000 }, async () => {
  const k = await client.keys.create({ name: 'sdk-test', scopes: ['execute'] });
  assert.match(k.key!, /^faas_/);
  assert.match(k.id, /.+/);
  assert.deepEqual(k.scopes, ['execute']);
  assert.match(k.account, /^acct_/);
  assert.ok(k.key!.startsWith(k.prefix), `${k.key} starts with ${k.prefix}`);
  assert.ok(!Number.isNaN(Date.parse(k.createdAt)));

  const user = server.client({ apiKey: k.key! });
  const r = await user.execute({ command: 'echo as user' });
  assert.equal(r.stdout, 'as user\n');

  const listed = await client.keys.list();
  const mine = listed.find((x) => x.id === k.id);
  assert.ok(mine, 'the new key is listed');
  assert.equal(mine.key, undefined, 'a listing never shows the secret');
  const byAccount = await client.keys.list(k.account);
  assert.deepEqual(byAccount.map((x) => x.id), [k.id]);

  await client.keys.revoke(k.id);
  await assert.rejects(user.pools(), (e: unknown) => e instanceof FaaSError && e.status === 401);
  const revoked = (await client.keys.list(k.account))[0]!;
  assert.ok(revoked.revokedAt, 'revokedAt is set');

  await assert.rejects(client.keys.revoke('key_does_not_exist'), (e: unknown) => e instanceof FaaSError && e.status === 404);
});

test('keys.create refuses an unknown scope: 400', async () => {
  await assert.rejects(
    client.keys.create({ name: 'x', scopes: ['root' as 'admin'] }),
    (e: unknown) => e instanceof FaaSError && e.status === 400 && /unknown scope/.test(e.message),
  );
});

test('usage: totals, grouping by mode, the current period', { timeout: 120_000 }, async () => {
  // A new account, so its usage is exactly what this test runs.
  const k = await client.keys.create({ name: 'sdk-test-usage' });
  const c = server.client({ apiKey: k.key! });
  const empty = await c.usage();
  assert.equal(empty.account, k.account);
  assert.equal(empty.total.executions, 0);
  assert.deepEqual(empty.rows, []);
  assert.deepEqual(empty.snapshots, { gbMonths: 0, costMicroUsd: 0, costUsd: 0 });

  // A tenth of a second of CPU: billed CPU time is measured (in 10 ms ticks), so a
  // bare print may use none.
  await c.execute({ code: 'import time\nt = time.process_time()\nwhile time.process_time() - t < 0.1: pass', language: 'python' });
  await c.execute({ code: 'print(2)', language: 'python', mode: 'cached' });

  const u = await c.usage();
  assert.equal(u.total.executions, 2);
  assert.ok(u.total.cpuSeconds > 0, JSON.stringify(u.total));
  assert.ok(u.total.gbSeconds > 0);
  assert.equal(typeof u.total.costMicroUsd, 'number');
  assert.ok(!Number.isNaN(Date.parse(u.from)) && !Number.isNaN(Date.parse(u.to)));

  const byMode = await c.usage({ groupBy: 'mode', from: new Date(Date.now() - 3600_000) });
  assert.equal(byMode.groupBy, 'mode');
  assert.deepEqual(byMode.rows.map((r) => [r.group, r.executions]).sort(), [['cached', 1], ['ephemeral', 1]]);

  const cur = await c.usage.current();
  assert.equal(cur.account, k.account);
  assert.equal(cur.usage.executions, 2);
  assert.equal(typeof cur.snapshots.gbMonths, 'number');
  assert.equal(typeof cur.snapshots.costMicroUsd, 'number');
  assert.equal(cur.tier, 'starter');
  assert.equal(cur.discountPercent, 0);
  assert.equal(typeof cur.billMicroUsd, 'number');
  assert.equal(typeof cur.projectedUsd, 'number');
  assert.equal(cur.prices.cpuPerVcpuSecondUsd, 0.000024);
  assert.equal(cur.prices.memoryPerGbSecondUsd, 0.000003);
  assert.equal(cur.prices.modeMultipliers['cached'], 0.8);
  assert.ok(Date.parse(cur.periodEnd) > Date.parse(cur.periodStart));
});

test('usage with a bad range: 400', async () => {
  await assert.rejects(
    client.usage({ from: '2026-02-01', to: '2026-01-01' }),
    (e: unknown) => e instanceof FaaSError && e.status === 400,
  );
});

test('keys.create with a rate limit shows it', async () => {
  const k = await client.keys.create({ name: 'sdk-test-rate', ratePerMinute: 600, burst: 5 });
  assert.equal(k.ratePerMinute, 600);
  assert.equal(k.burst, 5);
});
