// execute and getExecution against a real server with real gVisor sandboxes.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { ExecuteRequest, FaaSClient, Instance, Language, Mode } from '@faas/sdk';

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

const programs: Record<Language, { code: string; stdout: string; stderr: string; exit: number }> = {
  python: {
    code: 'import sys\nprint("py out")\nprint("py err", file=sys.stderr)\nsys.exit(3)',
    stdout: 'py out\n',
    stderr: 'py err\n',
    exit: 3,
  },
  javascript: {
    code: 'console.log("js out"); console.error("js err"); process.exitCode = 4;',
    stdout: 'js out\n',
    stderr: 'js err\n',
    exit: 4,
  },
  typescript: {
    code: 'const n: number = 5; console.log(`ts out ${n}`); console.error("ts err"); process.exit(n);',
    stdout: 'ts out 5\n',
    stderr: 'ts err\n',
    exit: 5,
  },
  bash: {
    code: 'echo "sh out"; echo "sh err" >&2; exit 6',
    stdout: 'sh out\n',
    stderr: 'sh err\n',
    exit: 6,
  },
};

for (const mode of ['ephemeral', 'cached'] as Mode[]) {
  describe(`execute, ${mode} mode`, () => {
    for (const [language, p] of Object.entries(programs) as [Language, (typeof programs)[Language]][]) {
      test(`${language}: stdout, stderr and exit code`, { timeout: 60_000 }, async () => {
        const r = await client.execute({ code: p.code, language, mode });
        assert.equal(r.status, 'failed');
        assert.equal(r.exitCode, p.exit);
        assert.equal(r.stdout, p.stdout);
        assert.equal(r.stderr, p.stderr);
        assert.equal(r.output, r.stdout);
        assert.equal(r.logs, r.stderr);
        assert.equal(r.mode, mode);
        assert.equal(r.language, language);
        assert.match(r.executionId, /^exec_/);
        assert.equal(r.requestId, r.executionId);
        assert.equal(r.timedOut, false);
        assert.equal(r.oomKilled, false);
        assert.equal(typeof r.durationMs, 'number');
        assert.equal(typeof r.usage.cpuMs, 'number');
        assert.equal(typeof r.usage.memoryPeakMb, 'number');
        assert.equal(typeof r.usage.costUsd, 'number');
      });
    }

    test('command string, succeeded', { timeout: 60_000 }, async () => {
      const r = await client.execute({ command: 'echo hello from sh; id -u', mode });
      assert.equal(r.status, 'succeeded');
      assert.equal(r.exitCode, 0);
      assert.equal(r.stdout, 'hello from sh\n1000\n');
      if (mode === 'ephemeral') assert.equal(r.warm, false);
    });
  });
}

test('cached mode reuses a warm sandbox', { timeout: 60_000 }, async () => {
  // A key of its own, so the account's pool holds only this test's sandbox.
  const k = await client.keys.create({ name: 'sdk-test-cached' });
  const c = server.client({ apiKey: k.key! });
  await c.execute({ code: 'print(1)', language: 'python', mode: 'cached' });
  // The sandbox is reset after each execution before it is idle again; a
  // request that comes sooner misses the pool and takes a fresh one.
  const deadline = Date.now() + 20_000;
  while ((await c.pools()).pools[0]?.idle !== 1) {
    assert.ok(Date.now() < deadline, 'the warm sandbox never became idle');
    await new Promise((r) => setTimeout(r, 20));
  }
  const r = await c.execute({ code: 'print(2)', language: 'python', mode: 'cached' });
  assert.equal(r.stdout, '2\n');
  assert.equal(r.warm, true);
});

test('command as an argv array is quoted', { timeout: 60_000 }, async () => {
  const r = await client.execute({ command: ['printf', '%s|', 'a b', "it's"] });
  assert.equal(r.stdout, "a b|it's|");
});

test('stdin reaches the program', { timeout: 60_000 }, async () => {
  const r = await client.execute({
    code: 'import sys; data = sys.stdin.read(); print(len(data), data.upper())',
    language: 'python',
    stdin: 'abc\ndef',
  });
  assert.equal(r.stdout, '7 ABC\nDEF\n');
});

