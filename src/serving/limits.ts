// What one client may hold of the server: connections, the time it takes to send a request, idle
// time. Each is a flag of `vllmd serve`; the defaults keep a careless or hostile client from
// stalling others or exhausting file descriptors.
import { readFileSync } from "node:fs";
export interface ConnectionLimits {
  /**
   * msgpack: open connections, its listeners together. HTTP: requests in progress at once (Bun.serve has no
   * hook on idle sockets; those are closed by keepAliveTimeoutS, and Bun drops a connection whose
   * request head is not complete within ~10 s).
   */
  maxConnections: number;
  /** HTTP: an idle keep-alive connection closes after this long (Bun rounds it up to 4-second ticks; 0: never). */
  keepAliveTimeoutS: number;
  /** HTTP: a request body must arrive whole within this many seconds of its headers (408 otherwise; 0: no limit). */
  bodyTimeoutS: number;
  /** msgpack: a connection with no request in flight that sends no whole frame for this long is closed (0: never). */
  msgpackIdleTimeoutS: number;
}

/** The soft limit on open files (Bun raises it to the hard limit at start), or null where /proc does not say. */
export function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Descriptors kept for everything but client connections: model files, the engine, Workers, logs. */
const RESERVED_FDS = 256;

/**
 * The most connections each front end may hold within the open-file limit (HTTP and msgpack may
 * both be full at once): min(2048, (limit - 256) / 2), at least 16.
 */
export function maxConnectionsFor(fdLimit: number | null): number {
  if (fdLimit === null) return 2048;
  return Math.max(16, Math.min(2048, Math.floor((fdLimit - RESERVED_FDS) / 2)));
}

/** --keep-alive-timeout as Bun.serve takes it: whole seconds, at most 255, 0 never. */
export const keepAliveSeconds = (l: ConnectionLimits): number => Math.min(255, Math.ceil(l.keepAliveTimeoutS));

export const DEFAULT_LIMITS: ConnectionLimits = {
  maxConnections: maxConnectionsFor(openFileLimit()),
  keepAliveTimeoutS: 5, // uvicorn's and vLLM's keep-alive default
  bodyTimeoutS: 30,
  msgpackIdleTimeoutS: 300,
};
