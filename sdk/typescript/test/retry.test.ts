// Retries of 429/503 honouring Retry-After, against a real server made busy:
// it may hold one sandbox at a time, so a second concurrent execution gets
// 503 busy with Retry-After: 1.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FaaSError, parseRetryAfter } from '@faas/sdk';

import { startServer, type TestServer } from './server.js';

let server: TestServer;

before(async () => {
  server = await startServer({ FAAS_MAX_SANDBOXES: '1', FAAS_STOCK: '0' });
});

after(async () => {
  await server?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Takes the server's one sandbox with a 3-second execution and resolves once
 * it runs; `done` is that execution's result.
 */
async function occupy(): Promise<{ done: Promise<unknown> }> {
  const c = server.client({ maxRetries: 20 });
  const live = async () => (await c.health()).sandboxes.live;
  const deadline = Date.now() + 20_000;
  // The previous test's sandbox may still be on its way out.
  while ((await live()) > 0) {
    if (Date.now() > deadline) throw new Error('a sandbox stays live on an idle server');
    await sleep(20);
  }
  const busy = c.execute({ code: 'import time; time.sleep(3); print("long")', language: 'python' });
  while ((await live()) < 1) {
    if (Date.now() > deadline) throw new Error('the long execution never started');
    await sleep(20);
  }
  return { done: busy }; // wrapped: an async function would wait for a returned promise
}

test('without retries, a busy server surfaces 503 with Retry-After', { timeout: 60_000 }, async () => {
  const c = server.client({ maxRetries: 0 });
  const busy = await occupy();
  const t0 = Date.now();
  await assert.rejects(c.execute({ command: 'echo second' }), (e: unknown) => {
    assert.ok(e instanceof FaaSError, String(e));
    assert.equal(e.status, 503);
    assert.equal(e.code, 'busy');
    assert.equal(e.retryAfterMs, 1000);
    assert.ok(e.isRetryable);
    return true;
  });
  assert.ok(Date.now() - t0 < 900, 'no retry was made');
  await busy.done;
});

test('with retries, the call waits as told and succeeds once capacity frees', { timeout: 60_000 }, async () => {
  const c = server.client({ maxRetries: 10 });
  const busy = await occupy();
  const t0 = Date.now();
  const r = await c.execute({ command: 'echo second' });
  assert.equal(r.stdout, 'second\n');
  assert.ok(Date.now() - t0 >= 900, 'it waited at least one Retry-After second');
  await busy.done;
});

test('retries are bounded: after maxRetries the 503 surfaces', { timeout: 60_000 }, async () => {
  const c = server.client({ maxRetries: 1, maxRetryWaitMs: 100 });
  const busy = await occupy();
  const t0 = Date.now();
  await assert.rejects(c.execute({ command: 'echo x' }), (e: unknown) => e instanceof FaaSError && e.status === 503);
  const took = Date.now() - t0;
  assert.ok(took >= 100 && took < 2500, `one capped wait of 100 ms, took ${took} ms`);
  await busy.done;
});

test('an abort signal ends the wait between retries', { timeout: 60_000 }, async () => {
  const c = server.client({ maxRetries: 10 });
  const busy = await occupy();
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('gave up')), 300);
  await assert.rejects(c.execute({ command: 'echo x' }, { signal: ac.signal }), /gave up/);
  await busy.done;
});

test('429 rate_limited: surfaced with Retry-After, or waited out by the retries', { timeout: 60_000 }, async () => {
  // A key allowed one request a second, with no burst beyond it.
  const admin = server.client();
  const k = await admin.keys.create({ name: 'sdk-test-slow', ratePerMinute: 60, burst: 1 });
  const strict = server.client({ apiKey: k.key!, maxRetries: 0 });
  await strict.pools();
  await assert.rejects(strict.pools(), (e: unknown) => {
    assert.ok(e instanceof FaaSError, String(e));
    assert.equal(e.status, 429);
    assert.equal(e.code, 'rate_limited');
    assert.ok(e.retryAfterMs !== undefined && e.retryAfterMs >= 1000, `Retry-After ${e.retryAfterMs}`);
    return true;
  });
  const patient = server.client({ apiKey: k.key!, maxRetries: 5 });
  const pools = await patient.pools();
  assert.ok(Array.isArray(pools.pools));
});

test('parseRetryAfter reads seconds and HTTP dates', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('2', now), 2000);
  assert.equal(parseRetryAfter(' 0 ', now), 0);
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000);
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter('soon', now), undefined);
  assert.equal(parseRetryAfter(null, now), undefined);
});