test('envVars as an object and as pairs, names kept as they are', { timeout: 60_000 }, async () => {
  const code = 'import os; print(os.environ["MY_VAR"], os.environ["lower_name"])';
  const asObject: ExecuteRequest = { code, language: 'python', envVars: { MY_VAR: 'one', lower_name: 'two' } };
  const asPairs: ExecuteRequest = { code, language: 'python', envVars: [['MY_VAR', 'one'], ['lower_name', 'two']] };
  for (const req of [asObject, asPairs]) {
    const r = await client.execute(req);
    assert.equal(r.stdout, 'one two\n', r.stderr);
  }
});

test('workingDir and resources', { timeout: 60_000 }, async () => {
  const r = await client.execute({
    code: 'import os; print(os.getcwd())',
    language: 'python',
    workingDir: '/tmp/sdk-wd',
    resources: { cpuCores: 1, memoryMb: 256 },
  });
  assert.equal(r.status, 'succeeded', r.stderr);
  assert.equal(r.stdout, '/tmp/sdk-wd\n');
});

test('timeoutMs stops the program: status timeout', { timeout: 60_000 }, async () => {
  const r = await client.execute({ code: 'import time; time.sleep(30)', language: 'python', timeoutMs: 500 });
  assert.equal(r.status, 'timeout');
  assert.equal(r.timedOut, true);
  assert.ok(r.error && r.error.length > 0, 'a timeout carries an error message');
  assert.ok(r.durationMs < 20_000, `took ${r.durationMs} ms`);
});

test('persistent mode: a new instance runs the code, and keeps running until deleted', { timeout: 120_000 }, async () => {
  const r = await client.execute({
    code: 'counter = 41\nprint(counter)',
    language: 'python',
    mode: 'persistent',
    resources: { memoryMb: 256 },
  });
  const id = r.instanceId;
  assert.ok(id, JSON.stringify(r));
  try {
    assert.match(id, /^i-[0-9a-f]+$/);
    assert.equal(r.status, 'succeeded', r.stderr);
    assert.equal(r.stdout, '41\n');
    assert.equal(r.mode, 'persistent');
    // The instance lives on, with the request's resources and its interpreter's state.
    const inst = await client.instances.get(id);
    assert.equal(inst.state, 'running');
    assert.equal(inst.language, 'python');
    assert.equal(inst.resources.memoryMb, 256);
    const again = await client.instances.exec(id, { code: 'counter += 1; print(counter)' });
    assert.equal(again.stdout, '42\n', again.stderr);
    // execute with instanceId runs in that instance (whatever the mode says).
    const inIt = await client.execute({ code: 'print(counter)', instanceId: id });
    assert.equal(inIt.stdout, '42\n', inIt.stderr);
    assert.equal(inIt.instanceId, id);
    assert.equal(inIt.mode, 'persistent');
    const cmd = await client.execute({ command: 'echo from-sh', mode: 'persistent', instanceId: id });
    assert.equal(cmd.stdout, 'from-sh\n');
    assert.equal(cmd.instanceId, id);
  } finally {
    await client.instances.delete(id);
  }
  // Other modes carry no instanceId.
  const plain = await client.execute({ code: 'print(1)', language: 'python' });
  assert.equal(plain.instanceId, undefined);
});

test('persistent mode without code: the answer is the new instance', { timeout: 120_000 }, async () => {
  const answer = await client.execute({ mode: 'persistent', language: 'python' });
  const inst = answer as unknown as Instance;
  assert.ok(answer.instanceId, JSON.stringify(answer));
  try {
    assert.equal(inst.id, answer.instanceId);
    assert.equal(inst.state, 'running');
    assert.equal(answer.executionId, undefined);
  } finally {
    await client.instances.delete(answer.instanceId!);
  }
});

test('getExecution returns the stored record', { timeout: 60_000 }, async () => {
  const r = await client.execute({ code: 'print("x")', language: 'python' });
  const e = await client.getExecution(r.executionId);
  assert.equal(e.executionId, r.executionId);
  assert.equal(e.status, 'succeeded');
  assert.equal(e.exitCode, 0);
  assert.equal(e.mode, 'ephemeral');
  assert.equal(e.language, 'python');
  assert.ok(!Number.isNaN(Date.parse(e.createdAt)), e.createdAt);
  assert.equal(typeof e.usage.costMicroUsd, 'number');
});

test('x-api-key style extra headers are passed along', { timeout: 60_000 }, async () => {
  const c = server.client({ apiKey: '', headers: { 'x-api-key': server.adminKey } });
  const r = await c.execute({ command: 'echo ok' });
  assert.equal(r.stdout, 'ok\n');
});
