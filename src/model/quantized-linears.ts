// The linear layers of pre-quantized checkpoints: which tensors each format stores for a linear
// weight (checked before anything loads), and how those tensors become one Linear of vllmd's. The
// one place that knows the checkpoint formats; weights.ts and tensors.ts ask it.
import type { Backend, Buf, IntWeights } from "../native/types.ts";
import { DType, PackLayout } from "../native/types.ts";
import type { Awq, CheckpointQuantization, CompressedTensorsInt, Gptq } from "./checkpoint-quant.ts";
import { actOrderPermutation } from "./act-order.ts";
import { ModelDirError } from "./errors.ts";
import type { ExpectedTensor } from "./tensors.ts";
import type { Loader, Part } from "./weight-loader.ts";

/** What a quantized Linear holds besides its shape and bias. */
export type QuantizedWeight = { format: "fp8"; w: Buf; scale: Buf } | { format: "int"; w: IntWeights };

/** The tensor prefix of a linear's weight part: "...q_proj.weight" -> "...q_proj". */
const prefixOf = (weightName: string): string => weightName.replace(/\.weight$/, "");
const groupsOf = (k: number, groupSize: number | null): number => Math.ceil(k / (groupSize ?? k));

/**
 * The tensors that stand for the linear weight `name` of [n, k]: itself in a float or FP8
 * checkpoint (FP8's weight_scale, per channel or per tensor, is checked when loaded); the packed
 * codes, zeros and scales of an integer one.
 */
export function linearTensors(q: CheckpointQuantization | null, name: string, n: number, k: number): ExpectedTensor[] {
  if (q === null || q.method === "compressed-tensors" && q.format === "float-quantized") return [{ name, shape: [n, k] }];
  const pre = prefixOf(name), per = 32 / q.bits, G = groupsOf(k, q.groupSize);
  if (q.method === "gptq" || q.method === "awq") {
    return [
      { name: `${pre}.qweight`, shape: q.method === "gptq" ? [k / per, n] : [k, n / per] },
      { name: `${pre}.qzeros`, shape: [G, n / per] },
      { name: `${pre}.scales`, shape: [G, n] },
      ...(q.method === "gptq" && q.actOrder ? [{ name: `${pre}.g_idx`, shape: [k] }] : []),
    ];
  }
  return [
    { name: `${pre}.weight_packed`, shape: [n, k / per] },
    { name: `${pre}.weight_scale`, shape: [n, G] },
    ...(q.symmetric ? [] : [{ name: `${pre}.weight_zero_point`, shape: [Math.ceil(n / per), G] }]),
    ...(q.actOrder ? [{ name: `${pre}.weight_g_idx`, shape: [k] }] : []),
  ];
}

/**
 * The weight of a linear layer whose parts (q, k, v; gate, up; ...) stack by output rows, read
 * from a pre-quantized checkpoint; null when the checkpoint keeps this layer in floats.
 */
export function loadQuantizedLinear(be: Backend, ld: Loader, q: CheckpointQuantization | null, parts: Part[], n: number, k: number): QuantizedWeight | null {
  if (q?.method === "gptq" || q?.method === "awq") return { format: "int", w: repackedFromCheckpoint(be, ld, parts, k, q) };
  if (q?.method === "compressed-tensors" && q.format === "pack-quantized") return { format: "int", w: packedFromCheckpoint(be, ld, parts, k, q) };
  if (ld.tensor(parts[0]!.name).dtype === "F8_E4M3") return { format: "fp8", ...fp8FromCheckpoint(be, ld, parts, n) };
  return null;
}

/**
 * A compressed-tensors FP8 layer: the e4m3 parts as they are, and one f32 scale per output row,
 * from each part's weight_scale ([rows, 1] per channel, or one value per tensor, repeated).
 */
