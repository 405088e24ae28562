// The msgpack protocol's listeners: a unix socket (--socket PATH) and/or TCP (--msgpack-port N),
// each connection handled by a Connection. See docs/protocol.md.
import { lstatSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import type { ServingContext } from "../serving/context.ts";
import { Connection, DEFAULT_CONNECTION_OPTIONS, type ConnectionOptions } from "./connection.ts";

export interface MsgpackServers {
  socketPath: string | null;
  tcpPort: number | null;
  close(): void;
}

type Listener = { stop(closeActiveConnections?: boolean): void };

export async function startMsgpackServers(
  ctx: ServingContext,
  o: { socketPath: string | null; port: number | null; hostname: string },
  connOpts: ConnectionOptions = DEFAULT_CONNECTION_OPTIONS,
): Promise<MsgpackServers> {
  const handlers = socketHandlers(ctx, connOpts);
  const listeners: Listener[] = [];
  let tcpPort: number | null = null;
  try {
    if (o.socketPath !== null) {
      await clearStaleSocket(o.socketPath);
      listeners.push(Bun.listen<{ conn: Connection }>({ unix: o.socketPath, socket: handlers }));
    }
    if (o.port !== null) {
      const tcp = Bun.listen<{ conn: Connection }>({ hostname: o.hostname, port: o.port, socket: handlers });
      listeners.push(tcp);
      tcpPort = tcp.port;
    }
  } catch (e) {
    for (const l of listeners) l.stop(true);
    const where = o.socketPath !== null && listeners.length === 0 ? `unix socket ${o.socketPath}` : `${o.hostname}:${o.port}`;
    throw new Error(`cannot listen for msgpack clients on ${where}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return {
    socketPath: o.socketPath,
    tcpPort,
    close() {
      for (const l of listeners) l.stop(true);
      if (o.socketPath !== null) removeSocketFile(o.socketPath);
    },
  };
}

function socketHandlers(ctx: ServingContext, connOpts: ConnectionOptions) {
  return {
    binaryType: "uint8array" as const,
    open(s: Bun.Socket<{ conn: Connection }>) {
      const sink = {
        write: (b: Uint8Array) => s.write(b),
        end: () => s.end(),
        terminate: () => s.terminate(),
      };
      s.data = { conn: new Connection(ctx, sink, connOpts) };
    },
    data(s: Bun.Socket<{ conn: Connection }>, chunk: Uint8Array) {
      s.data.conn.onData(chunk);
    },
    drain(s: Bun.Socket<{ conn: Connection }>) {
      s.data.conn.onDrain();
    },
    close(s: Bun.Socket<{ conn: Connection }>) {
      s.data?.conn.onClose();
    },
    // A handler that threw, or a socket error: close this connection only, never the daemon.
    error(s: Bun.Socket<{ conn: Connection }>, err: Error) {
      console.error(`msgpack connection error: ${err.message}`);
      s.data?.conn.onClose();
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
