// Sessions, snapshots, branches and merges against a real server: live
// sessions whose interpreter keeps its state, gVisor checkpoints and restores.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { FaaSClient, FaaSError, MergeConflictError, type Snapshot } from '@faas/sdk';

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

/** A session id of this test run. */
const sid = (what: string) => `sdk-ts-${what}-${randomBytes(4).toString('hex')}`;

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

/** Ends sessions a test started (they hold a sandbox each until idle). */
async function end(...ids: Array<string | undefined>): Promise<void> {
  for (const id of ids) {
    if (!id) continue;
    try {
      await client.sessions.delete(id);
    } catch (e) {
      if (!(e instanceof FaaSError && e.isNotFound)) throw e;
    }
  }
}

/**
 * A snapshot of a python session holding `state = "parent"` and the file
 * /workspace/base.txt; the session is ended.
 */
async function parentSnapshot(): Promise<Snapshot> {
  const r = await client.execute({
    code: 'state = "parent"\nopen("/workspace/base.txt", "w").write("base")\nprint("ready")',
    language: 'python',
    checkpointAfter: true,
  });
  assert.equal(r.status, 'succeeded', r.stderr);
  assert.ok(r.snapshotId, `no snapshot: ${r.snapshotError}`);
  await end(r.sessionId);
  return client.snapshots.get(r.snapshotId);
}

test('session state persists across two executes', { timeout: 120_000 }, async () => {
  const id = sid('state');
  try {
    const first = await client.execute({ code: 'x = 41\nimport json', language: 'python', sessionId: id });
    assert.equal(first.status, 'succeeded', first.stderr);
    assert.equal(first.mode, 'checkpointed');
    assert.equal(first.sessionId, id);
    assert.equal(first.branchId, undefined);
    assert.equal(first.snapshotId, undefined);
    // The language may be left out: the session's is used.
    const second = await client.execute({ code: 'print(json.dumps(x + 1))', sessionId: id });
    assert.equal(second.status, 'succeeded', second.stderr);
    assert.equal(second.stdout, '42\n');
    assert.equal(second.sessionId, id);
    assert.equal(second.language, 'python');
    assert.notEqual(second.executionId, first.executionId);

    // javascript sessions keep top-level declarations too.
    const js = sid('js');
    try {
      await client.execute({ code: 'let n = 2;', language: 'javascript', sessionId: js });
      const r = await client.execute({ code: 'console.log(n * 21)', sessionId: js });
      assert.equal(r.stdout, '42\n', r.stderr);
    } finally {
      await end(js);
    }
  } finally {
    await end(id);
  }
});

test('a session refuses command and stdin: 400', { timeout: 60_000 }, async () => {
  const e = await refusal(client.execute({ command: 'echo hi', sessionId: sid('cmd') }));
  assert.equal(e.status, 400);
  const s = await refusal(client.execute({ code: 'print(input())', language: 'python', stdin: 'x', sessionId: sid('stdin') }));
  assert.equal(s.status, 400);
});

test('checkpointAfter returns a snapshotId', { timeout: 120_000 }, async () => {
  const r = await client.execute({ code: 'y = 7\nprint(y)', language: 'python', checkpointAfter: true });
  try {
    assert.equal(r.status, 'succeeded', r.stderr);
    assert.equal(r.stdout, '7\n');
    assert.equal(r.mode, 'checkpointed');
    assert.match(r.sessionId ?? '', /^ses_/);
    assert.match(r.snapshotId ?? '', /^snap_/, `snapshotError: ${r.snapshotError}`);
    assert.equal(r.snapshotError, undefined);
    const s = await client.snapshots.get(r.snapshotId!);
    assert.equal(s.sessionId, r.sessionId);
    assert.equal(s.status, 'ready');
  } finally {
    await end(r.sessionId);
  }
});

