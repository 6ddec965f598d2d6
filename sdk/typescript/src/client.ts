import { camelize } from './convert.js';
import { FaaSError } from './errors.js';
import { SDK_VERSION, Transport } from './http.js';
import { ExecutionStream } from './stream.js';
import { packDirectory } from './tar.js';
import type {
  ApiKey,
  ArchiveResult,
  Branch,
  BranchRequest,
  CreateBranchRequest,
  CreateInstanceRequest,
  CreateKeyRequest,
  CreateSnapshotRequest,
  ExecuteRequest,
  ExecuteResult,
  Execution,
  ExposedPort,
  ExposeRequest,
  Health,
  Instance,
  InstanceExecRequest,
  MergeOptions,
  MergeResult,
  MergeStrategy,
  PoolsResult,
  PrewarmRequest,
  PrewarmResult,
  RequestOptions,
  RestoreOptions,
  Session,
  Snapshot,
  SshInfo,
  SyncOptions,
  SyncResult,
  UsageQuery,
  UsageReport,
  CurrentUsage,
  DevServer,
  UploadArchiveOptions,
  UploadOptions,
  UploadResult,
} from './types.js';

/** Options of `new FaaSClient(...)`. */
export interface ClientOptions {
  /** API key, sent as `Authorization: Bearer <key>`. Default: env FAAS_API_KEY. */
  apiKey?: string;
  /**
   * Server address such as `http://127.0.0.1:8080` (a trailing slash or a path
   * prefix is fine). Default: env FAAS_ENDPOINT, else http://127.0.0.1:8080.
   */
  endpoint?: string;
  /** How many times a 429/503 answer is retried (default 3; 0 disables retries). */
  maxRetries?: number;
  /** Longest wait before one retry, in ms, whatever Retry-After says (default 30000). */
  maxRetryWaitMs?: number;
  /** Time limit of each HTTP attempt in ms (default: none; see README on long executions). */
  timeoutMs?: number;
  /** The fetch implementation (default: the global fetch of Node ≥ 20). */
  fetch?: typeof fetch;
  /** Extra headers sent with every request. */
  headers?: Record<string, string>;
}

/**
 * What `instances.sync` leaves out unless `exclude` is given: these names at
 * any depth, files or directories (a directory with all it holds). The same
 * list as the Python SDK's.
 */
export const DEFAULT_SYNC_EXCLUDE: readonly string[] = Object.freeze(['node_modules', '.git', '__pycache__']);

/** `usage()` is callable and has `usage.current()`. */
export interface UsageApi {
  /** GET /api/v1/usage — the caller's account's usage over a range (default: this month so far). */
  (query?: UsageQuery, options?: RequestOptions): Promise<UsageReport>;
  /** GET /api/v1/usage/current — this billing period: usage, tier, bill, projection, prices. */
  current(options?: RequestOptions): Promise<CurrentUsage>;
}

/**
 * `client.instances`: persistent instances, sandboxes that keep running (files,
 * processes, a live interpreter) until paused, stopped or deleted. Every call
 * answers for the caller's account only: another account's instance is 404.
 */
