// Starts a real `faas serve` (bin/faas of this repository) on a free loopback
// port with a temporary data directory, for the SDK's tests, and stops it after.
//
// Needs root and bin/faas, bin/faas-agent, bin/runsc (build them as the main
// README says). Without them the tests fail with a message saying what to do;
// they never skip. FAAS_TEST_BIN_DIR names another directory holding faas and
// faas-agent (default: bin/ of the repository; FAAS_RUNSC another runsc).
// FAAS_TEST_ENDPOINT + FAAS_TEST_API_KEY (an admin key) point the tests at a
// server that is already running instead.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { FaaSClient, type ClientOptions } from '@faas/sdk';

export interface TestServer {
  endpoint: string;
  /** An admin key. */
  adminKey: string;
  /** A client with the admin key and no retries. */
  client(options?: ClientOptions): FaaSClient;
  /** What the server printed so far. */
  logs(): string;
  stop(): Promise<void>;
}

/** The repository root: the directory above this file holding the faas go.mod. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const mod = join(dir, 'go.mod');
    if (existsSync(mod) && readFileSync(mod, 'utf8').includes('module github.com/faas-platform/faas\n')) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('go.mod of github.com/faas-platform/faas not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

/** Listens on a free port and returns the server holding it and the port. */
function holdFreePort(): Promise<{ srv: ReturnType<typeof createServer>; port: number }> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (typeof addr === 'object' && addr) resolve({ srv, port: addr.port });
      else reject(new Error('no port'));
    });
  });
}

/** n distinct free ports (all held until each is known, so none repeats). */
async function freePorts(n: number): Promise<number[]> {
  const held = [];
  try {
    for (let i = 0; i < n; i++) held.push(await holdFreePort());
    return held.map((h) => h.port);
  } finally {
    await Promise.all(held.map((h) => new Promise((r) => h.srv.close(() => r(undefined)))));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts a server with extra environment variables (e.g. FAAS_MAX_SANDBOXES). */
export async function startServer(extraEnv: Record<string, string> = {}): Promise<TestServer> {
  const external = process.env['FAAS_TEST_ENDPOINT'];
  if (external && Object.keys(extraEnv).length === 0) {
    const adminKey = process.env['FAAS_TEST_API_KEY'];
    if (!adminKey) throw new Error('FAAS_TEST_ENDPOINT is set but FAAS_TEST_API_KEY (an admin key) is not');
    return {
      endpoint: external,
      adminKey,
      client: (o) => new FaaSClient({ endpoint: external, apiKey: adminKey, maxRetries: 0, ...o }),
      logs: () => '(external server)',
      stop: async () => {},
    };
  }

  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error('the SDK tests start a real faas server that runs gVisor sandboxes, which needs root: run them as root');
  }
  const root = repoRoot();
  const binDir = process.env['FAAS_TEST_BIN_DIR'] || join(root, 'bin');
  const faas = join(binDir, 'faas');
  const agent = join(binDir, 'faas-agent');
  const runsc = process.env['FAAS_RUNSC'] || join(root, 'bin', 'runsc');
  for (const [path, how] of [
    [faas, 'CGO_ENABLED=0 go build -o bin/faas ./cmd/faas'],
    [agent, 'CGO_ENABLED=0 go build -o bin/faas-agent ./cmd/faas-agent'],
    [runsc, 'scripts/build-runsc.sh (or set FAAS_RUNSC)'],
  ] as const) {
    if (!existsSync(path)) throw new Error(`${path} is missing: build it in ${root} with ${how}`);
  }

  const [port, sshPort] = await freePorts(2);
  const tmp = mkdtempSync(join(tmpdir(), 'faas-sdk-ts-'));
  const logPath = join(tmp, 'serve.log');
  const adminKey = 'faas_' + randomBytes(20).toString('hex');
  const endpoint = `http://127.0.0.1:${port}`;
  const out = () => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  // The log goes to a file, not a pipe: a server whose reader died would be
  // killed by SIGPIPE on its next log line, before cleaning up its sandboxes.
  const logFd = openSync(logPath, 'w');
  const child: ChildProcess = spawn(faas, ['serve'], {
    env: {
      ...process.env,
      FAAS_DATA_DIR: join(tmp, 'data'),
      FAAS_API_PORT: String(port),
      FAAS_API_KEY: adminKey,
      FAAS_HOST: '127.0.0.1',
      FAAS_RUNSC: runsc,
      FAAS_AGENT: agent,
      // A free port for the SSH gateway: its default (2222) may be taken by
      // another server on this machine.
      FAAS_SSH_PORT: String(sshPort),
      ...extraEnv,
    },
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  let exited: number | string | null | undefined;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = code ?? signal;
      resolve();
    }),
  );
  // Never leave a server behind if the test process dies.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async () => {
    if (exited === undefined) {
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 60_000)));
      const done = await Promise.race([exit.then(() => true), late]);
      clearTimeout(timer);
      if (!done) {
        child.kill('SIGKILL');
        await exit;
      }
    }
    process.removeListener('exit', killOnExit);
    rmSync(tmp, { recursive: true, force: true });
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== undefined) {
      await stop();
      throw new Error(`faas serve exited during start-up (${exited}):\n${out()}`);
    }
    try {
      const r = await fetch(endpoint + '/health');
      await r.text();
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`faas serve not healthy after 60 s:\n${out()}`);
    }
    await sleep(50);
  }
  return {
    endpoint,
    adminKey,
    client: (o) => new FaaSClient({ endpoint, apiKey: adminKey, maxRetries: 0, ...o }),
    logs: out,
    stop,
  };
}
