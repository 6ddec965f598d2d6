// Key conversion between the wire's snake_case JSON and the SDK's camelCase
// objects. Only keys are converted, never values; the values of keys that hold
// user-chosen names (environment variables, labels, metadata) are copied as
// they are, so `{"env_vars": {"MY_VAR": "1"}}` keeps `MY_VAR`.

/** Keys whose values are maps keyed by user-chosen names: copied verbatim. */
const VERBATIM = new Set(['env', 'env_vars', 'envVars', 'labels', 'metadata', 'annotations', 'mode_multipliers']);

/** `execution_id` → `executionId`, `memory_peak_mb` → `memoryPeakMb`. */
export function toCamel(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** `executionId` → `execution_id`, `memoryMb` → `memory_mb`. */
export function toSnake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
}

function convert(value: unknown, rename: (k: string) => string): unknown {
  if (Array.isArray(value)) {
    return value.map((v) => convert(v, rename));
  }
  if (value === null || typeof value !== 'object' || value instanceof Date) {
    return value;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[rename(k)] = VERBATIM.has(k) ? v : convert(v, rename);
  }
  return out;
}

/** Deep-converts the keys of a decoded JSON answer to camelCase. */
export function camelize<T>(value: unknown): T {
  return convert(value, toCamel) as T;
}

/** Deep-converts the keys of a request object to the wire's snake_case. */
export function snakeize(value: unknown): unknown {
  return convert(value, toSnake);
}
