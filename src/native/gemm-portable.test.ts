// The portable (non-avx2) GEMM kernels: reruns gemm.test.ts in a child with VLLMD_CPU_NO_AVX2=1,
// which the cpu library reads once when it first multiplies.
import { expect, test } from "bun:test";
import { join } from "node:path";

test("gemm tests pass on the portable kernels", () => {
  const child = Bun.spawnSync([process.execPath, "test", join(import.meta.dir, "gemm.test.ts")], {
    env: { ...process.env, VLLMD_CPU_NO_AVX2: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const report = child.stderr.toString();
  expect(report).toMatch(/\b0 fail\b/);
  expect(report).toMatch(/\b[1-9]\d* pass\b/);
  expect(child.exitCode).toBe(0);
});
