import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode, writeRawSafetensors, writeSafetensors, writeTinyModelDir } from "../../test/helpers/model-dir-writer.ts";
import { ModelDirError } from "./errors.ts";
import { indexTensors, readSafetensorsHeader } from "./safetensors.ts";
import { errorOf } from "./testing.ts";

const root = mkdtempSync(join(tmpdir(), "vllmd-st-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const fresh = (name: string): string => {
  const dir = join(root, `${counter++}`);
  mkdirSync(dir);
  return join(dir, name);
};


const values = (n: number, scale: number) => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);

describe("readSafetensorsHeader", () => {
  test("reads names, dtypes, shapes and absolute offsets that point at the data", () => {
    const path = fresh("a.safetensors");
    const tensors = [
      { name: "w", dtype: "F32" as const, shape: [2, 3], data: values(6, 0.5) },
      { name: "h", dtype: "F16" as const, shape: [4], data: values(4, 0.25) },
      { name: "b", dtype: "BF16" as const, shape: [3, 1], data: values(3, 2) },
    ];
    writeSafetensors(path, tensors);
    const infos = readSafetensorsHeader(path);
    const bytes = new Uint8Array(readFileSync(path));
    expect(infos.map((t) => t.name)).toEqual(["w", "h", "b"]); // in data order
    for (const t of tensors) {
      const info = infos.find((i) => i.name === t.name)!;
      expect(info).toMatchObject({ dtype: t.dtype, shape: t.shape, file: path });
      const size = t.data.length * (t.dtype === "F32" ? 4 : 2);
      const read = decode(bytes.subarray(info.dataOffset, info.dataOffset + size), t.dtype);
      expect(Array.from(read)).toEqual(Array.from(t.data)); // these values are exact in every dtype
    }
  });

  test("a scalar and an empty tensor are fine", () => {
    const path = fresh("s.safetensors");
    writeRawSafetensors(path, { s: { dtype: "F32", shape: [], data_offsets: [0, 4] }, e: { dtype: "F16", shape: [0, 5], data_offsets: [4, 4] } }, new Uint8Array(4));
    expect(readSafetensorsHeader(path).map((t) => [t.name, t.shape])).toEqual([["s", []], ["e", [0, 5]]]);
  });

  test("a truncated file names the tensor that runs past the end", () => {
    const path = fresh("t.safetensors");
    writeSafetensors(path, [
      { name: "first", dtype: "F32", shape: [4], data: values(4, 1) },
      { name: "second", dtype: "F32", shape: [8], data: values(8, 1) },
    ]);
    truncateSync(path, statSync(path).size - 4);
    const err = errorOf(() => readSafetensorsHeader(path));
    expect(err.file).toBe(path);
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/truncated: tensor 'second' runs to byte \d+ but the file has \d+ bytes/);
  });

  test("an unsupported dtype names the tensor and the dtype", () => {
    const path = fresh("i8.safetensors");
    writeRawSafetensors(path, { "model.q.weight": { dtype: "I8", shape: [4], data_offsets: [0, 4] } }, new Uint8Array(4));
    expect(errorOf(() => readSafetensorsHeader(path)).message).toMatch(/i8\.safetensors: tensor 'model\.q\.weight' has dtype I8/);
  });

  const malformed: [string, (path: string) => void, RegExp][] = [
    ["too short for a header", (p) => writeFileSync(p, new Uint8Array(5)), /too short/],
    ["absurd header length", (p) => writeFileSync(p, new Uint8Array([255, 255, 255, 255, 255, 255, 255, 127, 0])), /header length \d+ is not plausible/],
    ["header not JSON", (p) => {
      const b = new Uint8Array(8 + 8);
      b[0] = 8;
      b.set(new TextEncoder().encode("{nope!!!"), 8);
      writeFileSync(p, b);
    }, /not valid JSON/],
    ["byte length disagrees with shape", (p) => writeRawSafetensors(p, { x: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), /tensor 'x' \(F32 \[3\]\) needs 12 bytes/],
    ["overlapping tensors", (p) => writeRawSafetensors(p, {
      x: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      y: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, new Uint8Array(12)), /tensor 'y'.*overlaps tensor 'x'/],
    ["bad entry", (p) => writeRawSafetensors(p, { x: { dtype: "F32", shape: [-1], data_offsets: [0, 0] } }, new Uint8Array(0)), /field 'x.shape\[0\]'/],
  ];
  test.each(malformed)("%s", (_name, write, pattern) => {
    const path = fresh("bad.safetensors");
    write(path);
    const err = errorOf(() => readSafetensorsHeader(path));
    expect(err.file).toBe(path);
    expect(err.message).toMatch(pattern);
  });

  test("a file that does not exist", () => {
    expect(errorOf(() => readSafetensorsHeader(join(root, "nope.safetensors"))).message).toMatch(/nope\.safetensors: cannot open/);
  });
});

describe("indexTensors", () => {
  test("sharded through the index and unsharded give the same tensors", () => {
    const one = writeTinyModelDir(join(root, "one"));
    const three = writeTinyModelDir(join(root, "three"), {}, { shards: 3 });
    expect(three.files.length).toBe(3);
    const a = indexTensors(one.dir);
    const b = indexTensors(three.dir);
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    expect(new Set([...b.values()].map((t) => t.file)).size).toBe(3);
    for (const [name, t] of a) expect(b.get(name)!.shape).toEqual(t.shape);
  });

  test("every *.safetensors file is read when there is no index", () => {
    const m = writeTinyModelDir(join(root, "noindex"), {}, { shards: 2 });
    unlinkSync(join(m.dir, "model.safetensors.index.json"));
    expect(indexTensors(m.dir).size).toBe(m.tensors.size);
  });

  test("a shard listed in the index but missing is named, with the index", () => {
    const m = writeTinyModelDir(join(root, "lost"), {}, { shards: 2 });
    unlinkSync(join(m.dir, m.files[1]!));
    const err = errorOf(() => indexTensors(m.dir));
    expect(err.file).toBe(join(m.dir, "model.safetensors.index.json"));
    expect(err.message).toContain(`shard '${m.files[1]}' listed in weight_map is missing`);
  });

  test("an index entry pointing at the wrong shard", () => {
    const m = writeTinyModelDir(join(root, "wrongmap"), {}, { shards: 2 });
    const indexPath = join(m.dir, "model.safetensors.index.json");
    const index = JSON.parse(readFileSync(indexPath, "utf8"));
    index.weight_map["model.embed_tokens.weight"] = m.files[1];
    writeFileSync(indexPath, JSON.stringify(index));
    expect(errorOf(() => indexTensors(m.dir)).message).toMatch(/'model.embed_tokens.weight' in '.*00002-of-00002.safetensors' but that shard has no such tensor/);
  });

  test("a tensor in two files", () => {
    const dir = join(root, "dup");
    mkdirSync(dir);
    for (const f of ["a.safetensors", "b.safetensors"]) writeSafetensors(join(dir, f), [{ name: "x", dtype: "F32", shape: [1], data: values(1, 1) }]);
    expect(errorOf(() => indexTensors(dir)).message).toMatch(/b\.safetensors: tensor 'x' is also in .*a\.safetensors/);
  });

  test("a directory without weights", () => {
    const dir = join(root, "empty");
    mkdirSync(dir);
    expect(errorOf(() => indexTensors(dir)).message).toMatch(/empty: no \*\.safetensors files/);
  });
});
