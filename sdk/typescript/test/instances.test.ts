// Persistent instances against a real server: lifecycle, execs whose state
// persists, files (upload, download, archives, sync of a local directory),
// pause/resume, exposed ports through the server's proxy, SSH credentials,
// dev servers, and isolation between accounts.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createTar, DEFAULT_SYNC_EXCLUDE, FaaSError, type FaaSClient, type Instance } from '@faas/sdk';

import { repoRoot, startServer, type TestServer } from './server.js';

let server: TestServer;
let client: FaaSClient;
/** The instance most tests share (python, running). */
let inst: Instance;
const created: string[] = [];

before(async () => {
  server = await startServer();
  client = server.client();
  inst = await create({ name: 'sdk-ts-main', language: 'python' });
});

after(async () => {
  for (const id of created) {
    try {
      await client?.instances.delete(id);
    } catch {
      // already gone
    }
  }
  await server?.stop();
});

async function create(req: Parameters<FaaSClient['instances']['create']>[0]): Promise<Instance> {
  const i = await client.instances.create(req);
  created.push(i.id);
  return i;
}

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

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The entry names of a tar archive (ustar, with pax `path` records). */
function tarNames(tar: Uint8Array): string[] {
  const names: string[] = [];
  let paxPath: string | undefined;
  for (let at = 0; at + 512 <= tar.length; ) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const field = (o: number, n: number) => text(h.subarray(o, o + n)).replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = String.fromCharCode(h[156]!);
    const data = tar.subarray(at + 512, at + 512 + size);
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(text(data));
      paxPath = m?.[1];
    } else if (type !== 'g') {
      const prefix = field(345, 155);
      names.push(paxPath ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100)));
      paxPath = undefined;
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

test('create: a running instance with its resources', async () => {
  assert.match(inst.id, /^i-[0-9a-f]+$/);
  assert.equal(inst.instanceId, inst.id);
  assert.equal(inst.name, 'sdk-ts-main');
  assert.equal(inst.state, 'running');
  assert.equal(inst.status, 'running');
  assert.equal(inst.language, 'python');
  assert.equal(inst.image, 'host');
  assert.equal(inst.enableSsh, false);
  assert.equal(typeof inst.resources.cpuCores, 'number');
  assert.ok(inst.resources.memoryMb > 0);
  assert.equal(typeof inst.resources.diskMb, 'number');
  assert.deepEqual(inst.exposures, []);
  assert.ok(!Number.isNaN(Date.parse(inst.createdAt)));

  const got = await client.instances.get(inst.id);
  assert.equal(got.id, inst.id);
  assert.equal(got.state, 'running');
  const list = await client.instances.list();
  assert.ok(list.some((i) => i.id === inst.id), 'listed');
});

test('create with network: 501 from the server', async () => {
  const e = await refusal(client.instances.create({ network: true }));
  assert.equal(e.status, 501);
  assert.ok(e.isNotImplemented);
});

test('exec: a command (object or string) and code whose state persists', { timeout: 120_000 }, async () => {
  const r = await client.instances.exec(inst.id, { command: 'echo hello from $(pwd); echo err >&2; exit 3' });
  assert.equal(r.stdout, 'hello from /workspace\n');
  assert.equal(r.stderr, 'err\n');
  assert.equal(r.exitCode, 3);
  assert.equal(r.status, 'failed');
  assert.equal(r.mode, 'persistent');
  assert.match(r.executionId, /.+/);

  const s = await client.instances.exec(inst.id, 'echo shorthand');
  assert.equal(s.stdout, 'shorthand\n');
  const env = await client.instances.exec(inst.id, {
    command: 'echo "$GREETING"; cat; pwd',
    envVars: { GREETING: 'hi' },
    stdin: 'from stdin\n',
    workingDir: '/tmp',
  });
  assert.equal(env.stdout, 'hi\nfrom stdin\n/tmp\n');

  const a = await client.instances.exec(inst.id, { code: 'counter = 41\nprint("set")' });
  assert.equal(a.stdout, 'set\n', a.stderr);
  const b = await client.instances.exec(inst.id, { code: 'counter += 1\nprint(counter)', language: 'python' });
  assert.equal(b.stdout, '42\n', b.stderr);
  assert.equal(b.status, 'succeeded');
});

