// Live output of an execution over Server-Sent Events
// (GET /api/v1/executions/{id}/events): plain HTTP through fetch, so it needs
// no WebSocket and no dependency.

import { EventEmitter } from 'node:events';

import { camelize } from './convert.js';
import { FaaSError } from './errors.js';
import type { Transport } from './http.js';
import type { ExecuteResult } from './types.js';

/** Which stream a piece of output was written to. */
export type OutputStream = 'stdout' | 'stderr';

/** A frame of the stream, camelCased (see README "Streaming"). */
export interface StreamFrame {
  type: 'started' | 'stdout' | 'stderr' | 'exit' | 'error' | 'heartbeat' | string;
  data?: string;
  executionId?: string;
  /** Exit code (exit frames). */
  code?: number;
  /** The full execute result (exit frames). */
  result?: ExecuteResult;
  /** Message and code (error frames). */
  error?: string;
  errorCode?: string;
}

/** Events of an ExecutionStream, for typed `on` calls. */
export interface ExecutionStreamEvents {
  /** The stream is open; the server named the execution. */
  started: [executionId: string];
  /** Output as the program writes it (stdout and stderr alike). */
  output: [data: string, stream: OutputStream];
  stdout: [data: string];
  stderr: [data: string];
  /** The program ended; the last event. */
  complete: [exitCode: number, result: ExecuteResult];
  /** The stream failed (FaaSError); the last event. */
  error: [error: FaaSError];
  /** Sent by the server every 15 s while the program is silent. */
  heartbeat: [];
}

/**
 * The live output of one execution: an EventEmitter with `output`, `error` and
 * `complete` events (plus `started`, `stdout`, `stderr`, `heartbeat`), and a
 * `done` promise with the final result.
 *
 * It replays the execution's output from the start, then follows it live until
 * it exits: attaching works while the execution runs and for 10 minutes after.
 * Exactly one of `complete` and `error` comes last. An `error` event is only
 * emitted when someone listens for it; `done` rejects either way (and never
 * counts as an unhandled rejection).
 */
export class ExecutionStream extends EventEmitter {
  /** The execution followed. */
  readonly executionId: string;
  /** Resolves with the execute result at the exit; rejects with a FaaSError. */
  readonly done: Promise<ExecuteResult>;
  private readonly controller = new AbortController();
  private finished = false;

  constructor(http: Transport, executionId: string, signal?: AbortSignal) {
    super();
    this.executionId = executionId;
    if (signal) {
      if (signal.aborted) this.controller.abort(signal.reason);
      else signal.addEventListener('abort', () => this.controller.abort(signal.reason), { once: true });
    }
    this.done = this.run(http);
    this.done.catch(() => {});
  }

  /** Stops following (the execution itself goes on); `done` rejects. */
  close(): void {
    this.controller.abort(new FaaSError({ status: 0, code: 'closed', message: 'stream closed by the client', request: this.what() }));
  }

  override on<K extends keyof ExecutionStreamEvents>(event: K, listener: (...args: ExecutionStreamEvents[K]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  override once<K extends keyof ExecutionStreamEvents>(event: K, listener: (...args: ExecutionStreamEvents[K]) => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.once(event, listener);
  }

  private what(): string {
    return `GET /api/v1/executions/${this.executionId}/events`;
  }

  private async run(http: Transport): Promise<ExecuteResult> {
    // Let the caller attach listeners before anything is emitted.
    await new Promise((r) => setImmediate(r));
    try {
      const path = `/api/v1/executions/${encodeURIComponent(this.executionId)}/events`;
      // No per-attempt time limit: the stream lasts as long as the program.
      const resp = await http.open('GET', path, { signal: this.controller.signal, timeoutMs: 0 }, 'text/event-stream');
      if (!resp.body) throw new FaaSError({ status: resp.status, code: 'invalid_response', message: 'empty event stream', request: this.what() });
      for await (const frame of readEvents(resp.body, this.controller.signal)) {
        const result = this.dispatch(frame);
        if (result) {
          this.finished = true;
          this.controller.abort(); // the server ends the stream after exit; do not wait for it
          return result;
        }
      }
      throw new FaaSError({ status: 0, code: 'stream_closed', message: 'the event stream ended before the execution exited', request: this.what() });
    } catch (e) {
      const err = this.controller.signal.aborted ? this.toFaaSError(undefined) : this.toFaaSError(e);
      if (this.listenerCount('error') > 0) this.emit('error', err);
      throw err;
    }
  }

  private toFaaSError(e: unknown): FaaSError {
    if (this.controller.signal.aborted) {
      const reason: unknown = this.controller.signal.reason;
      if (reason instanceof FaaSError) return reason;
      const message = reason instanceof Error ? reason.message : String(reason ?? 'aborted');
      return new FaaSError({ status: 0, code: 'aborted', message, request: this.what(), cause: reason });
    }
    if (e instanceof FaaSError) return e;
    return new FaaSError({ status: 0, code: 'network_error', message: `the event stream failed: ${(e as Error)?.message ?? e}`, request: this.what(), cause: e });
  }

  /** Emits the events of one frame; returns the result at the exit. */
  private dispatch(frame: StreamFrame): ExecuteResult | undefined {
    if (this.finished) return undefined;
    switch (frame.type) {
      case 'started':
        this.emit('started', frame.executionId ?? this.executionId);
        return undefined;
      case 'stdout':
      case 'stderr':
        this.emit('output', frame.data ?? '', frame.type);
        this.emit(frame.type, frame.data ?? '');
        return undefined;
      case 'heartbeat':
        this.emit('heartbeat');
        return undefined;
      case 'exit': {
        const result = frame.result ?? ({ executionId: this.executionId, exitCode: frame.code ?? -1 } as ExecuteResult);
        this.emit('complete', frame.code ?? result.exitCode, result);
        return result;
      }
      case 'error':
        throw new FaaSError({
          status: 0,
          code: frame.errorCode ?? 'stream_error',
          message: frame.error ?? 'the server reported an error on the stream',
          request: this.what(),
          body: frame,
        });
      default:
        return undefined; // frame types added later are ignored
    }
  }
}

/** Parses a text/event-stream body into frames (the JSON of each `data`). */
async function* readEvents(body: ReadableStream<Uint8Array>, signal: AbortSignal): AsyncGenerator<StreamFrame> {
  const decoder = new TextDecoder();
  let buf = '';
  let data: string[] = [];
  let event = '';
  const reader = body.getReader();
  const onAbort = () => void reader.cancel().catch(() => {});
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (line === '') {
          if (data.length > 0) {
            const frame = camelize<StreamFrame>(JSON.parse(data.join('\n')));
            if (!frame.type && event) frame.type = event;
            yield frame;
          }
          data = [];
          event = '';
        } else if (line.startsWith(':')) {
          // comment
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data') data.push(value);
          else if (field === 'event') event = value;
        }
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    try {
      reader.releaseLock();
    } catch {
      // a read still pending after a cancel
    }
  }
}
