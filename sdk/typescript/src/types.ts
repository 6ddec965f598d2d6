// Request and result types. Field names are the camelCase forms of the wire's
// snake_case JSON names (`exit_code` → `exitCode`); see README.md.
//
// Types marked "provisional" describe endpoints the server does not offer yet
// (instances). Their known fields follow DESIGN.md; every other field the
// server sends is kept (camelCased) through the index signature, so nothing is
// lost when the server's answer grows.

/** Languages the server runs `code` in. */
export type Language = 'python' | 'javascript' | 'typescript' | 'bash';

/**
 * Execution modes. `ephemeral`, `cached`, `checkpointed` (a live session) and
 * `branched` (a session restored from a snapshot) are available; `persistent`
 * is planned and answered with 501 today.
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
  /** Planned (persistent mode): the instance to run in. */
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
  usage: ExecutionUsage;
}

/** The stored record of an execution (`getExecution`); it holds no output. */
export interface Execution {
  executionId: string;
  status: ExecutionStatus | string;
  exitCode: number;
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
  sandboxes: { live: number; stocked: number };
}

/** One warm pool of the caller's account. */
export interface Pool {
  image: string;
  idle: number;
  inUse: number;
  hits: number;
  misses: number;
  boots: number;
  retired: number;
  reaped: number;
  evicted: number;
}

/** Answer of `pools` (GET /api/v1/pools). */
export interface PoolsResult {
  pools: Pool[];
  /** The server's stock of pre-booted, never-used sandboxes. */
  stock: { target: number; ready: number; booted: number; languages: string[] };
}

/** Body of `prewarm` (POST /api/v1/prewarm). */
export interface PrewarmRequest {
  /** Default `python`. */
  language?: Language;
  /** How many warm sandboxes to add, 1…32 (default 1). */
  count?: number;
  /** Default `host`. */
  image?: string;
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
  total: UsageRow;
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
  usage: UsageRow;
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
 * `executionId` (an execution that ran in it), `sessionId` or `branchId`.
 */
export interface CreateSnapshotRequest {
  /** An execution of mode `checkpointed` or `branched` whose session still lives. */
  executionId?: string;
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
// Provisional: endpoints the server does not offer yet (see DESIGN.md).

/** Provisional: a persistent instance. */
export interface Instance {
  id: string;
  status?: string;
  image?: string;
  language?: string;
  createdAt?: string;
  [field: string]: unknown;
}

/** Body of `instances.create`. */
export interface CreateInstanceRequest {
  image?: string;
  language?: Language;
  resources?: Resources;
  envVars?: EnvVars;
  name?: string;
  [field: string]: unknown;
}

/** Body of `instances.exec`. */
export interface InstanceExecRequest {
  code?: string;
  language?: Language;
  command?: string | string[];
  stdin?: string;
  envVars?: EnvVars;
  timeoutMs?: number;
  workingDir?: string;
}

/** Body of `instances.expose`. */
export interface ExposeRequest {
  /** Port inside the instance. */
  port: number;
  /** A name for the exposed service (part of its URL). */
  name?: string;
}

/** Provisional: an exposed port. */
export interface ExposedPort {
  url: string;
  name?: string;
  port?: number;
  [field: string]: unknown;
}

/** Provisional: SSH credentials of an instance. */
export interface SshInfo {
  host?: string;
  port?: number;
  username?: string;
  privateKey?: string;
  command?: string;
  [field: string]: unknown;
}

/** Options of `instances.sync` (an upload of a local directory). */
export interface SyncOptions {
  /** Local directory to upload. */
  localDir: string;
  /** Absolute directory in the instance to write into. */
  remoteDir: string;
  /**
   * Names to leave out: a file or directory is skipped when its name, or its
   * path relative to `localDir`, equals an entry (`node_modules`, `.git`,
   * `build/cache`). No glob patterns.
   */
  exclude?: string[];
}

/** Provisional: the answer of `instances.sync`. */
export interface SyncResult {
  /** Files the SDK sent. */
  filesSent: number;
  /** Bytes of file content the SDK sent. */
  bytesSent: number;
  /** The server's answer, camelCased. */
  response: Record<string, unknown>;
}
