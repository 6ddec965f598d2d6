// The HTTP transport: one request, JSON in and out, errors as FaaSError, and
// bounded retries of 429/503 answers that honour Retry-After.

import { camelize, snakeize } from './convert.js';
import { FaaSError, MergeConflictError } from './errors.js';
import type { RequestOptions } from './types.js';

/** SDK version sent in the User-Agent header. */
export const SDK_VERSION = '0.1.0';

const BASE_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 8_000;
const ERROR_SNIPPET = 200;

export interface TransportConfig {
  endpoint: string;
  apiKey: string | undefined;
  maxRetries: number;
  maxRetryWaitMs: number;
  timeoutMs: number | undefined;
  fetch: typeof fetch;
  userAgent: string;
  headers: Record<string, string>;
}

export interface CallOptions extends RequestOptions {
  /** JSON body; its keys are converted to snake_case unless `raw` is set. */
  body?: unknown;
  /** Send `body` as it is (no key conversion). */
  raw?: boolean;
  /** A raw request body (bytes or text) sent instead of JSON `body`. */
  data?: Uint8Array | string;
  /** Content-Type of `data` (default application/octet-stream). */
  contentType?: string;
  /** Query string parameters (undefined values are left out). */
  query?: Record<string, string | number | undefined>;
  /** Send the API key (default true). */
  auth?: boolean;
  /** Retry 429/503 answers (default true). */
  retry?: boolean;
}

/**
 * Parses a Retry-After header value: delay-seconds or an HTTP date. Returns
 * milliseconds, or undefined when the header is absent or unusable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value == null) return undefined;
  const v = value.trim();
  if (v === '') return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** Exponential back-off with jitter in [d/2, d) for retry number attempt+1. */
