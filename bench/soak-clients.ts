// The clients of the soak (bench/soak.ts), careful and careless: streams read to the end or cut
// at a random point, non-streamed chats, malformed and hostile HTTP and msgpack input, oversize
// bodies, bodies that stall, idle connections. Each records what came back as one outcome:
// answered, refused with a clear error, cut by the client itself, or unclear (anything else,
// which the soak counts as a failure).
import { decode } from "@msgpack/msgpack";
import { connect, type Socket } from "node:net";
import { seededRandom } from "../src/native/testing.ts";
import { FrameDecoder, FrameEncoder } from "../src/protocol/frame.ts";

export type Outcome = "answered" | "refused" | "cut" | "unclear";

export class Tally {
  readonly counts = new Map<string, Record<Outcome, number>>();
  readonly unclear: string[] = [];

  add(kind: string, o: Outcome, detail = ""): void {
    const c = this.counts.get(kind) ?? { answered: 0, refused: 0, cut: 0, unclear: 0 };
    c[o]++;
    this.counts.set(kind, c);
    if (o === "unclear" && this.unclear.length < 20) this.unclear.push(`${kind}: ${detail}`);
  }

  total(o: Outcome): number {
    let n = 0;
    for (const c of this.counts.values()) n += c[o];
    return n;
  }
}

export interface Target {
  url: string; // http://host:port
  msgpackPort: number;
  maxBodyBytes: number;
}

/** A seeded generator, so that a soak can be replayed. */
export function rng(seed: number) {
  const u = seededRandom(seed); // in [-1, 1)
  const next = () => (u() + 1) / 2;
  const int = (n: number) => Math.min(n - 1, Math.floor(next() * n));
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]! };
}
export type Rng = ReturnType<typeof rng>;

const WORDS = ["And", "God", "said", "light", "the", "earth", "was", "without", "form", "void", "darkness", "waters", "heaven"];
const prompt = (r: Rng) => Array.from({ length: 1 + r.int(40) }, () => r.pick(WORDS)).join(" ");

/** A clear error: JSON {error: {message, code == status}}. */
async function isClearError(res: Response): Promise<boolean> {
  try {
    const j = (await res.json()) as { error?: { message?: unknown; code?: unknown } };
    return typeof j.error?.message === "string" && j.error.code === res.status;
  } catch {
    return false;
  }
}

async function classify(res: Response, kind: string, t: Tally): Promise<void> {
  if (res.ok) return void (await res.arrayBuffer(), t.add(kind, "answered"));
  t.add(kind, (await isClearError(res)) ? "refused" : "unclear", `status ${res.status} without a JSON error`);
}

