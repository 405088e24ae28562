import { expect, test } from "bun:test";
import { DEFAULT_LIMITS, maxConnectionsFor, openFileLimit } from "./limits.ts";

test("the default connection limit fits both front ends in the open-file limit", () => {
  expect(maxConnectionsFor(null)).toBe(2048);
  expect(maxConnectionsFor(1_048_576)).toBe(2048);
  expect(maxConnectionsFor(1024)).toBe(384); // (1024 - 256) / 2
  expect(maxConnectionsFor(100)).toBe(16);
  const fds = openFileLimit();
  expect(fds === null || fds > 0).toBe(true);
  expect(2 * DEFAULT_LIMITS.maxConnections + 256).toBeLessThanOrEqual(Math.max(fds ?? Infinity, 2 * 16 + 256));
});

test("the limit read is the process's own (Bun raises the soft limit to the hard one at start)", () => {
  const p = Bun.spawnSync(["bash", "-c", `ulimit -Sn 300 && ulimit -Hn 300 && ${process.execPath} -e 'import("${import.meta.dir}/limits.ts").then((m) => console.log(m.openFileLimit(), m.DEFAULT_LIMITS.maxConnections))'`]);
  expect(p.stdout.toString().trim()).toBe("300 22");
});
