// What one client may hold of the server: connections, the time it takes to send a request, idle
// time. Each is a flag of `vllmd serve`; the defaults keep a careless or hostile client from
// stalling others or exhausting file descriptors.
export interface ConnectionLimits {
  /**
   * msgpack: open connections per listener. HTTP: requests in progress at once (Bun.serve has no
   * hook on idle sockets; those are closed by keepAliveTimeoutS, and Bun drops a connection whose
   * request head is not complete within ~10 s).
   */
  maxConnections: number;
  /** HTTP: an idle keep-alive connection closes after this long (Bun rounds it up to 4-second ticks; 0: never). */
  keepAliveTimeoutS: number;
  /** HTTP: a request body must arrive whole within this many seconds of its headers (408 otherwise; 0: no limit). */
  bodyTimeoutS: number;
  /** msgpack: a connection with no request in flight that sends no frame for this long is closed (0: never). */
  msgpackIdleTimeoutS: number;
}

export const DEFAULT_LIMITS: ConnectionLimits = {
  maxConnections: 2048,
  keepAliveTimeoutS: 5, // uvicorn's and vLLM's keep-alive default
  bodyTimeoutS: 30,
  msgpackIdleTimeoutS: 300,
};