function fp8FromCheckpoint(be: Backend, ld: Loader, parts: Part[], n: number): { w: Buf; scale: Buf } {
  const w = ld.load(parts, DType.fp8E4m3);
  const scale = ld.alloc(n * 4);
  let row = 0;
  for (const p of parts) {
    const name = `${p.name}_scale`, t = ld.tensor(name);
    const rows = ld.rowsOnRank(p);
    const dst = be.view(scale, row * 4, rows * 4);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel === p.rows) ld.loadPart(dst, { name, rows: p.rows, cols: 1, shardDim: p.shardDim === 0 ? 0 : -1, shards: p.shards }, DType.f32);
    else if (numel === 1) be.copyFromHost(dst, 0, new Float32Array(rows).fill(ld.scalar(name)));
    else throw new ModelDirError(t.file, `tensor '${name}' has ${numel} values; expected ${p.rows} (per channel) or 1 (per tensor)`);
    row += rows;
  }
  return { w, scale };
}

function intWeights(ld: Loader, n: number, k: number, bits: 4 | 8, groupSize: number | null, kPerm: Buf | undefined): IntWeights {
  const G = groupsOf(k, groupSize);
  return { w: ld.alloc(n * ((k * bits) / 32) * 4), scales: ld.alloc(n * G * 4), zeros: ld.alloc(n * G * 4), bits, groupSize: groupSize ?? k, kPerm };
}

/** Rows [row, row + r) of `w`: where one part's output rows go. */
function rowsOf(be: Backend, w: IntWeights, row: number, r: number, k: number): IntWeights {
  const words = (k * w.bits) / 32, G = groupsOf(k, w.groupSize);
  return {
    ...w, w: be.view(w.w, row * words * 4, r * words * 4),
    scales: be.view(w.scales, row * G * 4, r * G * 4), zeros: be.view(w.zeros, row * G * 4, r * G * 4),
  };
}

/**
 * How a layer's parts are cut across ranks: column-parallel (shardDim 0) gives each rank a share of
 * every part's output rows and all of k; row-parallel (shardDim 1, one part) all output rows and a
 * share of k. `at(dimOfN)` is the Part that reads the share of a checkpoint tensor whose dimension
 * `dimOfN` (0 or 1) runs along n, the other along k (or its groups, or its packed words).
 */
interface IntShard {
  rowParallel: boolean;
  kLocal: number;
  at(name: string, rows: number, cols: number, dimOfN: 0 | 1, p: Part, oneGroup?: boolean): Part;
}

function intShard(be: Backend, ld: Loader, parts: Part[], k: number, q: { bits: 4 | 8; groupSize: number | null }, what: string, actOrder: boolean): IntShard {
  const tp = be.tp, rowParallel = parts[0]!.shardDim === 1, per = 32 / q.bits, kLocal = rowParallel ? k / tp : k;
  const refuse = (why: string) => {
    throw new ModelDirError("config.json", `${what} checkpoint with --tensor-parallel-size ${tp}: ${why}`);
  };
  if (tp > 1 && rowParallel) {
    if (actOrder) refuse(`act-order (desc_act / actorder) layers split along their inputs (${prefixOf(parts[0]!.name)}) cannot keep their groups together on each rank; use a checkpoint without act-order`);
    if (!Number.isInteger(kLocal) || kLocal % per !== 0) refuse(`${prefixOf(parts[0]!.name)}'s ${k} inputs do not split into whole ${per}-code words per rank`);
    if (q.groupSize !== null && kLocal % q.groupSize !== 0) refuse(`${prefixOf(parts[0]!.name)}'s ${k} inputs do not split into whole groups of ${q.groupSize} (group_size) per rank`);
  }
  if (tp > 1 && !rowParallel)
    for (const p of parts) {
      const local = ld.rowsOnRank(p);
      if (!Number.isInteger(local) || local % per !== 0) refuse(`${prefixOf(p.name)}'s ${p.rows} outputs do not split into whole ${per}-code words per rank`);
    }
  return {
    rowParallel, kLocal,
    // Row-parallel: cut along k unless one group spans the row (its scale and zero then go to every rank).
    at: (name, rows, cols, dimOfN, p, oneGroup = false): Part =>
      rowParallel ? { name, rows, cols, shardDim: oneGroup ? -1 : dimOfN === 0 ? 1 : 0 } : { name, rows, cols, shardDim: dimOfN, shards: p.shards },
  };
}