export interface InstancesApi {
  /** POST /api/v1/instances: a new running instance (201). */
  create(req?: CreateInstanceRequest, options?: RequestOptions): Promise<Instance>;
  /** GET /api/v1/instances: the account's instances. */
  list(options?: RequestOptions): Promise<Instance[]>;
  /** GET /api/v1/instances/{id}. */
  get(instanceId: string, options?: RequestOptions): Promise<Instance>;
  /** DELETE /api/v1/instances/{id}: ends it and removes its files. */
  delete(instanceId: string, options?: RequestOptions): Promise<void>;
  /**
   * POST /api/v1/instances/{id}/exec: a command (a string is `{ command }`, run
   * by `sh -c`) or `code` run in the instance's live interpreter. Resolves with
   * the result (mode `persistent`) even when the program fails; rejects with a
   * FaaSError 409 `conflict` when the instance is paused or stopped.
   */
  exec(instanceId: string, req: string | InstanceExecRequest, options?: RequestOptions): Promise<ExecuteResult>;
  /** POST …/stop: its processes end; files under /workspace and /home/user are kept. */
  stop(instanceId: string, options?: RequestOptions): Promise<Instance>;
  /** POST …/start: boots a stopped instance again with its files. */
  start(instanceId: string, options?: RequestOptions): Promise<Instance>;
  /** POST …/pause: checkpoints it to disk and frees its memory. */
  pause(instanceId: string, options?: RequestOptions): Promise<Instance>;
  /** POST …/resume: a paused instance runs on where it was (files, processes, interpreter). */
  resume(instanceId: string, options?: RequestOptions): Promise<Instance>;
  /**
   * GET …/ssh: a new key pair authorized for the instance (created with
   * `enableSsh: true`, else 409; a server without SSH gateway answers 501).
   */
  ssh(instanceId: string, options?: RequestOptions): Promise<SshInfo>;
  /** Same as `ssh`. */
  sshInfo(instanceId: string, options?: RequestOptions): Promise<SshInfo>;
  /**
   * POST …/expose: serves a port of the instance through the server (a number
   * is `{ port }`). Unless `public`, the URLs need the owner's key.
   */
  expose(instanceId: string, req: number | ExposeRequest, options?: RequestOptions): Promise<ExposedPort>;
  /** DELETE …/expose/{name}. */
  unexpose(instanceId: string, name: string, options?: RequestOptions): Promise<void>;
  /**
   * PUT …/files?path=: writes one file (parents created). `remotePath` is
   * absolute, under /workspace, /home/user or /tmp. A string is sent as UTF-8.
   */
  upload(
    instanceId: string,
    remotePath: string,
    data: string | Uint8Array,
    opts?: UploadOptions,
    options?: RequestOptions,
  ): Promise<UploadResult>;
  /** GET …/files?path=: the content of one regular file. */
  download(instanceId: string, remotePath: string, options?: RequestOptions): Promise<Uint8Array>;
  /** GET …/files?path=&format=tar: a tar archive of a file or directory (names without the leading `/`). */
  downloadArchive(instanceId: string, remotePath: string, options?: RequestOptions): Promise<Uint8Array>;
  /** POST …/files/archive?dest=: unpacks a tar archive under `dest` (default /workspace). */
  uploadArchive(instanceId: string, tar: Uint8Array, opts?: UploadArchiveOptions, options?: RequestOptions): Promise<ArchiveResult>;
  /**
   * POST …/sync?dest=: packs the local directory `localDir` into a tar archive
   * (leaving out `exclude`, default `DEFAULT_SYNC_EXCLUDE`: `node_modules`,
   * `.git`, `__pycache__`; see `packDirectory`) and unpacks it under
   * `remoteDir`. With `delete: true` the remote directory is emptied first, so
   * it mirrors the local one.
   */
  sync(instanceId: string, localDir: string, remoteDir?: string, opts?: SyncOptions, options?: RequestOptions): Promise<SyncResult>;
  /** POST …/jupyter: starts Jupyter (if needed) and exposes it; 422 `unprocessable` when the image lacks it. */
  jupyter(instanceId: string, options?: RequestOptions): Promise<DevServer>;
  /** POST …/vscode: starts code-server; 422 when the image lacks it. */
  vscode(instanceId: string, options?: RequestOptions): Promise<DevServer>;
  /** POST …/vnc: starts a VNC desktop (Xvfb, x11vnc, websockify); 422 when the image lacks them. */
  vnc(instanceId: string, options?: RequestOptions): Promise<DevServer>;
}

/** id itself, after checking it is a non-empty string (else a TypeError). */
function need(name: string, id: string): string {
  if (typeof id !== 'string' || id === '') {
    throw new TypeError(`${name} must be a non-empty string`);
  }
  return id;
}

