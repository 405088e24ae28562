// safetensors headers and the tensor index of a model directory. Only headers are read: the
// weights themselves are read by the native side straight from the file (vd_load_weight).
// Format: u64 little-endian header length N, N bytes of JSON, then the data; data_offsets in the
// JSON are relative to byte 8 + N.
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import { ModelDirError, zodToModelDirError } from "./errors.ts";

/** F8_E4M3: the e4m3fn codes of an FP8 checkpoint; I32: GPTQ's packed codes, zeros and g_idx. */
export type StDtype = "F32" | "F16" | "BF16" | "F8_E4M3" | "I32";
export const ST_DTYPE_BYTES: Record<StDtype, number> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, I32: 4 };

export interface TensorInfo {
  name: string;
  file: string; // absolute path
  dataOffset: number; // absolute byte offset of the first element in `file`
  dtype: StDtype;
  shape: number[];
}

export const INDEX_FILE = "model.safetensors.index.json";
// The reference implementation refuses headers above 100 MB; a larger length means a corrupt file.
const MAX_HEADER_BYTES = 100_000_000;

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.int().nonnegative()),
  data_offsets: z.tuple([z.int().nonnegative(), z.int().nonnegative()]),
});
type Entry = z.infer<typeof entrySchema> & { name: string };

function readExactly(fd: number, length: number, position: number): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

function readHeaderJson(path: string): { json: unknown; dataStart: number; fileSize: number } {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new ModelDirError(path, `cannot open safetensors file: ${(e as Error).message}`);
  }
  try {
    const fileSize = fstatSync(fd).size;
    const lenBytes = readExactly(fd, 8, 0);
    if (lenBytes.length < 8) throw new ModelDirError(path, `file is ${fileSize} bytes, too short for a safetensors header`);
    const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (headerLen < 2n || headerLen > BigInt(MAX_HEADER_BYTES) || 8n + headerLen > BigInt(fileSize)) {
      throw new ModelDirError(path, `header length ${headerLen} is not plausible for a file of ${fileSize} bytes`);
    }
    const n = Number(headerLen);
    const text = new TextDecoder().decode(readExactly(fd, n, 8));
    try {
      return { json: JSON.parse(text), dataStart: 8 + n, fileSize };
    } catch (e) {
      throw new ModelDirError(path, `safetensors header is not valid JSON: ${(e as Error).message}`);
    }
  } finally {
    closeSync(fd);
  }
}

function parseEntries(json: unknown, path: string): Entry[] {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new ModelDirError(path, "safetensors header is not a JSON object");
  }
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") continue;
    const parsed = entrySchema.safeParse(value);
    if (!parsed.success) throw zodToModelDirError(path, parsed.error, value, [name]);
    entries.push({ name, ...parsed.data });
  }
  return entries.sort((a, b) => a.data_offsets[0] - b.data_offsets[0]);
}

function toTensorInfo(e: Entry, path: string, dataStart: number): TensorInfo {
  if (!(e.dtype in ST_DTYPE_BYTES)) {
    throw new ModelDirError(path, `tensor '${e.name}' has dtype ${e.dtype}; supported: F32, F16, BF16, F8_E4M3, I32`);
  }
  const dtype = e.dtype as StDtype;
  const [begin, end] = e.data_offsets;
  const numel = e.shape.reduce((a, b) => a * b, 1);
  const expectedBytes = numel * ST_DTYPE_BYTES[dtype];
  if (end < begin || end - begin !== expectedBytes) {
    throw new ModelDirError(
      path,
      `tensor '${e.name}' (${dtype} [${e.shape.join(", ")}]) needs ${expectedBytes} bytes but data_offsets [${begin}, ${end}] give ${end - begin}`,
    );
  }
  return { name: e.name, file: path, dataOffset: dataStart + begin, dtype, shape: e.shape };
}

/** Reads and validates the header of one .safetensors file; never reads the tensor data. */
export function readSafetensorsHeader(path: string): TensorInfo[] {
  const abs = resolve(path);
  const { json, dataStart, fileSize } = readHeaderJson(abs);
  const infos: TensorInfo[] = [];
  let prevEnd = 0;
  let prevName = "";
  for (const e of parseEntries(json, abs)) {
    const info = toTensorInfo(e, abs, dataStart);
    const [begin, end] = e.data_offsets;
    if (begin < prevEnd) {
      throw new ModelDirError(abs, `tensor '${e.name}' data [${begin}, ${end}) overlaps tensor '${prevName}' (ends at ${prevEnd})`);
    }
    if (dataStart + end > fileSize) {
      throw new ModelDirError(
        abs,
        `file is truncated: tensor '${e.name}' runs to byte ${dataStart + end} but the file has ${fileSize} bytes`,
      );
    }
    prevEnd = end;
    prevName = e.name;
    infos.push(info);
  }
  return infos;
}

function addAll(into: Map<string, TensorInfo>, infos: TensorInfo[]): void {
  for (const t of infos) {
    const prev = into.get(t.name);
    if (prev) throw new ModelDirError(t.file, `tensor '${t.name}' is also in ${prev.file}`);
    into.set(t.name, t);
  }
}

const indexSchema = z.looseObject({ weight_map: z.record(z.string(), z.string()) });

function readIndexJson(indexPath: string): Record<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (e) {
    throw new ModelDirError(indexPath, `cannot read shard index: ${(e as Error).message}`);
  }
  const parsed = indexSchema.safeParse(json);
  if (!parsed.success) throw zodToModelDirError(indexPath, parsed.error, json);
  return parsed.data.weight_map;
}

function indexFromShardMap(dir: string, indexPath: string): Map<string, TensorInfo> {
  const weightMap = readIndexJson(indexPath);
  const tensors = new Map<string, TensorInfo>();
  for (const shard of new Set(Object.values(weightMap))) {
    const shardPath = join(dir, shard);
    if (!existsSync(shardPath)) {
      throw new ModelDirError(indexPath, `shard '${shard}' listed in weight_map is missing (${shardPath})`);
    }
    addAll(tensors, readSafetensorsHeader(shardPath));
  }
  for (const [name, shard] of Object.entries(weightMap)) {
    const info = tensors.get(name);
    if (!info || info.file !== resolve(dir, shard)) {
      throw new ModelDirError(indexPath, `weight_map puts tensor '${name}' in '${shard}' but that shard has no such tensor`);
    }
  }
  return tensors;
}

/** All tensors of a model directory: through model.safetensors.index.json if present, else every *.safetensors. */
export function indexTensors(dir: string): Map<string, TensorInfo> {
  const absDir = resolve(dir);
  const indexPath = join(absDir, INDEX_FILE);
  if (existsSync(indexPath)) return indexFromShardMap(absDir, indexPath);
  const files = readdirSync(absDir)
    .filter((f) => f.endsWith(".safetensors"))
    .sort();
  if (files.length === 0) throw new ModelDirError(absDir, `no *.safetensors files and no ${INDEX_FILE}`);
  const tensors = new Map<string, TensorInfo>();
  for (const f of files) addAll(tensors, readSafetensorsHeader(join(absDir, f)));
  return tensors;
}
