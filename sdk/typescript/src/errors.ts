/**
 * FaaSError is the one error type the SDK throws for a failed call: the server
 * answered with a status outside 2xx, or no answer came at all.
 *
 * - `status` is the HTTP status (400, 401, 404, 501, 503, …), or `0` when there
 *   was no answer (connection refused, DNS failure, the SDK's own time limit).
 * - `code` is the server's machine-readable code (`invalid_request`,
 *   `unauthorized`, `not_found`, `not_available`, `busy`, …). When there was no
 *   answer it is `network_error` or `timeout`; when the answer was not the
 *   server's JSON error (a proxy's HTML page, say) it is `http_<status>`.
 * - `message` is the server's message meant for the caller, unchanged.
 *
 * A program that fails, times out or is killed is NOT a FaaSError: `execute`
 * resolves, and the result's `status` and `exitCode` say what happened.
 */
export class FaaSError extends Error {
  /** HTTP status of the answer; 0 when no answer was received. */
  readonly status: number;
  /** Machine-readable error code (see the class comment). */
  readonly code: string;
  /** The wait the server asked for in `Retry-After` (429/503), in milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** HTTP method and path of the request that failed, e.g. `POST /api/v1/execute`. */
  readonly request: string;
  /** The decoded JSON body of the error answer, when there was one. */
  readonly body: unknown;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    request: string;
    retryAfterMs?: number | undefined;
    body?: unknown;
    cause?: unknown;
  }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'FaaSError';
    this.status = init.status;
    this.code = init.code;
    this.request = init.request;
    this.retryAfterMs = init.retryAfterMs;
    this.body = init.body;
  }

  /** True for 404: the endpoint or the thing asked for does not exist. */
  get isNotFound(): boolean {
    return this.status === 404;
  }

  /** True for 409: the request conflicts with the state of things (merge conflict, broken snapshot, busy session). */
  get isConflict(): boolean {
    return this.status === 409;
  }

  /** True for 501: the server does not offer this (e.g. a planned mode) yet. */
  get isNotImplemented(): boolean {
    return this.status === 501;
  }

  /** True for 429 and 503, the answers the client retries on its own. */
  get isRetryable(): boolean {
    return this.status === 429 || this.status === 503;
  }

  /** e.g. `FaaSError: execution "x" not found (404 not_found, GET /api/v1/executions/x)`. */
  override toString(): string {
    const what = this.status > 0 ? `${this.status} ${this.code}` : this.code;
    return `${this.name}: ${this.message} (${what}, ${this.request})`;
  }
}

/**
 * The FaaSError of a `branches.merge` whose branches changed the same paths
 * differently (409, code `merge_conflict`, strategy `union`). `paths` lists
 * them; try another strategy or change the branches.
 */
export class MergeConflictError extends FaaSError {
  /** The conflicting paths, e.g. `['/workspace/a.txt']`. */
  readonly paths: string[];

  constructor(init: ConstructorParameters<typeof FaaSError>[0] & { paths: string[] }) {
    super(init);
    this.name = 'MergeConflictError';
    this.paths = init.paths;
  }
}