test('upload and download: bytes and text round trip, mode, archives', { timeout: 120_000 }, async () => {
  const bytes = new Uint8Array(70_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) % 256;
  const up = await client.instances.upload(inst.id, '/workspace/files/blob.bin', bytes);
  assert.equal(up.path, '/workspace/files/blob.bin');
  assert.equal(up.size, bytes.length);
  assert.deepEqual(await client.instances.download(inst.id, '/workspace/files/blob.bin'), bytes);

  await client.instances.upload(inst.id, '/workspace/files/run.sh', '#!/bin/sh\necho ünïcode\n', { mode: 0o755 });
  const run = await client.instances.exec(inst.id, '/workspace/files/run.sh && stat -c %a /workspace/files/run.sh');
  assert.equal(run.stdout, 'ünïcode\n755\n', run.stderr);
  await client.instances.upload(inst.id, '/workspace/files/ro.txt', 'x', { mode: '600' });
  assert.equal((await client.instances.exec(inst.id, 'stat -c %a /workspace/files/ro.txt')).stdout, '600\n');

  const tar = await client.instances.downloadArchive(inst.id, '/workspace/files');
  const names = tarNames(tar);
  for (const n of ['workspace/files/blob.bin', 'workspace/files/run.sh', 'workspace/files/ro.txt']) {
    assert.ok(names.includes(n), `${n} in ${JSON.stringify(names)}`);
  }

  const made = createTar([
    { path: 'arch', type: 'directory' },
    { path: 'arch/one.txt', type: 'file', data: new TextEncoder().encode('one') },
    { path: 'arch/link', type: 'symlink', linkTarget: 'one.txt' },
  ]);
  const ar = await client.instances.uploadArchive(inst.id, made, { dest: '/tmp/unpacked' });
  assert.equal(ar.dest, '/tmp/unpacked');
  assert.equal(ar.entries, 3);
  assert.equal(text(await client.instances.download(inst.id, '/tmp/unpacked/arch/one.txt')), 'one');
  assert.equal((await client.instances.exec(inst.id, 'readlink /tmp/unpacked/arch/link')).stdout, 'one.txt\n');

  const missing = await refusal(client.instances.download(inst.id, '/workspace/files/nope'));
  assert.equal(missing.status, 404);
  const outside = await refusal(client.instances.upload(inst.id, '/etc/passwd', 'x'));
  assert.equal(outside.status, 400);
  assert.equal(outside.code, 'invalid_request');
  const bad = await refusal(client.instances.uploadArchive(inst.id, new TextEncoder().encode('not a tar archive')));
  assert.equal(bad.status, 400);
});

