// The unix socket's file: a stale one left by a dead daemon is replaced, a live daemon's or a
// file that is not a socket is left alone with a clear error, and close() removes ours.
import { afterAll, beforeAll, expect, test, setDefaultTimeout } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "../../src/protocol/client.ts";
import { startMsgpackServers } from "../../src/protocol/server.ts";
import { startServer, type RunningServer } from "../../src/serving/start.ts";

setDefaultTimeout(30_000); // generous: the suite may share 2 cores with other work

let srv: RunningServer;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "vllmd-sockfile-"));
  srv = await startServer({ engine: { model: "test/fixtures/llama", device: "cpu", cpuKvCacheBytes: 16 * 2 ** 20 }, host: "127.0.0.1", port: 0, maxQueue: 8 });
});

afterAll(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

const opts = (socketPath: string) => ({ socketPath, port: null, hostname: "127.0.0.1" });

test("a stale socket file (bound, nobody listening) is replaced, and close() removes the file", async () => {
  const path = join(dir, "stale.sock");
  const bind = Bun.spawnSync(["python3", "-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path]);
  expect(bind.exitCode).toBe(0);
  expect(existsSync(path)).toBe(true);
  const m = await startMsgpackServers(srv.ctx, opts(path));
  const c = await connect(path);
  expect(c.server.model).toBe("llama");
  await c.close();
  m.close();
  expect(existsSync(path)).toBe(false);
});

test("a socket another process listens on is not taken", async () => {
  const path = join(dir, "live.sock");
  const other = createServer(() => {});
  await new Promise<void>((r) => other.listen(path, r));
  await expect(startMsgpackServers(srv.ctx, opts(path))).rejects.toThrow(/another process is listening on .*live\.sock/);
  await new Promise<void>((r) => other.close(() => r()));
});

test("a path that is not a socket is never removed", async () => {
  const path = join(dir, "file.txt");
  writeFileSync(path, "keep me");
  await expect(startMsgpackServers(srv.ctx, opts(path))).rejects.toThrow(/exists and is not a socket/);
  expect(existsSync(path)).toBe(true);
});

test("a TCP port in use is a clear error", async () => {
  const first = await startMsgpackServers(srv.ctx, { socketPath: null, port: 0, hostname: "127.0.0.1" });
  await expect(startMsgpackServers(srv.ctx, { socketPath: null, port: first.tcpPort, hostname: "127.0.0.1" }))
    .rejects.toThrow(`cannot listen for msgpack clients on 127.0.0.1:${first.tcpPort}`);
  first.close();
});
