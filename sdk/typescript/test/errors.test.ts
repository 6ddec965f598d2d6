// Errors: every refusal surfaces as a FaaSError with the server's status, code
// and message; features the server does not offer yet surface its 501.
// (Merge conflicts, 409 with paths, are tested in sessions.test.ts.)

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { FaaSClient, FaaSError, type Language } from '@faas/sdk';

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

/** Awaits p, which must reject with a FaaSError; returns it. */
async function refusal(p: Promise<unknown>): Promise<FaaSError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FaaSError, `expected a FaaSError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the call to reject with a FaaSError');
}

test('a bad API key: 401 unauthorized', async () => {
  const bad = server.client({ apiKey: 'faas_not_a_real_key' });
  const e = await refusal(bad.execute({ code: 'print(1)', language: 'python' }));
  assert.equal(e.status, 401);
  assert.equal(e.code, 'unauthorized');
  assert.equal(e.message, 'invalid API key');
  assert.equal(e.request, 'POST /api/v1/execute');
  assert.match(String(e), /^FaaSError: invalid API key \(401 unauthorized, POST \/api\/v1\/execute\)$/);
});

test('no API key at all: 401 with a message saying what to send', async () => {
  const none = server.client({ apiKey: '' });
  const e = await refusal(none.pools());
  assert.equal(e.status, 401);
  assert.match(e.message, /Authorization: Bearer/);
});

test('an unknown language: 400 with the server message', async () => {
  const e = await refusal(client.execute({ code: 'x', language: 'cobol' as Language }));
  assert.equal(e.status, 400);
  assert.equal(e.code, 'invalid_request');
  assert.match(e.message, /unknown language "cobol"/);
  assert.equal(e.isRetryable, false);
});

test('a limit out of range: 400', async () => {
  const e = await refusal(client.execute({ code: 'print(1)', language: 'python', resources: { memoryMb: 1 } }));
  assert.equal(e.status, 400);
  assert.match(e.message, /memory/);
});

test('execute in an unknown instance: 404', async () => {
  const e = await refusal(client.execute({ code: 'print(1)', mode: 'persistent', instanceId: 'i-0000000000000000' }));
  assert.equal(e.status, 404, e.message);
  assert.equal(e.code, 'not_found');
});

test('branched mode without a snapshot or branch: 400', async () => {
  const e = await refusal(client.execute({ code: 'print(1)', language: 'python', mode: 'branched' }));
  assert.equal(e.status, 400);
  assert.equal(e.code, 'invalid_request');
});

test('an unknown session or snapshot: 404', async () => {
  for (const call of [
    () => client.execute({ code: 'print(1)', mode: 'branched', sessionId: 'no-such-branch' }),
    () => client.execute({ code: 'print(1)', snapshotId: 'snap_does_not_exist' }),
    () => client.sessions.get('no-such-session'),
    () => client.snapshots.get('snap_does_not_exist'),
    () => client.snapshots.delete('snap_does_not_exist'),
    () => client.snapshots.restore('snap_does_not_exist'),
    () => client.createSnapshot('exec_does_not_exist', { name: 'n' }),
    () => client.createBranch('snap_does_not_exist', { code: 'print(1)', language: 'python' }),
  ]) {
    const e = await refusal(call());
    assert.equal(e.status, 404, e.message);
    assert.equal(e.code, 'not_found');
    assert.ok(e.message.length > 0);
  }
});

test('getExecution of an unknown id: 404', async () => {
  const e = await refusal(client.getExecution('exec_does_not_exist'));
  assert.equal(e.status, 404);
  assert.equal(e.code, 'not_found');
  assert.ok(e.isNotFound);
});

test('a key without the admin scope cannot manage keys: 403', async () => {
  const k = await client.keys.create({ name: 'sdk-test-exec-only', scopes: ['execute'] });
  const e = await refusal(server.client({ apiKey: k.key! }).keys.list());
  assert.equal(e.status, 403);
  assert.equal(e.code, 'forbidden');
});

test('no server: FaaSError with status 0 and code network_error', async () => {
  const gone = new FaaSClient({ endpoint: 'http://127.0.0.1:9', apiKey: 'x', maxRetries: 0 });
  const e = await refusal(gone.pools());
  assert.equal(e.status, 0);
  assert.equal(e.code, 'network_error');
  assert.ok(e.cause !== undefined);
});

test('empty ids are refused before any request', () => {
  assert.throws(() => client.getExecution(''), TypeError);
  assert.throws(() => client.createSnapshot(''), TypeError);
});

// Instances the caller does not have: every call surfaces the server's 404.
// (The instances themselves are tested in instances.test.ts.)
describe('an unknown instance: 404 not_found', () => {
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['instances.get', () => client.instances.get('i-0000000000000000')],
    ['instances.exec', () => client.instances.exec('i-0000000000000000', { command: 'true' })],
    ['instances.stop', () => client.instances.stop('i-0000000000000000')],
    ['instances.pause', () => client.instances.pause('i-0000000000000000')],
    ['instances.expose', () => client.instances.expose('i-0000000000000000', { name: 'web', port: 3000 })],
    ['instances.ssh', () => client.instances.ssh('i-0000000000000000')],
    ['instances.download', () => client.instances.download('i-0000000000000000', '/workspace/a.txt')],
    ['instances.upload', () => client.instances.upload('i-0000000000000000', '/workspace/a.txt', 'a')],
    ['instances.jupyter', () => client.instances.jupyter('i-0000000000000000')],
    ['instances.delete', () => client.instances.delete('i-0000000000000000')],
  ];
  for (const [name, call] of calls) {
    test(name, async () => {
      const e = await refusal(call());
      assert.equal(e.status, 404, `${name}: ${e.message}`);
      assert.equal(e.code, 'not_found');
      assert.ok(e.message.length > 0);
    });
  }

  test('instances.sync packs the directory and posts it to /sync', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'faas-sync-'));
    try {
      writeFileSync(join(dir, 'a.txt'), 'hello');
      const e = await refusal(client.instances.sync('i-0000000000000000', dir, '/workspace'));
      assert.equal(e.status, 404, e.message);
      assert.equal(e.request, 'POST /api/v1/instances/i-0000000000000000/sync');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('instances.sync of a missing local directory: TypeError before any request', async () => {
    await assert.rejects(client.instances.sync('i-0000000000000000', join(tmpdir(), 'no-such-dir-' + Date.now())), TypeError);
  });
});