/** id as a URL path segment. */
function seg(name: string, id: string): string {
  return encodeURIComponent(need(name, id));
}

/**
 * A client of one faas server. Every method sends one documented API call and
 * resolves with its camelCased JSON answer, or rejects with a FaaSError.
 *
 * ```ts
 * const client = new FaaSClient({ apiKey: process.env.FAAS_API_KEY, endpoint: 'http://127.0.0.1:8080' });
 * const r = await client.execute({ code: 'print(1)', language: 'python' });
 * console.log(r.status, r.exitCode, r.stdout);
 * ```
 */
export class FaaSClient {
  /** The server address requests go to (no trailing slash). */
  readonly endpoint: string;
  private readonly http: Transport;

  /** Snapshots of live sessions (needs the `snapshots` scope). */
  readonly snapshots: {
    /** POST /api/v1/snapshots: snapshots the live session named by `executionId`, `sessionId` or `branchId`. */
    create(req: CreateSnapshotRequest, options?: RequestOptions): Promise<Snapshot>;
    /** GET /api/v1/snapshots: the account's snapshots, oldest first. */
    list(options?: RequestOptions): Promise<Snapshot[]>;
    /** GET /api/v1/snapshots/{id}. */
    get(snapshotId: string, options?: RequestOptions): Promise<Snapshot>;
    /** DELETE /api/v1/snapshots/{id}. */
    delete(snapshotId: string, options?: RequestOptions): Promise<void>;
    /** POST /api/v1/snapshots/{id}/restore: a new live session restored from the snapshot. */
    restore(snapshotId: string, opts?: RestoreOptions, options?: RequestOptions): Promise<Session>;
  };

  /** Branches: sessions restored from a snapshot, and merges of them (needs the `snapshots` scope). */
  readonly branches: {
    /** POST /api/v1/branches: `count` new branches of the snapshot, each running `code`. */
    create(snapshotId: string, req: BranchRequest, options?: RequestOptions): Promise<Branch[]>;
    /**
     * POST /api/v1/branches/merge: merges the file changes of two or more
     * branches into a new snapshot. A union merge whose branches changed the
     * same path differently rejects with a MergeConflictError (409, `paths`).
     */
    merge(branchIds: string[], opts?: MergeOptions | MergeStrategy, options?: RequestOptions): Promise<MergeResult>;
  };

  /** Live sessions and branches of the account (needs the `execute` scope). */
  readonly sessions: {
    /** GET /api/v1/sessions. */
    list(options?: RequestOptions): Promise<Session[]>;
    /** GET /api/v1/sessions/{id}. */
    get(sessionId: string, options?: RequestOptions): Promise<Session>;
    /** DELETE /api/v1/sessions/{id}: ends the session (its snapshots stay). */
    delete(sessionId: string, options?: RequestOptions): Promise<void>;
  };

  /** Persistent instances (needs the `instances` scope). See `InstancesApi`. */
  readonly instances: InstancesApi;

  /** API keys (needs a key with the `admin` scope). */
  readonly keys: {
    create(req?: CreateKeyRequest, options?: RequestOptions): Promise<ApiKey>;
    list(account?: string, options?: RequestOptions): Promise<ApiKey[]>;
    revoke(keyId: string, options?: RequestOptions): Promise<void>;
  };

  /** Usage and billing: `usage()` and `usage.current()`. */
  readonly usage: UsageApi;

  constructor(options: ClientOptions = {}) {
    let endpoint = (options.endpoint ?? process.env['FAAS_ENDPOINT'] ?? 'http://127.0.0.1:8080').trim();
    if (!endpoint.includes('://')) endpoint = 'http://' + endpoint;
    this.endpoint = endpoint.replace(/\/+$/, '');
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') {
      throw new TypeError('no fetch implementation: use Node.js 20 or later, or pass options.fetch');
    }
    this.http = new Transport({
      endpoint: this.endpoint,
      apiKey: options.apiKey ?? process.env['FAAS_API_KEY'],
      maxRetries: Math.max(0, options.maxRetries ?? 3),
      maxRetryWaitMs: Math.max(0, options.maxRetryWaitMs ?? 30_000),
      timeoutMs: options.timeoutMs,
      fetch: fetchImpl,
      userAgent: `faas-typescript/${SDK_VERSION}`,
      headers: options.headers ?? {},
    });
    const http = this.http;

