// The TypeScript mirrors of include/vllmd.h (constants, the dlopen table) read against the header
// itself, so that a change on one side without the other fails here rather than on a device.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { FFIType } from "bun:ffi";
import { EXPECTED_ABI_VERSION } from "./backend.ts";
import { vllmdSymbols } from "./ffi.ts";
import { ActQuant, Cap, DType, PackLayout, SP, Status } from "./types.ts";

const header = readFileSync("include/vllmd.h", "utf8").replace(/\/\*[\s\S]*?\*\//g, "");

function defines(prefix: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of header.matchAll(/^#define (VD_\w+) \(?(-?\d+)\)?/gm)) if (m[1]!.startsWith(prefix)) out.set(m[1]!, Number(m[2]));
  return out;
}

const mirror = (o: Record<string, number>, name: (k: string) => string): Map<string, number> =>
  new Map(Object.entries(o).map(([k, v]) => [name(k), v]));
const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

test("the ABI version, status codes, dtypes, sampling columns, pack layouts and act_quant modes match the header", () => {
  expect(defines("VD_ABI_VERSION").get("VD_ABI_VERSION")).toBe(EXPECTED_ABI_VERSION);
  const status = defines("VD_OK");
  for (const [k, v] of defines("VD_ERR_")) status.set(k, v);
  expect(mirror(Status, (k) => (k === "ok" ? "VD_OK" : `VD_ERR_${snake(k)}`))).toEqual(status);
  expect(mirror(DType, (k) => `VD_${snake(k)}`)).toEqual(
    new Map([...defines("VD_")].filter(([k]) => /^VD_(F32|F16|BF16|I32|FP8_E4M3)$/.test(k))),
  );
  expect(mirror(SP, (k) => `VD_SP_${snake(k)}`)).toEqual(defines("VD_SP_"));
  expect(mirror(PackLayout, (k) => `VD_PACK_${snake(k)}`)).toEqual(defines("VD_PACK_"));
  expect(mirror(ActQuant, (k) => `VD_ACT_QUANT_${snake(k)}`)).toEqual(defines("VD_ACT_QUANT_"));
  expect(mirror(Cap, (k) => `VD_CAP_${snake(k)}`)).toEqual(defines("VD_CAP_"));
});

test("every function of the header is in the dlopen table with as many arguments and its return type", () => {
  const fns = new Map<string, [number, number]>();
  for (const m of header.matchAll(/^(int32_t|const char \*)\s*(vd_\w+)\(([^)]*)\)/gm)) {
    const args = m[3]!.trim();
    fns.set(m[2]!, [args === "void" || args === "" ? 0 : args.split(",").length, m[1] === "int32_t" ? FFIType.i32 : FFIType.cstring]);
  }
  expect(fns.size).toBeGreaterThan(30);
  expect(new Map(Object.entries(vllmdSymbols).map(([name, s]) => [name, [s.args.length, s.returns]]))).toEqual(fns);
});
