// Issue 9's findings, each reproduced: parameters that overflow float32, unbounded lists, bodies
// far over the limit, clients that leave mid-upload. After each the daemon still serves, and its
// engine is idle with every KV block back.
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import fc from "fast-check";
import { connect } from "node:net";
import type { RunningServer } from "../../src/serving/start.ts";
import { asJson, samplingBody } from "../helpers/sampling-arbitrary.ts";
import { RawConnection } from "../protocol/raw-client.ts";
import { engineIdle, metric, serveFixture } from "./helpers.ts";

const BODY_LIMIT = 64 * 1024;
let srv: RunningServer;
let mp: RawConnection;

beforeAll(async () => {
  srv = await serveFixture({ maxBodyBytes: BODY_LIMIT, msgpackPort: 0 });
  mp = await RawConnection.greeted(srv.msgpack.tcpPort!);
});
afterAll(async () => {
  mp.destroy();
  await srv.close();
});

const post = (path: string, body: unknown) =>
  fetch(`${srv.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });

async function httpError(body: object): Promise<{ status: number; param: string | null; message: string }> {
  const r = await post("/v1/completions", { prompt: "Hello there", max_tokens: 4, ...body });
  const j = (await r.json()) as { error: { param: string | null; message: string } };
  return { status: r.status, param: j.error?.param ?? null, message: j.error?.message ?? "" };
}

/** The daemon answers a plain request, /health is 200 and nothing is left in the engine. */
async function stillServes(): Promise<void> {
  const r = await post("/v1/completions", { prompt: "Hello", max_tokens: 3, temperature: 0, ignore_eos: true });
  expect(r.status).toBe(200);
  expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(3);
  expect((await fetch(`${srv.url}/health`)).status).toBe(200);
  expect(await engineIdle(srv)).toBe(true);
}

describe("finding 1: finite doubles that overflow or underflow float32", () => {
  const cases: [string, number][] = [["temperature", 1e39], ["temperature", 3.5e38], ["top_p", 1e-46], ["repetition_penalty", 1e-46], ["repetition_penalty", 1e39]];

  test("HTTP refuses each with a 400 naming the field", async () => {
    for (const [field, value] of cases) expect(await httpError({ [field]: value })).toMatchObject({ status: 400, param: field });
    await stillServes();
  });

  test("msgpack refuses each with an error frame naming the field", async () => {
    for (const [field, value] of cases) {
      mp.send({ type: "generate", id: field, prompt: "Hello", params: { [field]: value } });
      const [f] = await mp.untilDone(field);
      expect(f).toMatchObject({ type: "error", code: "invalid_request" });
      expect(f!.message as string).toContain(`params.${field}`);
    }
    await stillServes();
  });

  test("a value the device takes but whose row overflows fails that request alone (500); its neighbour is untouched", async () => {
    const neighbour = { prompt: "The quick brown fox", max_tokens: 12, temperature: 0, ignore_eos: true };
    const alone = await (await post("/v1/completions", neighbour)).json() as { choices: { text: string }[] };
    // 1e-44 is a float32 above zero: a positive logit of a seen (prompt) token divided by it overflows.
    const [bad, next] = await Promise.all([
      httpError({ prompt: "Hello there, how are you today, my friend?", repetition_penalty: 1e-44, max_tokens: 8 }),
      post("/v1/completions", neighbour).then((r) => r.json() as Promise<{ choices: { text: string }[] }>),
    ]);
    expect(bad.status).toBe(500);
    expect(bad.message).toContain("the sampler could not draw a token for this request");
    expect(next.choices[0]!.text).toBe(alone.choices[0]!.text);
    mp.send({ type: "generate", id: "overflow", prompt: "Hello there, how are you today?", params: { repetition_penalty: 1e-44 } });
    expect((await mp.untilDone("overflow"))[0]).toMatchObject({ type: "error", code: "internal" });
    await stillServes();
  });
});

describe("properties: random values for every sampling field, live", () => {
  test("over HTTP and msgpack each is served or refused with a clear error; the daemon serves on", async () => {
    const statuses = new Map<number, number>();
    await fc.assert(fc.asyncProperty(samplingBody, async (b) => {
      const r = await post("/v1/completions", { prompt: "Hello", max_tokens: 2, ...asJson(b) });
      const j = (await r.json()) as { error?: { code: number; message: string } };
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status !== 200) {
        expect(j.error?.code).toBe(r.status);
        expect(typeof j.error?.message).toBe("string");
        expect(r.status).toBeLessThanOrEqual(500); // 400 for a bad field, 500 for a row the sampler could not sample
      }
      mp.send({ type: "generate", id: "p", prompt: "Hello", params: { max_tokens: 2, ...b } });
      const last = (await mp.untilDone("p")).at(-1)!;
      if (last.type === "error") expect(typeof last.message).toBe("string");
      else expect(last.finished).toBe(true);
    }), { numRuns: 300 });
    expect(statuses.get(200)).toBeGreaterThan(10); // many were served, not only refused
    await stillServes();
  }, 60_000);
});

describe("finding 3: lists are bounded over HTTP as over msgpack", () => {
  test("100k stop strings, 2k stop token ids and 2k logit biases are refused at once", async () => {
    const t0 = performance.now();
    expect(await httpError({ stop: Array.from({ length: 100_000 }, (_, i) => `s${i}`), n: 32 })).toMatchObject({ status: 413 });
    expect(await httpError({ stop: Array.from({ length: 1000 }, (_, i) => `s${i}`), n: 32 })).toMatchObject({ status: 400, param: "stop" });
    expect(await httpError({ stop_token_ids: new Array(2000).fill(1) })).toMatchObject({ status: 400, param: "stop_token_ids" });
    expect(await httpError({ logit_bias: Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [String(i), 1])) })).toMatchObject({ status: 400, param: "logit_bias" });
    expect(await httpError({ stop: "x".repeat(5000) })).toMatchObject({ status: 400, param: "stop" });
    expect(performance.now() - t0).toBeLessThan(2000);
    await stillServes();
  });
});

describe("finding 7: every oversize body gets the JSON 413", () => {
  test("far over the limit (where Bun used to answer with a bare 413), declared or chunked", async () => {
    const big = JSON.stringify({ prompt: "x".repeat(BODY_LIMIT * 40) });
    const r = await post("/v1/completions", big);
    expect(r.status).toBe(413);
    expect(r.headers.get("content-type")).toStartWith("application/json");
    expect(((await r.json()) as { error: { code: number } }).error.code).toBe(413);
    const enc = new TextEncoder().encode(big);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let at = 0; at < enc.length; at += 65536) c.enqueue(enc.slice(at, at + 65536));
        c.close();
      },
    });
    const chunked = await fetch(`${srv.url}/tokenize`, { method: "POST", body: stream });
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as { error: { code: number } }).error.code).toBe(413);
    await stillServes();
  });
});

describe("finding 5: a client that drops mid-upload", () => {
  test("is one short log line and a counter, never a stack", async () => {
    const before = await metric(srv, "vllmd:client_disconnects_total");
    const logged: string[] = [];
    const spy = spyOn(console, "error").mockImplementation((...args: unknown[]) => void logged.push(args.map(String).join(" ")));
    try {
      for (let i = 0; i < 3; i++) {
        await new Promise<void>((resolve) => {
          const s = connect(Number(new URL(srv.url).port), "127.0.0.1", () => {
            s.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\": \"");
            setTimeout(() => (s.destroy(), resolve()), 50);
          });
        });
      }
      const deadline = performance.now() + 3000;
      while ((await metric(srv, "vllmd:client_disconnects_total")) < before + 3 && performance.now() < deadline) await Bun.sleep(20);
    } finally {
      spy.mockRestore();
    }
    expect(await metric(srv, "vllmd:client_disconnects_total")).toBe(before + 3);
    expect(logged).toHaveLength(3);
    for (const line of logged) {
      expect(line).toBe("vllmd http: client went away during POST /v1/completions (body unfinished)");
    }
    await stillServes();
  });
});

describe("finding 2: huge prompts are refused before tokenizing, and never stall other clients", () => {
  let big: RunningServer;
  beforeAll(async () => {
    big = await serveFixture({}); // the default 32 MiB body limit
  });
  afterAll(() => big.close());

  test("four 30 MiB /tokenize and /v1/completions at once: 400s within seconds, /health answering throughout", async () => {
    // The big bodies come from another process, so that this thread is the server's alone.
    const senders = `
      const prompt = "Hello world ".repeat((30 * 2 ** 20) / 12);
      const url = process.argv[1];
      const paths = ["/tokenize", "/tokenize", "/v1/completions", "/v1/completions"];
      const t0 = performance.now();
      const rs = await Promise.all(paths.map((p) => fetch(url + p, { method: "POST", body: JSON.stringify({ prompt, max_tokens: 1 }) })));
      const bodies = await Promise.all(rs.map((r) => r.json()));
      console.log(JSON.stringify({ took: performance.now() - t0, statuses: rs.map((r) => r.status), messages: bodies.map((b) => b.error?.message) }));`;
    const proc = Bun.spawn([process.execPath, "-e", senders, big.url], { stdout: "pipe" });
    const healthLatencies: number[] = [];
    const out = new Response(proc.stdout).text();
    let done = false;
    void proc.exited.then(() => (done = true));
    while (!done) {
      const t0 = performance.now();
      expect((await fetch(`${big.url}/health`)).status).toBe(200);
      healthLatencies.push(performance.now() - t0);
      await Bun.sleep(10);
    }
    const r = JSON.parse(await out) as { took: number; statuses: number[]; messages: string[] };
    expect(r.statuses).toEqual([400, 400, 400, 400]);
    for (const m of r.messages) expect(m).toContain("more than this model's maximum context length");
    const worst = Math.max(...healthLatencies);
    console.log(`four 30 MiB prompts refused in ${r.took.toFixed(0)} ms; /health worst ${worst.toFixed(0)} ms over ${healthLatencies.length} polls`);
    expect(r.took).toBeLessThan(10_000);
    expect(worst).toBeLessThan(1000);
  }, 30_000);
});
