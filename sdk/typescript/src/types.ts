// Request and result types. Field names are the camelCase forms of the wire's
// snake_case JSON names (`exit_code` → `exitCode`); see README.md.
//
// Fields a newer server adds are kept too (camelCased), though not typed here.

/** Languages the server runs `code` in. */
export type Language = 'python' | 'javascript' | 'typescript' | 'bash';

/**
 * Execution modes: `ephemeral`, `cached`, `checkpointed` (a live session),
 * `branched` (a session restored from a snapshot) and `persistent` (in an
 * instance). `execute` with `persistent` creates a new instance and runs the
 * code there (the result's `instanceId` names it; it runs until deleted); it is
 * also the mode of `instances.exec`.
 */
export type Mode = 'ephemeral' | 'cached' | 'checkpointed' | 'branched' | 'persistent';

/** How an execution ended. */
export type ExecutionStatus = 'succeeded' | 'failed' | 'timeout' | 'error';

/** Options every call accepts. */
export interface RequestOptions {
  /** Aborts the call (retries included); the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Time limit for each HTTP attempt in milliseconds (overrides the client's
   * `timeoutMs`); when it passes the call rejects with a FaaSError of code
   * `timeout`. Leave room for the execution's own `timeoutMs`.
   */
  timeoutMs?: number;
}

/** CPU and memory limits of an execution's sandbox. */
export interface Resources {
  /** CPUs, possibly fractional (0.5). */
  cpuCores?: number;
  /** Memory limit in MiB (64…8192). */
  memoryMb?: number;
}

/** Environment variables: an object, or `[name, value]` pairs. */
export type EnvVars = Record<string, string> | Array<[string, string]>;

/** Body of `execute` (POST /api/v1/execute). Give `code` (+ `language`) or `command`. */
export interface ExecuteRequest {
  /** Program source, run as `language`. */
  code?: string;
  /**
   * Defaults to `python` on the server; in a session (`sessionId`, a snapshot)
   * it may be left out: the session's language is used. Sessions run python,
   * javascript or typescript.
   */
  language?: Language;
  /** Instead of `code`: a shell command run by `sh -c`, or an argv array (not in sessions). */
  command?: string | string[];
  /**
   * Default: `branched` with `parentSnapshot`/`branchFrom`; `checkpointed` with
   * `sessionId`, `snapshotId` or `checkpointAfter`; else `ephemeral`.
   * `persistent` (without `instanceId`) creates a new instance with this
   * request's `image`, `language` and `resources`, runs the code or command in
   * it and answers with its id in `instanceId`; the instance keeps running (and
   * is billed) until deleted with `instances.delete`. Without `code` and
   * `command` the answer is the new `Instance` itself (HTTP 201), not an
   * execution result.
   */
  mode?: Mode;
  /** Text given to the program's standard input (otherwise it reads /dev/null; not in sessions). */
  stdin?: string;
  /** Environment variables for the program. */
  envVars?: EnvVars;
  /** Wall-clock limit in milliseconds (server default 30000, at most 900000). */
  timeoutMs?: number;
  /** CPU and memory limits. */
  resources?: Resources;
  /** Absolute working directory, created if missing (default /workspace). */
  workingDir?: string;
  /** Root filesystem image (`host` is the only image in this version). */
  image?: string;
  /**
   * The session to run in: a new one of that name, or one that lives (globals,
   * imports and files persist between its executions). With mode `branched`,
   * the branch to continue. Letters, digits, `-`, `_`, `.`; at most 128.
   */
  sessionId?: string;
  /** Snapshot the session after the code ran; the result's `snapshotId` (or `snapshotError`). */
  checkpointAfter?: boolean;
  /** Restore this snapshot into a new session, then run the code there. */
  snapshotId?: string;
  /** Restore this snapshot into a new branch, then run the code there (mode `branched`). */
  parentSnapshot?: string;
  /** Same as `parentSnapshot`. */
  branchFrom?: string;
  /**
   * Run in this existing instance (whatever `mode` says; the result's mode is
   * `persistent`), as `instances.exec` does: `code` runs in its live
   * interpreter, `command` by `sh -c`. `image`, `resources` and the session
   * fields are ignored. 404 for an unknown instance, 409 when it is paused or
   * stopped.
   */
  instanceId?: string;
}

/** Resources an execution consumed and their price. */
export interface ExecutionUsage {
  cpuMs: number;
  memoryPeakMb: number;
  costUsd: number;
  costMicroUsd: number;
}

