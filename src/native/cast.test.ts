// vd_cast: f32 <-> f16/bf16 with round-to-nearest-even, as the weight encoder rounds.
import { afterAll, expect, test } from "bun:test";
import { openBackend } from "./backend.ts";
import { downloadF32, encodeWeights, poisoned, randomF32, seededRandom, upload } from "./testing.ts";
import { BackendError, DType } from "./types.ts";

const be = openBackend("cpu");
afterAll(() => be.destroy());

for (const [name, dt] of [["bf16", DType.bf16], ["f16", DType.f16]] as const) {
  test(`f32 -> ${name} -> f32 rounds to nearest even`, () => {
    const n = 1001;
    const x = randomF32(n, seededRandom(7), 3);
    const half = be.alloc(n * 2);
    const back = poisoned(be, n);
    be.cast(half, upload(be, x), n, dt, DType.f32);
    be.cast(back, half, n, DType.f32, dt);
    expect(Array.from(downloadF32(be, back, n))).toEqual(Array.from(encodeWeights(x, dt).exact));
  });
}

test("bad dtype and short buffers are rejected", () => {
  const small = be.alloc(8);
  expect(() => be.cast(small, small, 4, DType.f32, DType.f32)).toThrow(BackendError);
  expect(() => be.cast(small, small, 1, DType.i32, DType.f32)).toThrow(/out_dtype/);
});