/**
 * One vd_gemm_int weight whose rows are the parts' rows on this rank, stacked; `fill` writes one
 * part's rows (r of them, this rank's) from the tensors under its prefix, cut as `shard` says.
 */
function intFromParts(be: Backend, ld: Loader, parts: Part[], k: number, q: { bits: 4 | 8; groupSize: number | null }, what: string,
  fill: (rows: IntWeights, prefix: string, r: number, p: Part, shard: IntShard) => void, kPerm?: Buf): IntWeights {
  const shard = intShard(be, ld, parts, k, q, what, kPerm !== undefined);
  const w = intWeights(ld, parts.reduce((s, p) => s + ld.rowsOnRank(p), 0), shard.kLocal, q.bits, q.groupSize, kPerm);
  let row = 0;
  for (const p of parts) {
    const r = ld.rowsOnRank(p);
    fill(rowsOf(be, w, row, r, shard.kLocal), prefixOf(p.name), r, p, shard);
    row += r;
  }
  return w;
}

/**
 * Act-order's permutation of a layer's inputs (from GPTQ's g_idx or compressed-tensors'
 * weight_g_idx), on the device, or undefined when there is none. The parts read one input, so the
 * quantizer gave them one order (from that input's Hessian); parts that disagree cannot run as one
 * GEMM and are refused.
 */
function actOrderOf(be: Backend, ld: Loader, parts: Part[], groupSize: number, tensor: "g_idx" | "weight_g_idx"): Buf | undefined {
  const [first, ...rest] = parts.map((p) => `${prefixOf(p.name)}.${tensor}`);
  const gIdx = ld.readI32(first!);
  for (const name of rest) {
    const other = ld.readI32(name);
    if (other.some((g, c) => g !== gIdx[c])) throw new ModelDirError(ld.tensor(name).file, `tensor '${name}' differs from '${first}': layers that read one input must share act-order`);
  }
  const perm = actOrderPermutation(gIdx, groupSize, ld.tensor(first!).file, first!);
  if (!perm) return undefined;
  const buf = ld.alloc(perm.byteLength);
  be.copyFromHost(buf, 0, perm);
  return buf;
}

/**
 * A GPTQ or AWQ layer: each part's qweight, qzeros and scales read as the checkpoint has them and
 * repacked on the device (vd_repack_int) into its rows of one vd_gemm_int weight, each group's
 * codes together in act-order's permutation when GPTQ's g_idx has one.
 */
function repackedFromCheckpoint(be: Backend, ld: Loader, parts: Part[], k: number, q: Gptq | Awq): IntWeights {
  const per = 32 / q.bits, G = groupsOf(k, q.groupSize);
  const layout = q.method === "awq" ? PackLayout.awq : q.zerosMinusOne ? PackLayout.gptq : PackLayout.gptqV2;
  const oneGroup = q.groupSize === null;
  return intFromParts(be, ld, parts, k, q, q.method === "awq" ? "AWQ" : "GPTQ", (rows, pre, r, p, shard) => {
    const n = p.rows; // the checkpoint's tensors are whole; `shard` reads this rank's share
    const qweight = ld.load([q.method === "awq" ? shard.at(`${pre}.qweight`, k, n / per, 1, p) : shard.at(`${pre}.qweight`, k / per, n, 1, p)], DType.i32);
    const qzeros = ld.load([shard.at(`${pre}.qzeros`, G, n / per, 1, p, oneGroup)], DType.i32);
    const scales = ld.load([shard.at(`${pre}.scales`, G, n, 1, p, oneGroup)], DType.f32);
    be.repackInt(rows, { qweight, qzeros, scales, scaleDtype: DType.f32 }, r, shard.kLocal, layout);
    for (const b of [qweight, qzeros, scales]) ld.free(b);
  }, q.method === "gptq" && q.actOrder ? actOrderOf(be, ld, parts, q.groupSize ?? k, "g_idx") : undefined);
}