describe('createSnapshot(executionId)', () => {
  test('of a checkpointed execution: a snapshot', { timeout: 120_000 }, async () => {
    const r = await client.execute({ code: 'z = 3', language: 'python', mode: 'checkpointed' });
    try {
      assert.equal(r.status, 'succeeded', r.stderr);
      const s = await client.createSnapshot(r.executionId, { name: 'sdk-ts-snap' });
      assert.match(s.id, /^snap_/);
      assert.equal(s.snapshotId, s.id);
      assert.equal(s.name, 'sdk-ts-snap');
      assert.equal(s.executionId, r.executionId);
      assert.equal(s.sessionId, r.sessionId);
      assert.equal(s.language, 'python');
      assert.equal(s.status, 'ready');
      assert.deepEqual(s.children, []);
      assert.ok(s.sizeBytes > 0, `sizeBytes ${s.sizeBytes}`);
      assert.match(s.sha256, /^[0-9a-f]{64}$/);
      assert.equal(typeof s.memoryMb, 'number');
      assert.equal(typeof s.cpuCores, 'number');
      assert.ok(!Number.isNaN(Date.parse(s.createdAt)), s.createdAt);
    } finally {
      await end(r.sessionId);
    }
  });

  test('of an ephemeral execution: 404 with the server message', { timeout: 60_000 }, async () => {
    const r = await client.execute({ code: 'print(1)', language: 'python', mode: 'ephemeral' });
    assert.equal(r.sessionId, undefined);
    const e = await refusal(client.createSnapshot(r.executionId));
    assert.equal(e.status, 404);
    assert.ok(e.isNotFound);
    assert.equal(e.code, 'not_found');
    assert.match(e.message, /only executions in mode checkpointed or branched can be snapshotted/);
    assert.equal(e.request, 'POST /api/v1/snapshots');
  });

  test('snapshots.create by sessionId and by branchId', { timeout: 120_000 }, async () => {
    const id = sid('create');
    try {
      await client.execute({ code: 'w = 1', language: 'python', sessionId: id });
      const s = await client.snapshots.create({ sessionId: id, name: 'by-session' });
      assert.equal(s.sessionId, id);
      assert.equal(s.name, 'by-session');
      const b = await client.snapshots.create({ branchId: id });
      assert.equal(b.sessionId, id);
      assert.notEqual(b.id, s.id);
    } finally {
      await end(id);
    }
  });
});

describe('branches', () => {
  let parent: Snapshot;
  before(async () => {
    parent = await parentSnapshot();
  });

  test('createBranch runs code in a branch: branchId and output', { timeout: 120_000 }, async () => {
    const b = await client.createBranch(parent.id, { code: 'print("branch sees", state, open("/workspace/base.txt").read())' });
    try {
      assert.equal(b.status, 'succeeded', b.stderr);
      assert.equal(b.stdout, 'branch sees parent base\n');
      assert.equal(b.exitCode, 0);
      assert.equal(b.mode, 'branched');
      assert.ok(b.branchId, 'a branchId');
      assert.equal(b.sessionId, b.branchId);
      assert.equal(b.parentSnapshot, parent.id);
      assert.match(b.executionId, /^exec_/);

      // The branch lives on: continue it, then list it as a session.
      const more = await client.execute({ mode: 'branched', sessionId: b.branchId, code: 'state = "child"\nprint(state)' });
      assert.equal(more.stdout, 'child\n', more.stderr);
      assert.equal(more.branchId, b.branchId);
      const s = await client.sessions.get(b.branchId);
      assert.equal(s.branchId, b.branchId);
      assert.equal(s.parentSnapshot, parent.id);
      assert.equal(s.executions, 2);

      // A snapshot of the branch is a child of the parent.
      const child = await client.snapshots.create({ branchId: b.branchId });
      assert.equal(child.parentId, parent.id);
      assert.ok((await client.snapshots.get(parent.id)).children.includes(child.id));
    } finally {
      await end(b.branchId);
    }
  });

  test('branches.create with count 3: three distinct branches, each with the snapshot state', { timeout: 180_000 }, async () => {
    const list = await client.branches.create(parent.id, { code: 'state += "!"\nprint(state)', count: 3 });
    try {
      assert.equal(list.length, 3);
      assert.equal(new Set(list.map((b) => b.branchId)).size, 3, JSON.stringify(list.map((b) => b.branchId)));
      for (const b of list) {
        assert.equal(b.stdout, 'parent!\n', b.stderr);
        assert.equal(b.status, 'succeeded');
        assert.equal(b.parentSnapshot, parent.id);
        assert.equal(b.sessionId, b.branchId);
      }
    } finally {
      await end(...list.map((b) => b.branchId));
    }
  });

  test('createBranch of an unknown snapshot: 404', { timeout: 60_000 }, async () => {
    const e = await refusal(client.createBranch('snap_does_not_exist', { code: 'print(1)' }));
    assert.equal(e.status, 404);
  });
});

