// The msgpack protocol's listeners: a unix socket (--socket PATH) and/or TCP (--msgpack-port N),
// each connection handled by a Connection. See docs/protocol.md.
import { lstatSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import type { ServingContext } from "../serving/context.ts";
import { Connection, DEFAULT_CONNECTION_OPTIONS, type ConnectionOptions } from "./connection.ts";
import { FrameEncoder } from "./frame.ts";
import { errorFrame } from "./messages.ts";

export interface MsgpackServers {
  socketPath: string | null;
  tcpPort: number | null;
  /** Open client connections, over every listener. */
  readonly numConnections: number;
  /** Stops taking connections; open ones carry on. */
  stopAccepting(): void;
  /** Closes every connection once its queued frames are written (or after their grace), and the listeners. */
  close(): Promise<void>;
}

type Listener = { stop(closeActiveConnections?: boolean): void };

export async function startMsgpackServers(
  ctx: ServingContext,
  o: { socketPath: string | null; port: number | null; hostname: string },
  connOpts: Partial<ConnectionOptions> = {},
): Promise<MsgpackServers> {
  const open = new Set<Connection>();
  const opts = { ...DEFAULT_CONNECTION_OPTIONS, idleTimeoutMs: ctx.limits.msgpackIdleTimeoutS * 1000, ...connOpts };
  const handlers = socketHandlers(ctx, opts, open);
  const listeners: Listener[] = [];
  let tcpPort: number | null = null;
  try {
    if (o.socketPath !== null) {
      await clearStaleSocket(o.socketPath);
      listeners.push(Bun.listen<{ conn: Connection | null }>({ unix: o.socketPath, socket: handlers }));
    }
    if (o.port !== null) {
      const tcp = Bun.listen<{ conn: Connection | null }>({ hostname: o.hostname, port: o.port, socket: handlers });
      listeners.push(tcp);
      tcpPort = tcp.port;
    }
  } catch (e) {
    for (const l of listeners) l.stop(true);
    const where = o.socketPath !== null && listeners.length === 0 ? `unix socket ${o.socketPath}` : `${o.hostname}:${o.port}`;
    throw new Error(`cannot listen for msgpack clients on ${where}: ${e instanceof Error ? e.message : String(e)}`);
  }
  let accepting = true;
  const stopAccepting = () => {
    if (!accepting) return;
    accepting = false;
    for (const l of listeners) l.stop(false);
    if (o.socketPath !== null) removeSocketFile(o.socketPath);
  };
  return {
    socketPath: o.socketPath,
    tcpPort,
    get numConnections() {
      return open.size;
    },
    stopAccepting,
    async close() {
      stopAccepting();
      for (const c of open) c.closeWhenFlushed();
      const deadline = performance.now() + opts.closeGraceMs + 100;
      while (open.size > 0 && performance.now() < deadline) await Bun.sleep(10);
      for (const l of listeners) l.stop(true);
    },
  };
}

type ConnSocket = Bun.Socket<{ conn: Connection | null }>;

function socketHandlers(ctx: ServingContext, connOpts: ConnectionOptions, open: Set<Connection>) {
  const max = ctx.limits.maxConnections;
  return {
    binaryType: "uint8array" as const,
    open(s: ConnSocket) {
      if (open.size >= max) {
        s.data = { conn: null };
        s.write(new FrameEncoder().encode(errorFrame("busy", `too many connections (--max-connections ${max}); retry later`)));
        s.end();
        return;
      }
      const sink = {
        write: (b: Uint8Array) => s.write(b),
        end: () => s.end(),
        terminate: () => s.terminate(),
      };
      const conn = new Connection(ctx, sink, connOpts);
      open.add(conn);
      s.data = { conn };
    },
    data(s: ConnSocket, chunk: Uint8Array) {
      s.data.conn?.onData(chunk);
    },
    drain(s: ConnSocket) {
      s.data.conn?.onDrain();
    },
    close(s: ConnSocket) {
      const conn = s.data?.conn;
      if (!conn) return;
      open.delete(conn);
      conn.onClose();
    },
    // A handler that threw, or a socket error: close this connection only, never the daemon.
    error(s: ConnSocket, err: Error) {
      console.error(`msgpack connection error: ${err.message}`);
      const conn = s.data?.conn;
      if (conn) {
        open.delete(conn);
        conn.onClose();
      }
      s.terminate();
    },
  };
}

/**
 * A socket file left by a daemon that died is in the way of listen(); one that a live daemon
 * answers on is not ours to take, and a path that is not a socket at all is never removed.
 */
async function clearStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new Error(`${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    c.once("connect", () => (c.destroy(), resolve(true)));
    c.once("error", () => resolve(false));
  });
  if (live) throw new Error(`another process is listening on ${path}`);
  unlinkSync(path);
}

function removeSocketFile(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // already gone
  }
}
