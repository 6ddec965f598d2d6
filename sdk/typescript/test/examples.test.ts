// Runs the examples (compiled) each as its own process against a real server.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { startServer, type TestServer } from './server.js';

let server: TestServer;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

test('the seed README example: execute, snapshot, branch', { timeout: 120_000 }, () => {
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'seed.js');
  const run = spawnSync(process.execPath, [script], {
    env: { ...process.env, FAAS_API_KEY: server.adminKey, FAAS_ENDPOINT: server.endpoint },
    encoding: 'utf8',
    timeout: 100_000,
  });
  const said = `exit ${run.status}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
  assert.equal(run.status, 0, said);
  assert.equal(run.stderr, '', said);
  assert.match(run.stdout, /^execute: succeeded "Hello World\\n"$/m, said);
  assert.match(run.stdout, /^snapshot: snap_\S+$/m, said);
  const line = run.stdout.split('\n').find((l) => l.startsWith('branch: '));
  assert.ok(line, said);
  const branch = JSON.parse(line.slice('branch: '.length)) as Record<string, unknown>;
  assert.equal(branch['stdout'], 'Branch 1\n', said);
  assert.equal(branch['status'], 'succeeded', said);
  assert.equal(branch['mode'], 'branched', said);
  assert.ok(typeof branch['branchId'] === 'string' && branch['branchId'] !== '', said);
  assert.equal(branch['parentSnapshot'], /^snapshot: (\S+)$/m.exec(run.stdout)![1], said);
});

test('the seed README streaming example: output events, then complete', { timeout: 120_000 }, () => {
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'streaming.js');
  const run = spawnSync(process.execPath, [script], {
    env: { ...process.env, FAAS_API_KEY: server.adminKey, FAAS_ENDPOINT: server.endpoint },
    encoding: 'utf8',
    timeout: 100_000,
  });
  const said = `exit ${run.status}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
  assert.equal(run.status, 0, said);
  assert.equal(run.stderr, '', said);
  // Each output event is printed with console.log; how the output is cut in
  // chunks may vary, so only the text without newlines is compared.
  const done = run.stdout.lastIndexOf('Done: 0\n');
  assert.ok(done > 0 && done + 'Done: 0\n'.length === run.stdout.length, said);
  assert.equal(run.stdout.slice(0, done).replace(/\n/g, ''), 'line 0line 1line 2', said);
});

test('the README instances example: create, exec, expose, pause/resume, delete', { timeout: 180_000 }, () => {
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'instances.js');
  const run = spawnSync(process.execPath, [script], {
    env: { ...process.env, FAAS_API_KEY: server.adminKey, FAAS_ENDPOINT: server.endpoint },
    encoding: 'utf8',
    timeout: 150_000,
  });
  const said = `exit ${run.status}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
  assert.equal(run.status, 0, said);
  assert.equal(run.stderr, '', said);
  const id = /^created: (i-[0-9a-f]+) running$/m.exec(run.stdout)?.[1];
  assert.ok(id, said);
  assert.match(run.stdout, /^exec: 42$/m, said);
  assert.equal(
    run.stdout.split('\n').find((l) => l.startsWith('web: ')),
    `web: ${server.endpoint}/p/${id}/p8000/ 200 <h1>hi</h1>`,
    said,
  );
  assert.match(run.stdout, /^paused exec: 409$/m, said);
  assert.match(run.stdout, /^resumed: 42 200 <h1>hi<\/h1>$/m, said);
  assert.match(run.stdout, /^deleted$/m, said);
});