test('snapshots.list, get and delete', { timeout: 120_000 }, async () => {
  const r = await client.execute({ code: 'v = 1', language: 'python', checkpointAfter: true });
  await end(r.sessionId);
  const id = r.snapshotId!;
  assert.ok(id, `no snapshot: ${r.snapshotError}`);
  const listed = await client.snapshots.list();
  assert.ok(Array.isArray(listed));
  const mine = listed.find((s) => s.id === id);
  assert.ok(mine, 'the new snapshot is listed');
  const got = await client.snapshots.get(id);
  assert.deepEqual(got, mine);
  for (let i = 1; i < listed.length; i++) {
    assert.ok(Date.parse(listed[i - 1]!.createdAt) <= Date.parse(listed[i]!.createdAt), 'oldest first');
  }

  await client.snapshots.delete(id);
  const e = await refusal(client.snapshots.get(id));
  assert.equal(e.status, 404);
  assert.ok(!(await client.snapshots.list()).some((s) => s.id === id), 'deleted: not listed');
  assert.equal((await refusal(client.snapshots.delete(id))).status, 404);
});

test('snapshots.restore: a session usable with execute({sessionId})', { timeout: 180_000 }, async () => {
  const parent = await parentSnapshot();
  const s = await client.snapshots.restore(parent.id);
  const named = sid('restored');
  try {
    assert.ok(s.id, 'a session id');
    assert.equal(s.sessionId, s.id);
    assert.equal(s.parentSnapshot, parent.id);
    assert.equal(s.language, 'python');
    assert.equal(s.executions, 0);
    const r = await client.execute({ sessionId: s.id, code: 'print(state)' });
    assert.equal(r.stdout, 'parent\n', r.stderr);
    assert.equal(r.sessionId, s.id);

    const n = await client.snapshots.restore(parent.id, { sessionId: named });
    assert.equal(n.id, named);
    const r2 = await client.execute({ sessionId: named, code: 'print(open("/workspace/base.txt").read())' });
    assert.equal(r2.stdout, 'base\n', r2.stderr);
  } finally {
    await end(s.id, named);
  }
  assert.equal((await refusal(client.snapshots.restore('snap_does_not_exist'))).status, 404);
});

test('execute({snapshotId}) restores into a new session and runs there', { timeout: 120_000 }, async () => {
  const parent = await parentSnapshot();
  const r = await client.execute({ snapshotId: parent.id, code: 'print(state.upper())' });
  try {
    assert.equal(r.stdout, 'PARENT\n', r.stderr);
    assert.equal(r.mode, 'checkpointed');
    assert.ok(r.sessionId);
  } finally {
    await end(r.sessionId);
  }
});

test('sessions.list, get and delete', { timeout: 120_000 }, async () => {
  const id = sid('list');
  await client.execute({ code: 'k = 1', language: 'python', sessionId: id });
  const listed = await client.sessions.list();
  const mine = listed.find((s) => s.id === id);
  assert.ok(mine, `listed: ${JSON.stringify(listed.map((s) => s.id))}`);
  assert.equal(mine.sessionId, id);
  assert.equal(mine.language, 'python');
  assert.equal(mine.executions, 1);
  assert.equal(mine.branchId, undefined);
  assert.ok(!Number.isNaN(Date.parse(mine.createdAt)) && !Number.isNaN(Date.parse(mine.lastUsedAt)));
  // memoryUsedMb is measured at each call; everything else must match.
  const { memoryUsedMb: usedNow, ...got } = await client.sessions.get(id);
  const { memoryUsedMb: usedBefore, ...fromList } = mine;
  assert.deepEqual(got, fromList);
  assert.ok(usedNow > 0 && usedBefore > 0);

  await client.sessions.delete(id);
  assert.equal((await refusal(client.sessions.get(id))).status, 404);
  assert.ok(!(await client.sessions.list()).some((s) => s.id === id));
  assert.equal((await refusal(client.sessions.delete(id))).status, 404);
});

test('empty ids are refused before any request', async () => {
  assert.throws(() => client.sessions.get(''), TypeError);
  assert.throws(() => client.snapshots.restore(''), TypeError);
  await assert.rejects(client.createBranch('', { code: 'print(1)' }), TypeError);
  await assert.rejects(client.branches.create('', { code: 'print(1)' }), TypeError);
});