const post = (target: Target, path: string, body: unknown, signal?: AbortSignal) =>
  fetch(`${target.url}${path}`, {
    method: "POST", headers: { "content-type": "application/json" }, signal: signal ?? AbortSignal.timeout(120_000),
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

/** An SSE completion read to its [DONE], or cut after a random number of chunks. */
export async function streamCompletion(target: Target, r: Rng, t: Tally): Promise<void> {
  const cutAfter = r.next() < 0.4 ? 1 + r.int(6) : Infinity;
  const ctl = new AbortController();
  const kind = cutAfter < Infinity ? "stream (cut)" : "stream";
  try {
    const res = await post(target, "/v1/completions", {
      prompt: prompt(r), max_tokens: 1 + r.int(96), temperature: r.next() * 1.5, top_p: 0.5 + r.next() / 2, stream: true,
      ...(r.next() < 0.3 ? { stop: ["the", "\n"] } : {}), ...(r.next() < 0.2 ? { logprobs: 2 } : {}),
    }, ctl.signal);
    if (!res.ok) return classify(res, kind, t);
    const reader = res.body!.getReader();
    let text = "", chunks = 0;
    for (;;) {
      const c = await reader.read();
      if (c.done) break;
      text += new TextDecoder().decode(c.value);
      if (++chunks >= cutAfter) return ctl.abort(), t.add(kind, "cut");
    }
    const done = text.trimEnd().endsWith("data: [DONE]");
    t.add(kind, !done ? "unclear" : text.includes('"error"') ? "refused" : "answered", `stream ended without [DONE]: ${text.slice(-120)}`);
  } catch (e) {
    t.add(kind, ctl.signal.aborted ? "cut" : "unclear", String(e));
  }
}

/** A non-streamed chat, sometimes with n > 1. */
export async function chat(target: Target, r: Rng, t: Tally): Promise<void> {
  try {
    const res = await post(target, "/v1/chat/completions", {
      messages: [{ role: "user", content: prompt(r) }], max_tokens: 1 + r.int(48), n: 1 + r.int(3), temperature: r.next(),
    });
    await classify(res, "chat", t);
  } catch (e) {
    t.add("chat", "unclear", String(e));
  }
}

/** Bodies a careless or hostile client sends: each must be refused with a clear error (or served). */
const BAD_BODIES: ((r: Rng) => unknown)[] = [
  () => "{not json",
  () => "[1, 2, 3]",
  () => ({ prompt: 5 }),
  () => ({ prompt: "x", temperature: 1e39 }),
  () => ({ prompt: "x", top_p: 1e-46 }),
  () => ({ prompt: "x", repetition_penalty: 1e39 }),
  () => ({ prompt: "Hello there, how are you today, my friend?", repetition_penalty: 1e-44, max_tokens: 4 }), // a row that overflows: 500
  () => ({ prompt: "x", stop: Array.from({ length: 5000 }, (_, i) => `s${i}`), n: 32 }),
  () => ({ prompt: "x", stop_token_ids: new Array(5000).fill(1) }),
  () => ({ prompt: "x", logit_bias: { "99999999": 5 } }),
  (r) => ({ prompt: [r.int(10), -1] }),
  (r) => ({ prompt: "x", max_tokens: 10 ** (1 + r.int(9)) }),
  () => ({ prompt: "x", n: 100000 }),
  (r) => ({ prompt: "word ".repeat(20_000 + r.int(20_000)) }),
];

export async function badHttp(target: Target, r: Rng, t: Tally): Promise<void> {
  const path = r.pick(["/v1/completions", "/v1/completions", "/tokenize", "/v1/nothing"]);
  try {
    const res = await post(target, path, r.pick(BAD_BODIES)(r));
    await classify(res, "bad http", t);
  } catch (e) {
    t.add("bad http", "unclear", String(e));
  }
}

/** Bytes on a raw TCP connection; resolves with what came back once the server closes (or after ms). */
function rawExchange(host: string, port: number, send: (s: Socket) => void, ms: number): Promise<{ reply: Buffer; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const parts: Uint8Array[] = [];
    let settled = false;
    const s = connect(port, host, () => send(s));
    const end = (closedByServer: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ reply: Buffer.concat(parts), closedByServer });
    };
    const timer = setTimeout(() => end(false), ms);
    s.on("data", (d: Uint8Array) => parts.push(d));
    s.on("close", () => end(true));
    s.on("error", () => end(true));
  });
}

