/**
 * TypeScript/JavaScript SDK for the faas code execution platform.
 *
 * ```ts
 * import { FaaSClient, FaaSError } from '@faas/sdk';
 * const client = new FaaSClient({ apiKey: 'faas_…', endpoint: 'http://127.0.0.1:8080' });
 * const result = await client.execute({ code: 'print("hi")', language: 'python' });
 * ```
 *
 * @packageDocumentation
 */
export { DEFAULT_SYNC_EXCLUDE, FaaSClient } from './client.js';
export type { ClientOptions, InstancesApi, UsageApi } from './client.js';
export { FaaSError, MergeConflictError } from './errors.js';
export { ExecutionStream } from './stream.js';
export type { ExecutionStreamEvents, OutputStream, StreamFrame } from './stream.js';
export { parseRetryAfter, SDK_VERSION } from './http.js';
export { createTar, packDirectory } from './tar.js';
export type { PackOptions, PackStats, TarEntry } from './tar.js';
export type * from './types.js';