    this.snapshots = {
      create: (req, o) => http.call<Snapshot>('POST', '/api/v1/snapshots', { ...o, body: req }),
      list: async (o) => listOf<Snapshot>(await http.call<unknown>('GET', '/api/v1/snapshots', { ...o }), 'snapshots'),
      get: (id, o) => http.call<Snapshot>('GET', `/api/v1/snapshots/${seg('snapshotId', id)}`, { ...o }),
      delete: async (id, o) => {
        await http.call<unknown>('DELETE', `/api/v1/snapshots/${seg('snapshotId', id)}`, { ...o });
      },
      restore: (id, opts, o) =>
        http.call<Session>('POST', `/api/v1/snapshots/${seg('snapshotId', id)}/restore`, { ...o, body: { ...opts } }),
    };

    this.branches = {
      create: async (snapshotId, req, o) => {
        const parentSnapshot = need('snapshotId', snapshotId);
        const answer = await http.call<{ branches?: Branch[]; parentSnapshot?: string }>('POST', '/api/v1/branches', {
          ...o,
          body: { ...req, parentSnapshot },
        });
        return (answer?.branches ?? []).map((b) => ({ ...b, parentSnapshot: answer.parentSnapshot ?? parentSnapshot }));
      },
      merge: (branchIds, opts, o) => {
        if (!Array.isArray(branchIds)) throw new TypeError('branchIds must be an array of branch ids');
        const body = typeof opts === 'string' ? { branchIds, strategy: opts } : { branchIds, ...opts };
        return http.call<MergeResult>('POST', '/api/v1/branches/merge', { ...o, body });
      },
    };

    this.sessions = {
      list: async (o) => listOf<Session>(await http.call<unknown>('GET', '/api/v1/sessions', { ...o }), 'sessions'),
      get: (id, o) => http.call<Session>('GET', `/api/v1/sessions/${seg('sessionId', id)}`, { ...o }),
      delete: async (id, o) => {
        await http.call<unknown>('DELETE', `/api/v1/sessions/${seg('sessionId', id)}`, { ...o });
      },
    };