/** A body far over the limit (declared), or one that stalls half way: a JSON 413 or 408, then the close. */
export async function oversizeOrStalled(target: Target, r: Rng, t: Tally): Promise<void> {
  const u = new URL(target.url);
  const oversize = r.next() < 0.5;
  const kind = oversize ? "oversize body" : "stalled body";
  const length = oversize ? target.maxBodyBytes * 4 : 1000;
  const head = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n{"prompt": "`;
  const { reply, closedByServer } = await rawExchange(u.hostname, Number(u.port), (s) => s.write(head), 30_000);
  const text = reply.toString();
  const want = oversize ? "413" : "408";
  const clear = text.startsWith(`HTTP/1.1 ${want}`) && text.includes(`"code":${want}`) && closedByServer;
  const busy = text.startsWith("HTTP/1.1 503") && text.includes('"code":503');
  t.add(kind, clear || busy ? "refused" : "unclear", `reply ${JSON.stringify(text.slice(0, 80))}, closed by server: ${closedByServer}`);
}

/** A connection that says nothing until the server closes it (HTTP's header deadline, msgpack's idle timeout). */
export async function idleConnection(target: Target, r: Rng, t: Tally): Promise<void> {
  const u = new URL(target.url);
  const msgpack = r.next() < 0.5;
  const hello = new FrameEncoder().encode({ type: "hello", version: 1 });
  const { reply, closedByServer } = await rawExchange(u.hostname, msgpack ? target.msgpackPort : Number(u.port),
    (s) => msgpack && s.write(hello), 60_000);
  const kind = msgpack ? "idle msgpack" : "idle http";
  t.add(kind, closedByServer ? (msgpack ? (reply.includes("idle_timeout") ? "refused" : "unclear") : "refused") : "unclear",
    `not closed within 60 s (${reply.length} bytes back)`);
}

/** One msgpack connection: hello, a few generates (some aborted, some bad), sometimes dropped mid-way. */
export async function msgpackSession(target: Target, r: Rng, t: Tally): Promise<void> {
  const u = new URL(target.url);
  const enc = new FrameEncoder();
  const frames: Record<string, unknown>[] = [];
  const dec = new FrameDecoder(1 << 30);
  let closed = false, wake = () => {};
  const s = connect(target.msgpackPort, u.hostname);
  s.on("data", (d: Uint8Array) => {
    for (const p of dec.push(d)) frames.push(decode(p) as Record<string, unknown>);
    wake();
  });
  s.on("close", () => ((closed = true), wake()));
  s.on("error", () => {});
  const next = async (ms = 60_000): Promise<Record<string, unknown> | null> => {
    const deadline = Date.now() + ms;
    while (!frames.length && !closed && Date.now() < deadline) await new Promise<void>((res) => ((wake = res), setTimeout(res, 100)));
    return frames.shift() ?? null;
  };
  s.write(enc.encode({ type: "hello", version: 1 }));
  if ((await next())?.type !== "hello") return s.destroy(), t.add("msgpack", "unclear", "no hello reply");
  const n = 1 + r.int(4);
  for (let i = 0; i < n && !closed; i++) {
    const bad = r.next() < 0.25;
    const params = bad ? r.pick([{ temperature: 1e39 }, { top_p: 0 }, { stop_token_ids: new Array(2000).fill(1) }, { n: 2 }]) : { max_tokens: 1 + r.int(64), temperature: r.next() };
    if (r.next() < 0.1) s.write(new Uint8Array([0, 0, 0, 3, 0xc1, 0xc1, 0xc1])); // a malformed frame
    s.write(enc.encode({ type: "generate", id: i, prompt: prompt(r), params }));
    const abortAt = r.next() < 0.3 ? 1 + r.int(4) : Infinity;
    const dropAt = r.next() < 0.1 ? 1 + r.int(4) : Infinity;
    for (let got = 0; ;) {
      const f = await next();
      if (!f) return s.destroy(), t.add("msgpack", "unclear", "no frame within 60 s");
      if (f.type === "error" && f.id === undefined) continue; // the malformed frame's answer
      if (f.id !== i) return s.destroy(), t.add("msgpack", "unclear", `frame for another id: ${JSON.stringify(f).slice(0, 100)}`);
      if (f.type === "error") {
        t.add("msgpack", typeof f.message === "string" ? "refused" : "unclear", JSON.stringify(f));
        break;
      }
      if (f.finished) {
        t.add("msgpack", f.finish_reason === "abort" && abortAt < Infinity ? "cut" : "answered");
        break;
      }
      if (++got === dropAt) return s.destroy(), t.add("msgpack", "cut");
      if (got === abortAt) s.write(enc.encode({ type: "abort", id: i }));
    }
  }
  s.end();
}
