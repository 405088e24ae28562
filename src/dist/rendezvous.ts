// The start-up meeting of a multi-host run (--nnodes): node 0 listens on --master-addr:--master-port,
// every other node connects and says who it is, and node 0 hands each the same bytes (NCCL's
// unique id, from which all the hosts' ranks build one communicator). Nothing else crosses this
// socket: once the communicator exists, step inputs travel over NCCL itself.
// Frames are JSON lines: {"v":1,"nnodes":N,"nodeRank":r} from a node, {"ok":true,"id":"<base64>"}
// or {"ok":false,"error":"..."} back. Every failure names the node, the address and the setting.

export interface RendezvousOptions {
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  /** How long node 0 waits for everyone, and the others keep trying to reach it. */
  timeoutMs: number;
  /** Node 0 only: called with the port it listens on (useful with masterPort 0). */
  onListening?: (port: number) => void;
}

const VERSION = 1;

interface Hello {
  v: number;
  nnodes: number;
  nodeRank: number;
}

/** Node 0: waits for nodes 1..nnodes-1, gives each `id`, resolves once all have it. */
export function serveRendezvous(o: RendezvousOptions, id: Uint8Array): Promise<void> {
  const idText = Buffer.from(id).toString("base64");
  const joined = new Set<number>();
  return new Promise((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (err?: Error) => {
      clearTimeout(timer);
      server.stop(true);
      if (err) reject(err);
      else resolve();
    };
    const answer = (s: { write(t: string): number; end(): void }, msg: object) => {
      s.write(`${JSON.stringify(msg)}\n`);
      s.end();
    };
    const server = Bun.listen<{ buf: string }>({
      hostname: o.masterAddr, port: o.masterPort,
      socket: {
        open(s) { s.data = { buf: "" }; },
        data(s, chunk) {
          s.data.buf += chunk.toString();
          const nl = s.data.buf.indexOf("\n");
          if (nl < 0 && s.data.buf.length > 4096) return answer(s, { ok: false, error: "rendezvous: not a vllmd node (no hello in 4 KiB)" });
          if (nl < 0) return;
          const error = checkHello(s.data.buf.slice(0, nl), o.nnodes, joined);
          if (error) return answer(s, { ok: false, error });
          const hello = JSON.parse(s.data.buf.slice(0, nl)) as Hello;
          joined.add(hello.nodeRank);
          answer(s, { ok: true, id: idText });
          if (joined.size === o.nnodes - 1) finish();
        },
      },
    });
    o.onListening?.(server.port);
    if (o.nnodes <= 1) return finish();
    timer = setTimeout(() => {
      const missing = Array.from({ length: o.nnodes - 1 }, (_, i) => i + 1).filter((r) => !joined.has(r));
      finish(new Error(`rendezvous: node(s) ${missing.join(", ")} of --nnodes ${o.nnodes} did not reach ${o.masterAddr}:${server.port} within ${o.timeoutMs / 1000} s`));
    }, o.timeoutMs);
  });
}

/** Why node 0 turns a hello away, or null. */
function checkHello(line: string, nnodes: number, joined: Set<number>): string | null {
  let h: Hello;
  try {
    h = JSON.parse(line) as Hello;
  } catch {
    return "rendezvous: not a vllmd node (a frame that is not JSON)";
  }
  if (h.v !== VERSION) return `rendezvous: protocol version ${h.v}, node 0 speaks ${VERSION} (mixed vllmd versions?)`;
  if (h.nnodes !== nnodes) return `rendezvous: this node says --nnodes ${h.nnodes}, node 0 says ${nnodes}`;
  if (!Number.isInteger(h.nodeRank) || h.nodeRank < 1 || h.nodeRank >= nnodes) return `rendezvous: --node-rank ${h.nodeRank} is not in 1..${nnodes - 1}`;
  if (joined.has(h.nodeRank)) return `rendezvous: --node-rank ${h.nodeRank} already joined (two nodes with one rank?)`;
  return null;
}

/** Nodes 1..N-1: reach node 0 (retrying until the timeout) and return the bytes it hands out. */
export async function joinRendezvous(o: RendezvousOptions): Promise<Uint8Array> {
  const deadline = Date.now() + o.timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      return await askOnce(o);
    } catch (e) {
      if (e instanceof RendezvousRefused) throw e;
      last = (e as Error).message;
      await Bun.sleep(100);
    }
  }
  throw new Error(`rendezvous: node ${o.nodeRank} could not reach node 0 at ${o.masterAddr}:${o.masterPort} within ${o.timeoutMs / 1000} s (${last || "no answer"})`);
}

class RendezvousRefused extends Error {}

function askOnce(o: RendezvousOptions): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    let buf = "";
    Bun.connect({
      hostname: o.masterAddr, port: o.masterPort,
      socket: {
        open(s) { s.write(`${JSON.stringify({ v: VERSION, nnodes: o.nnodes, nodeRank: o.nodeRank })}\n`); },
        data(_s, chunk) { buf += chunk.toString(); },
        close() {
          const line = buf.split("\n")[0] ?? "";
          if (!line) return reject(new Error("node 0 closed the connection without an answer"));
          let msg: { ok?: boolean; id?: string; error?: string };
          try {
            msg = JSON.parse(line) as typeof msg;
          } catch {
            return reject(new RendezvousRefused(`rendezvous: ${o.masterAddr}:${o.masterPort} is not a vllmd node 0 (its answer is not JSON)`));
          }
          if (msg.ok && typeof msg.id === "string") resolve(new Uint8Array(Buffer.from(msg.id, "base64")));
          else reject(new RendezvousRefused(msg.error ?? "rendezvous: refused"));
        },
        error(_s, e) { reject(e); },
        connectError(_s, e) { reject(e); },
      },
    }).catch(reject);
  });
}