    const inst = (id: string, rest = '') => `/api/v1/instances/${seg('instanceId', id)}${rest}`;
    const instancePost = (action: string) => (id: string, o?: RequestOptions) =>
      http.call<Instance>('POST', inst(id, '/' + action), { ...o, body: {} });
    const devServer = (name: string) => (id: string, o?: RequestOptions) =>
      http.call<DevServer>('POST', inst(id, '/' + name), { ...o, body: {} });
    const sshInfo = (id: string, o?: RequestOptions) => http.call<SshInfo>('GET', inst(id, '/ssh'), { ...o });
    this.instances = {
      create: (req, o) => http.call<Instance>('POST', '/api/v1/instances', { ...o, body: req ?? {} }),
      list: async (o) => listOf<Instance>(await http.call<unknown>('GET', '/api/v1/instances', { ...o }), 'instances'),
      get: (id, o) => http.call<Instance>('GET', inst(id), { ...o }),
      delete: async (id, o) => {
        await http.call<unknown>('DELETE', inst(id), { ...o });
      },
      exec: (id, req, o) => {
        const body: InstanceExecRequest = typeof req === 'string' ? { command: req } : req;
        if (body === null || typeof body !== 'object') throw new TypeError('exec needs a command string or a request object');
        return http.call<ExecuteResult>('POST', inst(id, '/exec'), { ...o, body });
      },
      stop: instancePost('stop'),
      start: instancePost('start'),
      pause: instancePost('pause'),
      resume: instancePost('resume'),
      ssh: sshInfo,
      sshInfo,
      expose: (id, req, o) => {
        const body: ExposeRequest = typeof req === 'number' ? { port: req } : req;
        if (body === null || typeof body !== 'object') throw new TypeError('expose needs a port or { port, name?, public? }');
        return http.call<ExposedPort>('POST', inst(id, '/expose'), { ...o, body });
      },
      unexpose: async (id, name, o) => {
        await http.call<unknown>('DELETE', inst(id, `/expose/${seg('name', name)}`), { ...o });
      },
      upload: (id, remotePath, data, opts, o) => {
        need('remotePath', remotePath);
        if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
          throw new TypeError('upload data must be a string or a Uint8Array (a Buffer is one)');
        }
        const mode = opts?.mode;
        return http.call<UploadResult>('PUT', inst(id, '/files'), {
          ...o,
          data: typeof data === 'string' ? new TextEncoder().encode(data) : data,
          query: { path: remotePath, mode: typeof mode === 'number' ? mode.toString(8) : mode },
        });
      },
      download: (id, remotePath, o) =>
        http.bytes('GET', inst(id, '/files'), { ...o, query: { path: need('remotePath', remotePath) } }),
      downloadArchive: (id, remotePath, o) =>
        http.bytes('GET', inst(id, '/files'), { ...o, query: { path: need('remotePath', remotePath), format: 'tar' } }),
      uploadArchive: (id, tar, opts, o) => {
        if (!(tar instanceof Uint8Array)) throw new TypeError('the archive must be a Uint8Array');
        return http.call<ArchiveResult>('POST', inst(id, '/files/archive'), {
          ...o,
          data: tar,
          contentType: 'application/x-tar',
          query: { dest: opts?.dest },
        });
      },
      sync: async (id, localDir, remoteDir = '/workspace', opts, o) => {
        const path = inst(id, '/sync');
        need('localDir', localDir);
        const { tar, stats } = await packDirectory(localDir, { exclude: [...(opts?.exclude ?? DEFAULT_SYNC_EXCLUDE)] });
        const answer = await http.call<ArchiveResult>('POST', path, {
          ...o,
          data: tar,
          contentType: 'application/x-tar',
          query: { dest: remoteDir, delete: opts?.delete ? 'true' : undefined },
        });
        return { ...answer, ...stats };
      },
      jupyter: devServer('jupyter'),
      vscode: devServer('vscode'),
      vnc: devServer('vnc'),
    };

    this.keys = {
      create: (req, o) => http.call<ApiKey>('POST', '/api/v1/keys', { ...o, body: req ?? {} }),
      list: async (account, o) =>
        listOf<ApiKey>(await http.call<unknown>('GET', '/api/v1/keys', { ...o, query: { account } }), 'keys'),
      revoke: async (id, o) => {
        await http.call<unknown>('DELETE', `/api/v1/keys/${seg('keyId', id)}`, { ...o });
      },
    };

    const when = (t: string | Date | undefined) => (t instanceof Date ? t.toISOString() : t);
    const usage = ((q?: UsageQuery, o?: RequestOptions) =>
      http.call<UsageReport>('GET', '/api/v1/usage', {
        ...o,
        query: { from: when(q?.from), to: when(q?.to), group_by: q?.groupBy },
      })) as UsageApi;
    usage.current = (o) => http.call<CurrentUsage>('GET', '/api/v1/usage/current', { ...o });
    this.usage = usage;
  }

  /**
   * Runs code (or a command) once and waits for it to finish: POST /api/v1/execute.
   * A program that fails or times out is not an error: look at `status` and
   * `exitCode`. Rejects with a FaaSError when the server refuses the request
   * (400 bad input, 401 bad key, 404 unknown session, snapshot or instance,
   * 409 paused instance, 503 busy after retries, …).
   *
   * With `sessionId` (mode `checkpointed`) the code runs in a live session whose
   * globals persist; `checkpointAfter` then snapshots it (`result.snapshotId`).
   * Mode `persistent` creates a new instance and runs the code in it
   * (`result.instanceId`; it runs until `instances.delete`); `instanceId` runs
   * the code in that existing instance.
   */
  execute(req: ExecuteRequest, options?: RequestOptions): Promise<ExecuteResult> {
    return this.http.call<ExecuteResult>('POST', '/api/v1/execute', { ...options, body: req });
  }

  /** The stored record of a past execution (no output): GET /api/v1/executions/{id}. */
  getExecution(executionId: string, options?: RequestOptions): Promise<Execution> {
    return this.http.call<Execution>('GET', `/api/v1/executions/${seg('executionId', executionId)}`, { ...options });
  }

  /** Readies `count` warm sandboxes in the caller's pool now: POST /api/v1/prewarm. */
  prewarm(req: PrewarmRequest = {}, options?: RequestOptions): Promise<PrewarmResult> {
    return this.http.call<PrewarmResult>('POST', '/api/v1/prewarm', { ...options, body: req });
  }

  /** The caller's warm pools and the server's stock: GET /api/v1/pools. */
  pools(options?: RequestOptions): Promise<PoolsResult> {
    return this.http.call<PoolsResult>('GET', '/api/v1/pools', { ...options });
  }

  /**
   * The server's health: GET /health (no API key, no retries). A degraded
   * server answers 503 with a report; that report is returned, not thrown.
   */
  async health(options?: RequestOptions): Promise<Health> {
    const isReport = (status: number, body: unknown) =>
      status === 503 && body !== null && typeof body === 'object' && typeof (body as Health).status === 'string';
    const { data } = await this.http.send('GET', '/health', { ...options, auth: false, retry: false }, isReport);
    return camelize<Health>(data);
  }

  /**
   * Follows an execution's output live: GET /api/v1/executions/{id}/events
   * (Server-Sent Events). Replays the output from the start, then follows it
   * until the exit; works while the execution runs and for 10 minutes after.
   *
   * ```ts
   * const stream = client.stream(executionId);
   * stream.on('output', (data) => process.stdout.write(data));
   * stream.on('error', (error) => console.error(error));
   * stream.on('complete', (exitCode) => console.log('Done:', exitCode));
   * ```
   */
  stream(executionId: string, options: { signal?: AbortSignal } = {}): ExecutionStream {
    seg('executionId', executionId);
    return new ExecutionStream(this.http, executionId, options.signal);
  }

  /**
   * Snapshots the live session a finished execution ran in: POST
   * /api/v1/snapshots {execution_id, name}. Only executions of mode
   * `checkpointed` or `branched` have one, while it lives; for others (e.g.
   * `ephemeral`) it rejects with a FaaSError 404 saying so.
   */
  createSnapshot(executionId: string, opts: { name?: string } = {}, options?: RequestOptions): Promise<Snapshot> {
    seg('executionId', executionId);
    return this.snapshots.create({ executionId, ...opts }, options);
  }

  /**
   * Restores a snapshot into a new branch and runs code there: POST
   * /api/v1/branches {parent_snapshot, code, …}. Resolves with the branch's
   * execution result and its `branchId`; a program that fails is not an error.
   */
  async createBranch(snapshotId: string, req: CreateBranchRequest, options?: RequestOptions): Promise<Branch> {
    const [branch] = await this.branches.create(snapshotId, { ...req, count: 1 }, options);
    if (!branch) {
      throw new FaaSError({
        status: 0,
        code: 'invalid_response',
        message: 'the answer to POST /api/v1/branches holds no branch',
        request: 'POST /api/v1/branches',
      });
    }
    return branch;
  }
}

/** Accepts a bare array or an object holding the array under `key`. */
function listOf<T>(answer: unknown, key: string): T[] {
  if (Array.isArray(answer)) return answer as T[];
  const inner = (answer as Record<string, unknown> | undefined)?.[key];
  return Array.isArray(inner) ? (inner as T[]) : [];
}
