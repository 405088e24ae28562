// `vllmd serve` as a user runs it: a child process that loads, prints its summary, serves the
// OpenAI API (the built-in model when no directory is given), and exits on SIGTERM.
import { expect, test } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");

async function startServe(args: string[]) {
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/cli.ts"), "serve", "--port", "0", ...args], { stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("ready in")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`serve exited early: ${out}${await new Response(proc.stderr).text()}`);
    out += new TextDecoder().decode(value);
  }
  const url = /http\s+(http:\/\/\S+)\/v1/.exec(out)![1]!;
  return { proc, url, out };
}

test("serve with no model serves the built-in one under its name, then exits on SIGTERM", async () => {
  const { proc, url, out } = await startServe([]);
  try {
    expect(out).toContain("KV cache");
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data[0]?.id).toBe("vllmd-default");
    const r = await fetch(`${url}/v1/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "vllmd-default", prompt: "And God said", max_tokens: 8, temperature: 0 }),
    });
    const body = (await r.json()) as { choices: { text: string }[] };
    expect(body.choices[0]?.text).toStartWith(" unto him");
  } finally {
    proc.kill("SIGTERM");
  }
  expect(await proc.exited).toBe(0);
});

test("serve MODEL_DIR with --served-model-name and --api-key", async () => {
  const { proc, url } = await startServe([join(ROOT, "test/fixtures/qwen2"), "--served-model-name", "tiny", "--api-key", "k"]);
  try {
    expect((await fetch(`${url}/v1/models`)).status).toBe(401);
    const models = (await (await fetch(`${url}/v1/models`, { headers: { authorization: "Bearer k" } })).json()) as { data: { id: string }[] };
    expect(models.data[0]?.id).toBe("tiny");
    expect((await fetch(`${url}/health`)).status).toBe(200);
  } finally {
    proc.kill("SIGTERM");
  }
  expect(await proc.exited).toBe(0);
});

test("serve with a bad model directory fails with the file named", async () => {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "src/cli.ts"), "serve", "/nonexistent/model", "--port", "0"]);
  expect(p.exitCode).toBe(1);
  expect(p.stderr.toString()).toContain("/nonexistent/model");
});

test("timing flags beyond what a timer (or Bun's idle limit) can hold are refused, not silently cut", () => {
  for (const [flag, value] of [["--body-timeout", "300"], ["--keep-alive-timeout", "256"], ["--msgpack-idle-timeout", "3000000"], ["--shutdown-timeout=-1", ""]]) {
    const p = Bun.spawnSync([process.execPath, join(ROOT, "src/cli.ts"), "serve", "--port", "0", flag!, ...(value ? [value] : [])]);
    expect(p.exitCode).toBe(2);
    expect(p.stderr.toString()).toContain(`${flag!.split("=")[0]} must be between 0 and`);
  }
});