/**
 * A compressed-tensors pack-quantized layer: weight_packed is vd_gemm_int's layout already (codes
 * packed along k, little-endian), so it loads as it is, or with act-order ("group") is reordered
 * into its positions on the device; weight_scale becomes f32; the zeros are the storage offset
 * 2^(bits-1) for a symmetric layer, else weight_zero_point unpacked along n. Scales and zeros
 * belong to groups, not positions, so act-order leaves them as they are.
 */
function packedFromCheckpoint(be: Backend, ld: Loader, parts: Part[], k: number, q: CompressedTensorsInt): IntWeights {
  const per = 32 / q.bits, G = groupsOf(k, q.groupSize);
  const kPerm = q.actOrder ? actOrderOf(be, ld, parts, q.groupSize ?? k, "weight_g_idx") : undefined;
  if (!q.symmetric && be.tp > 1) // its zero points are unpacked on the host, which uploads one copy to every rank
    throw new ModelDirError("config.json", `compressed-tensors pack-quantized with zero points (symmetric: false) and --tensor-parallel-size ${be.tp} is not supported yet`);
  const oneGroup = q.groupSize === null;
  return intFromParts(be, ld, parts, k, q, "compressed-tensors pack-quantized", (rows, pre, r, p, shard) => {
    const n = p.rows, Gl = groupsOf(shard.kLocal, q.groupSize);
    const codes = shard.at(`${pre}.weight_packed`, n, k / per, 0, p);
    if (kPerm) repackRows(be, ld, rows, codes, r, shard.kLocal, Gl);
    else ld.loadPart(rows.w, codes, DType.i32);
    ld.loadPart(rows.scales, shard.at(`${pre}.weight_scale`, n, G, 0, p, oneGroup), DType.f32);
    const zeros = q.symmetric ? new Float32Array(r * Gl).fill(2 ** (q.bits - 1)) : unpackZeroPoints(ld.readI32(`${pre}.weight_zero_point`), r, Gl, q.bits);
    be.copyFromHost(rows.zeros, 0, zeros);
  }, kPerm);
}

/**
 * weight_packed's codes into act-order's positions (vd_repack_int, layout rows); the scales and
 * zeros it writes from its placeholder inputs are the caller's to overwrite.
 */
function repackRows(be: Backend, ld: Loader, rows: IntWeights, codes: Part, r: number, k: number, G: number): void {
  const qweight = ld.load([codes], DType.i32), zeroWords = (G * r * rows.bits) / 32;
  const qzeros = ld.alloc(zeroWords * 4), scales = ld.alloc(G * r * 4);
  be.copyFromHost(qzeros, 0, new Int32Array(zeroWords));
  be.copyFromHost(scales, 0, new Float32Array(G * r));
  be.repackInt(rows, { qweight, qzeros, scales, scaleDtype: DType.f32 }, r, k, PackLayout.rows);
  for (const b of [qweight, qzeros, scales]) ld.free(b);
}

/** weight_zero_point i32 [ceil(n / per), G], packed along n (code j of word [i, g] is row i*per + j), as f32 [n, G]. */
export function unpackZeroPoints(packed: Int32Array, n: number, G: number, bits: 4 | 8): Float32Array {
  const per = 32 / bits, mask = (1 << bits) - 1, out = new Float32Array(n * G);
  for (let r = 0; r < n; r++)
    for (let g = 0; g < G; g++) out[r * G + g] = (packed[Math.floor(r / per) * G + g]! >>> ((r % per) * bits)) & mask;
  return out;
}