/** Result of `execute`: the finished execution with its output. */
export interface ExecuteResult {
  /** Identifies the execution (see `getExecution`). */
  executionId: string;
  /** Same as `executionId` (kept for clients of the original SDKs). */
  requestId: string;
  status: ExecutionStatus;
  /** The program's exit status (137 when killed at the time or memory limit). */
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Same as `stdout` (original SDKs' name). */
  output: string;
  /** Same as `stderr` (original SDKs' name). */
  logs: string;
  /** Output beyond the server's limit (1 MiB per stream by default) was dropped. */
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  timedOut: boolean;
  oomKilled: boolean;
  /** What went wrong when `status` is `error` or `timeout`; absent otherwise. */
  error?: string;
  durationMs: number;
  mode: Mode;
  language?: Language;
  /** True when a cached execution reused a warm sandbox. */
  warm: boolean;
  /** The session the execution ran in (modes `checkpointed` and `branched`). */
  sessionId?: string;
  /** Same as `sessionId`, for a branch only. */
  branchId?: string;
  /** The snapshot `checkpointAfter` made. */
  snapshotId?: string;
  /** Why `checkpointAfter` made no snapshot (the code's result still stands). */
  snapshotError?: string;
  /**
   * The instance an `execute` of mode `persistent` ran in: the one it created,
   * or the request's `instanceId`. Absent for other modes (and in the results
   * of `instances.exec`, whose instance the caller named).
   */
  instanceId?: string;
  usage: ExecutionUsage;
}

/** The stored record of an execution (`getExecution`); it holds no output. */
export interface Execution {
  executionId: string;
  status: ExecutionStatus | string;
  /** `null` while the execution runs (`status` `"running"`). */
  exitCode: number | null;
  mode: Mode;
  language?: Language;
  image: string;
  error?: string;
  durationMs: number;
  /** RFC 3339 timestamp. */
  createdAt: string;
  /** RFC 3339 timestamp; absent while the execution runs. */
  finishedAt?: string;
  usage: ExecutionUsage;
}

/** Answer of `health` (GET /health). */
export interface Health {
  /** `ok`, or `degraded` when the sandbox runtime or the database is not usable. */
  status: 'ok' | 'degraded' | string;
  version: string;
  runtime: { name: string; version?: string; ready: boolean; error?: string };
  database: { driver: string; ok: boolean; error?: string };
  sandboxes: HealthSandboxes;
}

/** Sandbox counts of a health report. */
export interface HealthSandboxes {
  /** Sandboxes running now (of every kind). */
  live: number;
  /** Pre-booted, never-used sandboxes in the stock. */
  stocked: number;
  /** Held by live sessions and branches. */
  sessions: number;
  /** Restored from snapshots ahead of demand (for branches). */
  branchStocked: number;
  /** Held by running instances. */
  instances: number;
}

/** One warm pool of the caller's account: one per image and memory limit. */
export interface Pool {
  /** The pool's account; only in the answer of `prewarm`. */
  account?: string;
  image: string;
  /** The memory limit (MiB) of its sandboxes; cached executions asking for the same take them. */
  memoryMb: number;
  idle: number;
  inUse: number;
  hits: number;
  misses: number;
  boots: number;
  retired: number;
  reaped: number;
  evicted: number;
  /** What the idle sandboxes hold together, in MiB. */
  idleMemoryMb: number;
}

/** Answer of `pools` (GET /api/v1/pools). */
export interface PoolsResult {
  pools: Pool[];
  /**
   * The server's stock of pre-booted, never-used sandboxes: totals over every
   * image (`languages` are the host image's), then per image in `targets`.
   */
  stock: { target: number; ready: number; booted: number; languages: string[]; targets: StockTarget[] };
}

/** The stock of one image, with the interpreters of `languages` started ahead. */
export interface StockTarget {
  image: string;
  languages: string[];
  target: number;
  ready: number;
  booted: number;
  /** Languages beyond `languages` whose interpreters new stocked sandboxes start because requests asked for them lately. */
  demanded?: string[];
  /** Ready sandboxes running each interpreter (`python`, `node`, `bash`). */
  warm?: Record<string, number>;
  /** Why the image cannot be stocked now (not pulled, say). */
  error?: string;
}

/** Body of `prewarm` (POST /api/v1/prewarm). */
export interface PrewarmRequest {
  /** Default `python`. */
  language?: Language;
  /** How many warm sandboxes to add, 1…32 (default 1). */
  count?: number;
  /** Default `host`. */
  image?: string;
  /**
   * Memory limit (MiB) of the sandboxes (default: the server's); cached
   * executions with the same `resources.memoryMb` take them.
   */
  memoryMb?: number;
}

/** Answer of `prewarm`. */
export interface PrewarmResult {
  image: string;
  language: string;
  /** How many warm sandboxes were added. */
  added: number;
  /** The pool's figures after the call. */
  pool: Pool;
}

/** Scopes an API key can hold. */
export type Scope = 'admin' | 'execute' | 'instances' | 'snapshots';

/** Body of `keys.create` (admin). */
export interface CreateKeyRequest {
  name?: string;
  /** Default: execute, instances, snapshots. */
  scopes?: Scope[];
  /** The account the key acts for; default: a new account of its own. */
  account?: string;
  /** The key's own request rate limit per minute (default: the server's). */
  ratePerMinute?: number;
  /** The key's own burst size (default: the server's). */
  burst?: number;
}

/** An API key; `key` (the secret) is only in the answer of `keys.create`. */
export interface ApiKey {
  id: string;
  key?: string;
  name: string;
  account: string;
  /** The first characters of the key, to recognise it. */
  prefix: string;
  scopes: Scope[];
  /** The key's own rate limit, when it has one. */
  ratePerMinute?: number;
  burst?: number;
  createdAt: string;
  revokedAt?: string;
}

/** Query of `usage()`. */
export interface UsageQuery {
  /** Start of the range: RFC 3339, a date (YYYY-MM-DD), or a Date (default: this month's start). */
  from?: string | Date;
  /** End of the range (default: now). */
  to?: string | Date;
  /** One row per day or per mode (default: one row). */
  groupBy?: 'day' | 'mode';
}

/** Usage summed over a group of executions. */
export interface UsageRow {
  /** The day (YYYY-MM-DD) or mode of the row; absent without grouping. */
  group?: string;
  executions: number;
  cpuSeconds: number;
  gbSeconds: number;
  costMicroUsd: number;
  costUsd: number;
}

/** Answer of `usage()` (GET /api/v1/usage). */
export interface UsageReport {
  account: string;
  /** RFC 3339. */
  from: string;
  to: string;
  groupBy?: string;
  rows: UsageRow[];
  /** Snapshot storage over the range (not in `rows`; `total` includes its cost). */
  snapshots: SnapshotUsage;
  total: UsageRow;
}

/** Snapshot storage over a range: each snapshot's size for as long as it existed. */
export interface SnapshotUsage {
  gbMonths: number;
  costMicroUsd: number;
  costUsd: number;
}

/** The server's price list. */
export interface PriceList {
  cpuPerVcpuSecondUsd: number;
  memoryPerGbSecondUsd: number;
  gpuPerHourUsd: number;
  snapshotPerGbMonthUsd: number;
  egressPerGbUsd: number;
  /** Mode name → multiplier (ephemeral 1.0, cached 0.8, …). */
  modeMultipliers: Record<string, number>;
}

/** Answer of `usage.current()` (GET /api/v1/usage/current): this billing period. */
export interface CurrentUsage {
  account: string;
  periodStart: string;
  periodEnd: string;
  /** Executions and instances; its cost includes the snapshots'. */
  usage: UsageRow;
  /** Snapshot storage this period. */
  snapshots: SnapshotUsage;
  /** Volume tier: starter, growth, scale or enterprise. */
  tier: string;
  discountPercent: number;
  /** Spend so far, discount applied. */
  billMicroUsd: number;
  billUsd: number;
  /** The bill at this rate for the whole period, discount applied. */
  projectedMicroUsd: number;
  projectedUsd: number;
  projectedTier: string;
  prices: PriceList;
}

// ---------------------------------------------------------------------------
// Sessions, snapshots, branches.

/**
 * Body of `snapshots.create`: the live session to snapshot, named by one of
 * `executionId` (an execution that ran in it), `sessionId` or `branchId`; or
 * a running instance (`instanceId`).
 */
export interface CreateSnapshotRequest {
  /** An execution of mode `checkpointed` or `branched` whose session still lives. */
  executionId?: string;
  /** A running instance (it keeps running); start new instances from the snapshot with `instances.create({ snapshotId })`. */
  instanceId?: string;
  sessionId?: string;
  /** Same as `sessionId` (a branch is a session). */
  branchId?: string;
  /** At most 200 bytes. */
  name?: string;
}

/** A snapshot: a live session's memory, processes and files, frozen. */
export interface Snapshot {
  id: string;
  /** Same as `id`. */
  snapshotId: string;
  name?: string;
  /** The snapshot the checkpointed session was restored from (the snapshot tree). */
  parentId?: string;
  /** Snapshots made from sessions restored from this one. */
  children: string[];
  /** The session it was taken of. */
  sessionId?: string;
  /** The execution named when it was made. */
  executionId?: string;
  image: string;
  language: Language | string;
  memoryMb: number;
  cpuCores: number;
  sizeBytes: number;
  sha256: string;
  /** `broken`: its image is corrupt or truncated; restoring it answers 409 `snapshot_broken`. */
  status: 'ready' | 'broken' | string;
  /** What is wrong with a broken snapshot. */
  error?: string;
  /** RFC 3339. */
  createdAt: string;
}

/** A live session (or branch): one sandbox whose interpreter keeps its state. */
export interface Session {
  id: string;
  /** Same as `id`. */
  sessionId: string;
  /** Same as `id`, for a branch only. */
  branchId?: string;
  language: Language | string;
  /** The snapshot it was restored from. */
  parentSnapshot?: string;
  /** How many executions ran in it. */
  executions: number;
  memoryMb: number;
  cpuCores: number;
  /** Memory the session's sandbox holds now, in MiB (measured at each call). */
  memoryUsedMb: number;
  /** RFC 3339. */
  createdAt: string;
  lastUsedAt: string;
}

/** Options of `snapshots.restore`. */
export interface RestoreOptions {
  /** The new session's id (default: a generated `ses_…`). */
  sessionId?: string;
}

/**
 * Body of `createBranch`: execute fields besides the snapshot to branch from.
 * `sessionId` names the new branch (default: generated).
 */
export type CreateBranchRequest = Omit<
  ExecuteRequest,
  'mode' | 'command' | 'stdin' | 'snapshotId' | 'parentSnapshot' | 'branchFrom' | 'instanceId' | 'code'
> & { code: string };

/** Body of `branches.create`: `createBranch`'s plus how many branches. */
export interface BranchRequest extends CreateBranchRequest {
  /** How many branches to start at once, 1…32 (default 1); each runs `code`. */
  count?: number;
}

/** One branch: the result of its first execution, plus the branch's ids. */
export interface Branch extends ExecuteResult {
  /** The branch (a session: continue it with `execute({ mode: 'branched', sessionId: branchId, … })`). */
  branchId: string;
  sessionId: string;
  /** The snapshot it was restored from. */
  parentSnapshot: string;
}

/** How `branches.merge` combines the branches' filesystem changes. */
export type MergeStrategy = 'union' | 'intersection' | 'latest';

/** Options of `branches.merge`. */
export interface MergeOptions {
  /** `union`, `intersection` or `latest` (default: the server's). */
  strategy?: MergeStrategy;
  /** The merged snapshot's name. */
  name?: string;
}

/** One file change a merge took from a branch. */
export interface MergeChange {
  /** Absolute path in the sandbox (under /workspace or /home/user). */
  path: string;
  action: 'write' | 'delete' | string;
  /** The branch the change came from. */
  branchId: string;
}

/** Answer of `branches.merge`. */
export interface MergeResult {
  /**
   * The merged snapshot: the memory of the branches' common parent snapshot
   * plus the merged file changes.
   */
  snapshot: Snapshot;
  strategy: MergeStrategy | string;
  /** The branches' common parent snapshot. */
  baseSnapshot: string;
  changes: MergeChange[];
}

// ---------------------------------------------------------------------------
// Persistent instances.

/** What an instance is doing. */
export type InstanceState = 'running' | 'paused' | 'stopped';

/** CPU, memory and disk of an instance. */
export interface InstanceResources {
  /** CPUs, possibly fractional (0.5). */
  cpuCores: number;
  /** Memory limit in MiB. */
  memoryMb: number;
  /** Disk limit of its writable files in MiB. */
  diskMb: number;
}

/** A port of an instance served through the server (`instances.expose`, the dev servers). */
export interface ExposedPort {
  /** 1–32 lowercase letters and digits; part of the URLs. */
  name: string;
  /** The port inside the instance (its loopback interface). */
  port: number;
  /** Reachable without a key; otherwise the owner's key is needed (header, or `?api_key=`). */
  public: boolean;
  /** By path: `http://server/p/{id}/{name}/`. */
  url: string;
  /** By host name: `http://{name}-{id}.{domain}:port/` (empty when the server has no expose domain). */
  hostUrl: string;
}

/** A persistent instance: a sandbox that keeps running between executions. */
export interface Instance {
  /** `i-0123456789abcdef`. */
  id: string;
  /** Same as `id`. */
  instanceId: string;
  name?: string;
  image: string;
  language: Language | string;
  state: InstanceState;
  /** Same as `state`. */
  status: InstanceState;
  /** Why it is not running when that was not asked for (e.g. a failed restart). */
  error?: string;
  resources: InstanceResources;
  enableSsh: boolean;
  /** It is paused after this many idle seconds (absent: never). */
  idleTtlSeconds?: number;
  exposures: ExposedPort[];
  /** RFC 3339. */
  createdAt: string;
  updatedAt: string;
}

/** Body of `instances.create`. */
export interface CreateInstanceRequest {
  /** A name of your choice (not unique, not the id). */
  name?: string;
  /** Root filesystem image (default `host`). */
  image?: string;
  /** The language of `code` execs: its interpreter lives as long as the instance (default python). */
  language?: Language;
  /** Start from a snapshot (memory, processes and files), e.g. one of another instance. */
  snapshotId?: string;
  /** Default: the server's. */
  resources?: Partial<InstanceResources>;
  /** Allow SSH (`instances.ssh`). Default false. */
  enableSsh?: boolean;
  /** Outbound network access (the server answers 501 to `true` today). */
  network?: boolean;
  /** Pause the instance after this many seconds without use. */
  idleTtlSeconds?: number;
}

/**
 * Body of `instances.exec`: a `command` (run by `sh -c`; processes it starts in
 * the background keep running), or `code` run in the instance's live
 * interpreter (its globals persist between execs).
 */
export interface InstanceExecRequest {
  command?: string | string[];
  code?: string;
  /** Default: the instance's language. */
  language?: Language;
  /** Text given to the program's standard input. */
  stdin?: string;
  envVars?: EnvVars;
  /** Wall-clock limit in milliseconds (server default 30000). */
  timeoutMs?: number;
  /** Absolute working directory (default /workspace). */
  workingDir?: string;
}

/** Body of `instances.expose`. */
export interface ExposeRequest {
  /** Port inside the instance. */
  port: number;
  /** 1–32 lowercase letters and digits (default `p` + port). */
  name?: string;
  /** Reachable by anyone with the URL (default false: the owner's key is needed). */
  public?: boolean;
}

/** Answer of `instances.ssh`: a new key pair authorized for the instance (shown once). */
export interface SshInfo {
  instanceId: string;
  /** Where the server's SSH gateway listens. */
  host: string;
  port: number;
  /** The user to log in as (= the instance id). */
  user: string;
  /** OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----…`); kept nowhere by the server. */
  privateKey: string;
  /** The authorized public key (`ssh-ed25519 AAAA… faas-<id>`). */
  publicKey: string;
  /** A known_hosts line for the gateway: `[host]:port ssh-ed25519 AAAA…`. */
  knownHosts: string;
  /** e.g. `ssh -i KEYFILE -p 2222 i-…@host`. */
  command: string;
}

/** Options of `instances.upload`. */
export interface UploadOptions {
  /** Permission bits: a number (`0o755`) or octal digits (`'755'`). Default 0o644. */
  mode?: number | string;
}

/** Answer of `instances.upload`. */
export interface UploadResult {
  /** The absolute path written. */
  path: string;
  size: number;
  entries: number;
}

/** Options of `instances.uploadArchive`. */
export interface UploadArchiveOptions {
  /** Absolute directory the archive is unpacked under (default /workspace). */
  dest?: string;
}

/** Answer of `instances.uploadArchive` and `instances.sync`. */
export interface ArchiveResult {
  /** The directory unpacked into. */
  dest: string;
  /** How many entries (files, directories, links) were written. */
  entries: number;
}

/** Options of `instances.sync`. */
export interface SyncOptions {
  /**
   * What to leave out: `node_modules`, `.git`, `*.log` (a name at any depth),
   * `build/cache` (a path from the top), `dist/` (directories only). See
   * `PackOptions.exclude`. Default `DEFAULT_SYNC_EXCLUDE`: `node_modules`,
   * `.git` and `__pycache__` at any depth (as the Python SDK); a list given
   * replaces it (`[]` sends everything).
   */
  exclude?: string[];
  /** Empty the remote directory first, so that it mirrors the local one. */
  delete?: boolean;
}

/** Answer of `instances.sync`. */
export interface SyncResult extends ArchiveResult {
  /** What the SDK packed. */
  files: number;
  directories: number;
  symlinks: number;
  /** Bytes of file content sent. */
  bytes: number;
}

/** Answer of `instances.jupyter`, `vscode` and `vnc`: the dev server's exposure (owner's key needed). */
export type DevServer = ExposedPort;