test('sync: a local directory, with exclude, then mirrored with delete', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'faas-sync-'));
  try {
    const longDir = 'a-directory-with-a-rather-long-name-' + 'x'.repeat(40);
    const longFile = 'and-a-file-name-long-enough-that-the-path-needs-pax-' + 'y'.repeat(30) + '.txt';
    const files: Record<string, string> = {
      'main.py': 'print("main")\n',
      'src/app/util.py': 'X = 1\n',
      'src/app/data.json': '{"k": [1, 2, 3]}',
      [`${longDir}/${longFile}`]: 'long path',
      'keep.txt': 'keep',
    };
    const skipped: Record<string, string> = {
      'node_modules/pkg/index.js': 'module.exports = 1',
      'src/node_modules/deep/x.js': 'x',
      'debug.log': 'log',
      'src/app/trace.log': 'trace',
      '.git/HEAD': 'ref: refs/heads/main',
    };
    for (const [p, c] of Object.entries({ ...files, ...skipped })) {
      mkdirSync(join(dir, p, '..'), { recursive: true });
      writeFileSync(join(dir, p), c);
    }
    assert.ok(`${longDir}/${longFile}`.length > 100);
    symlinkSync('src/app/util.py', join(dir, 'util-link'));

    const r = await client.instances.sync(inst.id, dir, '/workspace/proj', { exclude: ['node_modules', '*.log', '.git'] });
    assert.equal(r.dest, '/workspace/proj');
    assert.equal(r.files, Object.keys(files).length);
    assert.equal(r.symlinks, 1);
    assert.equal(r.entries, r.files + r.directories + r.symlinks);
    for (const [p, c] of Object.entries(files)) {
      assert.equal(text(await client.instances.download(inst.id, `/workspace/proj/${p}`)), c, p);
    }
    for (const p of Object.keys(skipped)) {
      const e = await refusal(client.instances.download(inst.id, `/workspace/proj/${p}`));
      assert.equal(e.status, 404, `${p} was excluded: ${e.message}`);
    }
    const ls = await client.instances.exec(inst.id, {
      command: 'readlink util-link; ls -A; python3 main.py',
      workingDir: '/workspace/proj',
    });
    assert.equal(ls.stdout, `src/app/util.py\n${longDir}\nkeep.txt\nmain.py\nsrc\nutil-link\nmain\n`, ls.stderr);

    // Without delete, files gone locally stay; with delete, the remote mirrors.
    unlinkSync(join(dir, 'keep.txt'));
    await client.instances.sync(inst.id, dir, '/workspace/proj', { exclude: ['node_modules', '*.log', '.git'] });
    assert.equal(text(await client.instances.download(inst.id, '/workspace/proj/keep.txt')), 'keep');
    await client.instances.sync(inst.id, dir, '/workspace/proj', { exclude: ['node_modules', '*.log', '.git'], delete: true });
    assert.equal((await refusal(client.instances.download(inst.id, '/workspace/proj/keep.txt'))).status, 404);
    assert.equal(text(await client.instances.download(inst.id, '/workspace/proj/main.py')), files['main.py']);

    // remoteDir defaults to /workspace.
    const d2 = mkdtempSync(join(tmpdir(), 'faas-sync-'));
    try {
      writeFileSync(join(d2, 'top.txt'), 'top');
      const r2 = await client.instances.sync(inst.id, d2);
      assert.equal(r2.dest, '/workspace');
      assert.equal(text(await client.instances.download(inst.id, '/workspace/top.txt')), 'top');
    } finally {
      rmSync(d2, { recursive: true, force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sync leaves out node_modules, .git and __pycache__ by default (as the Python SDK); exclude [] sends all', { timeout: 120_000 }, async () => {
  assert.deepEqual([...DEFAULT_SYNC_EXCLUDE], ['node_modules', '.git', '__pycache__']);
  // The same list as the Python SDK's DEFAULT_SYNC_EXCLUDE.
  const py = readFileSync(join(repoRoot(), 'sdk/python/faas_sdk/client.py'), 'utf8');
  const m = /^DEFAULT_SYNC_EXCLUDE: Tuple\[str, \.\.\.\] = \(([^)]*)\)$/m.exec(py);
  assert.ok(m, 'DEFAULT_SYNC_EXCLUDE in the Python SDK');
  assert.deepEqual([...m[1]!.matchAll(/"([^"]*)"/g)].map((x) => x[1]), [...DEFAULT_SYNC_EXCLUDE]);
  const dir = mkdtempSync(join(tmpdir(), 'faas-sync-default-'));
  try {
    const kept: Record<string, string> = {
      'app.py': 'print("app")\n',
      'pkg/mod.py': 'Y = 2\n',
      'node_modules.txt': 'a name that only starts like one',
      'pkg/.gitignore': '*.pyc\n',
    };
    const left: Record<string, string> = {
      'node_modules/left/index.js': 'x',
      'pkg/node_modules/deep.js': 'x',
      '.git/HEAD': 'ref: refs/heads/main',
      'pkg/sub/.git': 'gitdir: ../../.git/modules/sub', // a submodule's .git file
      '__pycache__/app.cpython-311.pyc': 'x',
      'pkg/__pycache__/mod.cpython-311.pyc': 'x',
    };
    for (const [p, c] of Object.entries({ ...kept, ...left })) {
      mkdirSync(join(dir, p, '..'), { recursive: true });
      writeFileSync(join(dir, p), c);
    }
    const r = await client.instances.sync(inst.id, dir, '/workspace/defexcl');
    assert.equal(r.files, Object.keys(kept).length);
    for (const [p, c] of Object.entries(kept)) {
      assert.equal(text(await client.instances.download(inst.id, `/workspace/defexcl/${p}`)), c, p);
    }
    for (const p of Object.keys(left)) {
      const e = await refusal(client.instances.download(inst.id, `/workspace/defexcl/${p}`));
      assert.equal(e.status, 404, `${p} is left out by default: ${e.message}`);
    }
    // Not even the excluded directories are created.
    const found = await client.instances.exec(inst.id, {
      command: 'find . \\( -name node_modules -o -name .git -o -name __pycache__ \\) -print; test -d pkg/sub && echo sub',
      workingDir: '/workspace/defexcl',
    });
    assert.equal(found.stdout, 'sub\n', found.stderr);

    // An exclude list replaces the default; [] sends everything.
    const all = await client.instances.sync(inst.id, dir, '/workspace/defexcl-all', { exclude: [] });
    assert.equal(all.files, Object.keys(kept).length + Object.keys(left).length);
    for (const [p, c] of Object.entries(left)) {
      assert.equal(text(await client.instances.download(inst.id, `/workspace/defexcl-all/${p}`)), c, p);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pause: exec is refused with 409; resume: files and interpreter state are back', { timeout: 180_000 }, async () => {
  await client.instances.upload(inst.id, '/workspace/paused.txt', 'still here');
  await client.instances.exec(inst.id, { code: 'before_pause = "remembered"' });
  const p = await client.instances.pause(inst.id);
  assert.equal(p.state, 'paused');
  assert.equal((await client.instances.get(inst.id)).state, 'paused');

  const e = await refusal(client.instances.exec(inst.id, 'true'));
  assert.equal(e.status, 409);
  assert.equal(e.code, 'conflict');
  assert.ok(e.isConflict);
  assert.match(e.message, /paused/);

  const r = await client.instances.resume(inst.id);
  assert.equal(r.state, 'running');
  assert.equal(text(await client.instances.download(inst.id, '/workspace/paused.txt')), 'still here');
  const c = await client.instances.exec(inst.id, { code: 'print(before_pause)' });
  assert.equal(c.stdout, 'remembered\n', c.stderr);
});

describe('expose', () => {
  test('a web server started by exec, reached through the returned url', { timeout: 120_000 }, async () => {
    await client.instances.upload(inst.id, '/workspace/site/index.html', '<h1>served from the instance</h1>');
    const start = await client.instances.exec(inst.id, {
      command: 'nohup python3 -m http.server 8000 --bind 127.0.0.1 >/tmp/http.log 2>&1 &',
      workingDir: '/workspace/site',
    });
    assert.equal(start.exitCode, 0, start.stderr);

    const ex = await client.instances.expose(inst.id, 8000);
    assert.equal(ex.name, 'p8000');
    assert.equal(ex.port, 8000);
    assert.equal(ex.public, false);
    assert.equal(ex.url, `${server.endpoint}/p/${inst.id}/p8000/`);
    assert.equal(typeof ex.hostUrl, 'string');
    assert.ok((await client.instances.get(inst.id)).exposures.some((x) => x.name === 'p8000'));

    let status = 0;
    let body = '';
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(250)) {
      const resp = await fetch(ex.url, { headers: { Authorization: `Bearer ${server.adminKey}` } });
      status = resp.status;
      body = await resp.text();
      if (status === 200) break;
    }
    assert.equal(status, 200, body);
    assert.match(body, /served from the instance/);

    const anon = await fetch(ex.url);
    await anon.text();
    assert.equal(anon.status, 404, 'not public: without the key, as if nothing were there');

    const named = await client.instances.expose(inst.id, { name: 'web', port: 8000, public: true });
    assert.equal(named.public, true);
    const open = await fetch(named.url + 'index.html');
    assert.equal(open.status, 200);
    assert.match(await open.text(), /served from the instance/);

    await client.instances.unexpose(inst.id, 'web');
    const gone = await fetch(named.url);
    await gone.text();
    assert.equal(gone.status, 404);
    await client.instances.unexpose(inst.id, 'p8000');
  });

  test('a bad name: 400', async () => {
    const e = await refusal(client.instances.expose(inst.id, { name: 'Not_Valid!', port: 8000 }));
    assert.equal(e.status, 400);
  });
});

test('ssh: a fresh key pair and the gateway host key', { timeout: 120_000 }, async () => {
  const s = await create({ enableSsh: true });
  assert.equal(s.enableSsh, true);
  const info = await client.instances.ssh(s.id);
  assert.ok(info.privateKey.startsWith('-----BEGIN OPENSSH PRIVATE KEY-----'), info.privateKey.slice(0, 40));
  assert.match(info.knownHosts, /^\[[^\]]+\]:\d+ ssh-ed25519 \S+$/);
  assert.match(info.publicKey, /^ssh-ed25519 \S+ faas-/);
  assert.equal(info.user, s.id);
  assert.equal(info.instanceId, s.id);
  assert.equal(info.host, '127.0.0.1');
  assert.ok(info.port > 0);
  assert.equal(info.command, `ssh -i KEYFILE -p ${info.port} ${s.id}@127.0.0.1`);
  const again = await client.instances.sshInfo(s.id);
  assert.notEqual(again.privateKey, info.privateKey, 'a new key pair each call');

  // The credentials work with OpenSSH, the host key checked against knownHosts.
  const ssh = spawnSync('ssh', ['-V']);
  if (ssh.error === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'faas-ssh-'));
    try {
      writeFileSync(join(dir, 'key'), info.privateKey, { mode: 0o600 });
      writeFileSync(join(dir, 'known_hosts'), info.knownHosts + '\n');
      const login = spawnSync(
        'ssh',
        [
          '-i', join(dir, 'key'), '-p', String(info.port),
          '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=yes',
          '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`, '-o', 'ConnectTimeout=10',
          `${info.user}@${info.host}`, 'echo over ssh; pwd',
        ],
        { encoding: 'utf8', timeout: 30_000 },
      );
      assert.equal(login.status, 0, login.stderr);
      assert.equal(login.stdout, 'over ssh\n/workspace\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const e = await refusal(client.instances.ssh(inst.id));
  assert.equal(e.status, 409, 'created without enableSsh');
  await client.instances.delete(s.id);
});

test('dev servers: 422 with the server message when the image lacks the program', { timeout: 120_000 }, async () => {
  const e = await refusal(client.instances.vscode(inst.id));
  assert.equal(e.status, 422);
  assert.equal(e.code, 'unprocessable');
  assert.match(e.message, /code-server/);
  const v = await refusal(client.instances.vnc(inst.id));
  assert.equal(v.status, 422);
});

test('stop and start: processes end, files stay', { timeout: 180_000 }, async () => {
  const i = await create({ language: 'python', resources: { memoryMb: 256 } });
  assert.equal(i.resources.memoryMb, 256);
  await client.instances.upload(i.id, '/workspace/kept.txt', 'kept');
  const stopped = await client.instances.stop(i.id);
  assert.equal(stopped.state, 'stopped');
  assert.equal((await refusal(client.instances.exec(i.id, 'true'))).status, 409);
  const started = await client.instances.start(i.id);
  assert.equal(started.state, 'running');
  assert.equal(text(await client.instances.download(i.id, '/workspace/kept.txt')), 'kept');
  await client.instances.delete(i.id);
});

test("another account's key: 404, and not listed", async () => {
  const k = await client.keys.create({ name: 'sdk-ts-other-' + randomBytes(3).toString('hex') });
  const other = server.client({ apiKey: k.key! });
  const e = await refusal(other.instances.get(inst.id));
  assert.equal(e.status, 404);
  assert.equal(e.code, 'not_found');
  assert.equal((await refusal(other.instances.exec(inst.id, 'true'))).status, 404);
  assert.equal((await refusal(other.instances.download(inst.id, '/workspace/paused.txt'))).status, 404);
  assert.deepEqual(await other.instances.list(), []);
});

test('empty ids are refused before any request', async () => {
  assert.throws(() => client.instances.get(''), TypeError);
  await assert.rejects(client.instances.sync('', '.'), TypeError);
  assert.throws(() => client.instances.upload(inst.id, '', 'x'), TypeError);
});

test('delete: then get is 404', { timeout: 60_000 }, async () => {
  await client.instances.delete(inst.id);
  const e = await refusal(client.instances.get(inst.id));
  assert.equal(e.status, 404);
  assert.ok(e.isNotFound);
  assert.equal((await refusal(client.instances.delete(inst.id))).status, 404);
});
