// stream(): live output over Server-Sent Events, against a real server.
//
// To follow an execution while it runs, the test needs its id before it ends,
// which POST /api/v1/execute only gives at the end; so the test starts it over
// the server's WebSocket endpoint (GET /api/v1/execute/stream) with Node's
// built-in WebSocket (`node --experimental-websocket` on Node 20, as `npm test`
// runs it). The SDK itself uses no WebSocket.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FaaSError, type ExecuteResult, type FaaSClient } from '@faas/sdk';

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

interface Collected {
  output: Array<[string, string]>;
  events: string[];
  exitCode?: number;
  result?: ExecuteResult;
  error?: FaaSError;
}

function collect(stream: ReturnType<FaaSClient['stream']>): Collected {
  const c: Collected = { output: [], events: [] };
  stream.on('started', () => c.events.push('started'));
  stream.on('output', (data, which) => {
    c.output.push([which, data]);
    c.events.push('output');
  });
  stream.on('complete', (code, result) => {
    c.exitCode = code;
    c.result = result;
    c.events.push('complete');
  });
  stream.on('error', (e) => {
    c.error = e;
    c.events.push('error');
  });
  return c;
}

const joined = (c: Collected, which: string) =>
  c.output
    .filter(([w]) => w === which)
    .map(([, d]) => d)
    .join('');

test('a finished execution is replayed: output, then complete with the exit code', { timeout: 60_000 }, async () => {
  const r = await client.execute({
    code: 'import sys\nprint("one")\nprint("oops", file=sys.stderr)\nprint("two")\nsys.exit(3)',
    language: 'python',
  });
  const stream = client.stream(r.executionId);
  const c = collect(stream);
  const result = await stream.done;
  assert.equal(joined(c, 'stdout'), 'one\ntwo\n');
  assert.equal(joined(c, 'stderr'), 'oops\n');
  assert.equal(c.exitCode, 3);
  assert.equal(result.exitCode, 3);
  assert.equal(result.status, 'failed');
  assert.equal(result.executionId, r.executionId);
  assert.equal(result.stdout, 'one\ntwo\n');
  assert.equal(c.events[0], 'started');
  assert.equal(c.events.at(-1), 'complete');
  assert.equal(c.error, undefined);
});

test('a running execution is followed live', { timeout: 60_000 }, async () => {
  const WS = (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
  assert.ok(WS, 'this test needs a global WebSocket: run it with node --experimental-websocket (npm test does)');
  const url = server.endpoint.replace(/^http/, 'ws') + '/api/v1/execute/stream?api_key=' + server.adminKey;
  const ws = new WS(url);
  const started = new Promise<string>((resolve, reject) => {
    ws.addEventListener('message', (ev) => {
      const f = JSON.parse(String(ev.data)) as { type: string; execution_id?: string };
      if (f.type === 'started') resolve(f.execution_id!);
    });
    ws.addEventListener('error', () => reject(new Error('WebSocket error')));
  });
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error('WebSocket did not open')));
  });
  // The program writes "ready", then blocks until the test sends a line.
  ws.send(
    JSON.stringify({
      type: 'exec',
      language: 'python',
      code: 'import sys\nprint("ready", flush=True)\nline = sys.stdin.readline()\nprint("got", line.strip())',
    }),
  );
  const id = await started;

  const stream = client.stream(id);
  const c = collect(stream);
  // "ready" arrives while the program is still waiting for its input.
  await new Promise<void>((resolve) => {
    const check = () => (joined(c, 'stdout').includes('ready') ? resolve() : setTimeout(check, 10));
    check();
  });
  assert.equal(c.exitCode, undefined, 'not complete before its input');
  ws.send(JSON.stringify({ type: 'stdin', data: 'go\n' }));
  const result = await stream.done;
  assert.equal(joined(c, 'stdout'), 'ready\ngot go\n');
  assert.equal(c.exitCode, 0);
  assert.equal(result.status, 'succeeded');
  ws.close();
});

test('an unknown execution: error event and done reject with FaaSError 404', { timeout: 30_000 }, async () => {
  const stream = client.stream('exec_does_not_exist');
  const c = collect(stream);
  await assert.rejects(stream.done, (e: unknown) => e instanceof FaaSError && e.status === 404);
  assert.equal(c.error?.status, 404);
  assert.deepEqual(c.events, ['error']);
});

test('another account cannot follow an execution: 404', { timeout: 60_000 }, async () => {
  const r = await client.execute({ command: 'echo mine' });
  const k = await client.keys.create({ name: 'sdk-test-stream-other' });
  const other = server.client({ apiKey: k.key! });
  await assert.rejects(other.stream(r.executionId).done, (e: unknown) => e instanceof FaaSError && e.status === 404);
});

test('close() stops following; done rejects with code closed', { timeout: 60_000 }, async () => {
  const r = await client.execute({ command: 'echo x' });
  const stream = client.stream(r.executionId);
  stream.close();
  await assert.rejects(stream.done, (e: unknown) => e instanceof FaaSError && e.code === 'closed');
});

/** The part of the WHATWG WebSocket the test uses. */
interface WebSocketLike {
  addEventListener(type: 'open' | 'error' | 'close', listener: () => void): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
  send(data: string): void;
  close(): void;
}
