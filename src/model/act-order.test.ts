import { expect, test } from "bun:test";
import { actOrderPermutation } from "./act-order.ts";
import { ModelDirError } from "./errors.ts";
import { errorOf } from "./testing.ts";

test("inputs sorted by group, ties in input order; null when nothing moves", () => {
  // groups of 2 over 6 inputs, formed along the order 4 1 5 0 3 2
  expect(Array.from(actOrderPermutation(Int32Array.from([1, 0, 2, 2, 0, 1]), 2, "f", "t")!)).toEqual([1, 4, 0, 5, 2, 3]);
  expect(actOrderPermutation(Int32Array.from([0, 0, 1, 1, 2]), 2, "f", "t")).toBeNull(); // a shorter last group
});

test("g_idx that does not make groups of group_size is refused by tensor name", () => {
  const outOfRange = errorOf(() => actOrderPermutation(Int32Array.from([0, 3, 1, 1]), 2, "m.safetensors", "l.q_proj.g_idx"));
  expect(outOfRange).toBeInstanceOf(ModelDirError);
  expect(outOfRange.message).toContain("tensor 'l.q_proj.g_idx' has g_idx[1] = 3; expected a group in 0..1");
  expect(errorOf(() => actOrderPermutation(Int32Array.from([0, 0, 0, 1]), 2, "f", "t")).message).toContain("puts 3 inputs in group 0; act-order groups hold 2");
});