describe('branches.merge', () => {
  test('union of two branches writing different files: a snapshot and its changes', { timeout: 240_000 }, async () => {
    const parent = await parentSnapshot();
    const [a] = await client.branches.create(parent.id, { code: 'open("/workspace/a.txt", "w").write("from a")' });
    const [b] = await client.branches.create(parent.id, { code: 'open("/workspace/b.txt", "w").write("from b")' });
    assert.ok(a && b);
    let restored: string | undefined;
    try {
      const m = await client.branches.merge([a.branchId, b.branchId], { strategy: 'union', name: 'sdk-ts-merged' });
      assert.equal(m.strategy, 'union');
      assert.equal(m.baseSnapshot, parent.id);
      assert.match(m.snapshot.id, /^snap_/);
      assert.equal(m.snapshot.name, 'sdk-ts-merged');
      const changes = m.changes.map((c) => [c.path, c.action, c.branchId]).sort();
      assert.deepEqual(changes, [
        ['/workspace/a.txt', 'write', a.branchId],
        ['/workspace/b.txt', 'write', b.branchId],
      ]);
      // The merged snapshot has the parent's memory and both files.
      const s = await client.snapshots.restore(m.snapshot.id);
      restored = s.id;
      const r = await client.execute({
        sessionId: s.id,
        code: 'print(state, open("/workspace/a.txt").read(), open("/workspace/b.txt").read())',
      });
      assert.equal(r.stdout, 'parent from a from b\n', r.stderr);
    } finally {
      await end(a.branchId, b.branchId, restored);
    }
  });

  test('union of branches writing the same path differently: 409 merge_conflict with paths', { timeout: 240_000 }, async () => {
    const parent = await parentSnapshot();
    const [a] = await client.branches.create(parent.id, { code: 'open("/workspace/same.txt", "w").write("a")' });
    const [b] = await client.branches.create(parent.id, { code: 'open("/workspace/same.txt", "w").write("b")' });
    assert.ok(a && b);
    try {
      const e = await refusal(client.branches.merge([a.branchId, b.branchId], { strategy: 'union' }));
      assert.ok(e instanceof MergeConflictError, `a MergeConflictError, got ${String(e)}`);
      assert.equal(e.status, 409);
      assert.ok(e.isConflict);
      assert.equal(e.code, 'merge_conflict');
      assert.deepEqual(e.paths, ['/workspace/same.txt']);
    } finally {
      await end(a.branchId, b.branchId);
    }
  });

  test('the request the SDK sends, and how it reads a 409 merge_conflict answer', async () => {
    // No server here: a fetch that records the request and answers like the
    // server's documented conflict.
    let sent: { url: string; body: unknown } | undefined;
    const fake: typeof fetch = async (url, init) => {
      sent = { url: String(url), body: JSON.parse(String(init?.body)) };
      const body = { error: 'branches conflict on 1 path', code: 'merge_conflict', paths: ['/workspace/x'] };
      return new Response(JSON.stringify(body), { status: 409, headers: { 'Content-Type': 'application/json' } });
    };
    const c = new FaaSClient({ endpoint: 'http://127.0.0.1:9', apiKey: 'k', fetch: fake });
    const e = await refusal(c.branches.merge(['br_1', 'br_2'], { strategy: 'union', name: 'm' }));
    assert.equal(sent?.url, 'http://127.0.0.1:9/api/v1/branches/merge');
    assert.deepEqual(sent?.body, { branch_ids: ['br_1', 'br_2'], strategy: 'union', name: 'm' });
    assert.ok(e instanceof MergeConflictError);
    assert.equal(e.name, 'MergeConflictError');
    assert.deepEqual(e.paths, ['/workspace/x']);
    assert.equal(e.message, 'branches conflict on 1 path');
    assert.match(String(e), /^MergeConflictError: branches conflict on 1 path \(409 merge_conflict, POST \/api\/v1\/branches\/merge\)$/);
    // The strategy alone may be given as a string.
    await refusal(c.branches.merge(['br_1', 'br_2'], 'latest'));
    assert.deepEqual(sent?.body, { branch_ids: ['br_1', 'br_2'], strategy: 'latest' });
  });
});