export function backoffMs(attempt: number): number {
  const d = Math.min(BASE_BACKOFF_MS * 2 ** Math.min(attempt, 16), MAX_BACKOFF_MS);
  return d / 2 + Math.random() * (d / 2);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class Transport {
  constructor(readonly config: TransportConfig) {}

  /**
   * Sends one call and returns the camelCased JSON answer (undefined for an
   * empty body, e.g. 204). Throws FaaSError for every non-2xx answer (after
   * the retries) and when no answer came.
   */
  async call<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
    const { data } = await this.send(method, path, opts);
    return camelize<T>(data);
  }

  /** Sends one call and returns the raw bytes of its 2xx answer. */
  async bytes(method: string, path: string, opts: CallOptions = {}): Promise<Uint8Array> {
    const resp = await this.open(method, path, opts, 'application/octet-stream, application/x-tar, */*');
    return new Uint8Array(await resp.arrayBuffer());
  }

  /**
   * Like call without the key conversion of the answer. Answers with a 2xx
   * status are returned; so is an error answer for which `accept(status,
   * body)` is true (used by health, whose 503 carries a report).
   */
  async send(
    method: string,
    path: string,
    opts: CallOptions,
    accept?: (status: number, body: unknown) => boolean,
  ): Promise<{ status: number; data: unknown }> {
    const what = `${method} ${path}`;
    const resp = await this.open(method, path, opts, 'application/json', accept);
    const text = await resp.text();
    if (resp.status >= 200 && resp.status <= 299) {
      return { status: resp.status, data: text === '' ? undefined : parseJSON(text, what) };
    }
    return { status: resp.status, data: toError(resp, text, what).body };
  }

  /**
   * Sends a request, retrying 429/503 answers, and returns the response with
   * its body unread: a 2xx answer, or an error answer `accept` takes (whose
   * body is then unread too). Every other answer becomes a thrown FaaSError.
   */
  async open(
    method: string,
    path: string,
    opts: CallOptions,
    accept: string,
    acceptError?: (status: number, body: unknown) => boolean,
  ): Promise<Response> {
    const url = new URL(this.config.endpoint + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = {
      Accept: accept,
      'User-Agent': this.config.userAgent,
      ...this.config.headers,
    };
    let body: string | Uint8Array | undefined;
    if (opts.data !== undefined) {
      body = opts.data;
      headers['Content-Type'] = opts.contentType ?? 'application/octet-stream';
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.raw ? opts.body : snakeize(opts.body));
      headers['Content-Type'] = 'application/json';
    }
    if (opts.auth !== false && this.config.apiKey) {
      headers['Authorization'] = `Bearer ${this.config.apiKey}`;
    }
    const what = `${method} ${url.pathname}`;
    const maxRetries = opts.retry === false ? 0 : this.config.maxRetries;
    const timeoutMs = opts.timeoutMs ?? this.config.timeoutMs;

    for (let attempt = 0; ; attempt++) {
      const resp = await this.fetchOnce(url, { method, headers, body }, what, opts.signal, timeoutMs);
      if (resp.status >= 200 && resp.status <= 299) return resp;
      const text = await resp.text();
      const err = toError(resp, text, what);
      if (acceptError?.(resp.status, err.body)) {
        return new Response(text, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
      }
      if (!err.isRetryable || attempt >= maxRetries) throw err;
      const wait = Math.min(err.retryAfterMs ?? backoffMs(attempt), this.config.maxRetryWaitMs);
      await sleep(wait, opts.signal);
    }
  }

  private async fetchOnce(
    url: URL,
    init: { method: string; headers: Record<string, string>; body: string | Uint8Array | undefined },
    what: string,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
  ): Promise<Response> {
    const timeout = timeoutMs !== undefined && timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined;
    const signals = [signal, timeout].filter((s): s is AbortSignal => s !== undefined);
    const combined = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    try {
      const reqInit: RequestInit = { method: init.method, headers: init.headers };
      if (init.body !== undefined) reqInit.body = init.body;
      if (combined) reqInit.signal = combined;
      return await this.config.fetch(url, reqInit);
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (timeout?.aborted) {
        throw new FaaSError({ status: 0, code: 'timeout', message: `no answer within ${timeoutMs} ms`, request: what, cause: e });
      }
      const cause = (e as { cause?: { message?: string; code?: string } })?.cause;
      if (cause?.code === 'UND_ERR_HEADERS_TIMEOUT') {
        // Node's fetch gives up when an answer takes more than 300 s to start.
        throw new FaaSError({
          status: 0,
          code: 'timeout',
          message: "no answer within Node's fetch limit of 300 s; pass a fetch with a longer headersTimeout for longer executions",
          request: what,
          cause: e,
        });
      }
      const detail = cause?.code ?? cause?.message ?? (e as Error)?.message ?? String(e);
      throw new FaaSError({
        status: 0,
        code: 'network_error',
        message: `cannot reach ${url.origin}: ${detail}`,
        request: what,
        cause: e,
      });
    }
  }
}

function parseJSON(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FaaSError({ status: 0, code: 'invalid_response', message: `the answer to ${what} is not JSON`, request: what, cause: e });
  }
}

/** Turns an error answer into a FaaSError, keeping the server's message and code. */
export function toError(resp: Response, text: string, what: string): FaaSError {
  const retryAfterMs = parseRetryAfter(resp.headers.get('Retry-After'));
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  let message = '';
  let code = '';
  if (body !== null && typeof body === 'object') {
    const b = body as { error?: unknown; code?: unknown; message?: unknown };
    if (typeof b.code === 'string') code = b.code;
    if (typeof b.error === 'string') message = b.error;
    else if (b.error !== null && typeof b.error === 'object') {
      const inner = b.error as { message?: unknown; code?: unknown };
      if (typeof inner.message === 'string') message = inner.message;
      if (!code && typeof inner.code === 'string') code = inner.code;
    } else if (typeof b.message === 'string') message = b.message;
  }
  if (message === '') {
    const snippet = text.split(/\s+/).join(' ').trim();
    const cut = snippet.length > ERROR_SNIPPET ? snippet.slice(0, ERROR_SNIPPET) + '...' : snippet;
    message = `${resp.status} ${resp.statusText}` + (cut ? `: ${cut}` : ' (empty body)');
  }
  if (code === '') code = `http_${resp.status}`;
  const init = { status: resp.status, code, message, request: what, retryAfterMs, body };
  if (code === 'merge_conflict') {
    const raw = (body as { paths?: unknown }).paths;
    const paths = Array.isArray(raw) ? raw.filter((p): p is string => typeof p === 'string') : [];
    return new MergeConflictError({ ...init, paths });
  }
  return new FaaSError(init);
}
