// The linear layers of pre-quantized checkpoints, as weights.ts asks for them: the tensors of each
// part (q, k, v; gate, up; ...) in the checkpoint's layout, made into one Linear of vllmd's.
import type { Backend, Buf, IntWeights } from "../native/types.ts";
import { DType } from "../native/types.ts";
import type { Gptq } from "./checkpoint-quant.ts";
import { ModelDirError } from "./errors.ts";
import type { Loader, Part } from "./weight-loader.ts";

/**
 * A compressed-tensors FP8 layer: the e4m3 parts as they are, and one f32 scale per output row,
 * from each part's weight_scale ([rows, 1] per channel, or one value per tensor, repeated).
 */
export function fp8FromCheckpoint(be: Backend, ld: Loader, parts: Part[], n: number): { w: Buf; scale: Buf } {
  const w = ld.load(parts, DType.fp8E4m3);
  const scale = ld.alloc(n * 4);
  let row = 0;
  for (const p of parts) {
    const name = `${p.name}_scale`, t = ld.tensor(name);
    const rows = p.shardDim === 0 ? p.rows / be.tp : p.rows; // output rows of this part on this rank
    const dst = be.view(scale, row * 4, rows * 4);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel === p.rows) ld.loadPart(dst, { name, rows: p.rows, cols: 1, shardDim: p.shardDim === 0 ? 0 : -1 }, DType.f32);
    else if (numel === 1) be.copyFromHost(dst, 0, new Float32Array(rows).fill(ld.scalar(name)));
    else throw new ModelDirError(t.file, `tensor '${name}' has ${numel} values; expected ${p.rows} (per channel) or 1 (per tensor)`);
    row += rows;
  }
  return { w, scale };
}


/** The tensor prefix of a linear's weight part: "...q_proj.weight" -> "...q_proj". */
const prefixOf = (weightName: string): string => weightName.replace(/\.weight$/, "");

/**
 * A GPTQ layer: each part's qweight, qzeros and scales read as the checkpoint has them and
 * repacked on the device into its rows of one vd_gemm_int weight (g_idx is k / group_size: the
 * config refuses act-order). The parts' outputs stack, as they do for dense weights.
 */
export function gptqFromCheckpoint(be: Backend, ld: Loader, parts: Part[], k: number, q: Gptq): IntWeights {
  if (be.tp > 1) throw new ModelDirError("config.json", "GPTQ checkpoints with --tensor-parallel-size > 1 are not supported yet");
  const per = 32 / q.bits, groupSize = q.groupSize ?? k, G = Math.ceil(k / groupSize);
  const n = parts.reduce((s, p) => s + p.rows, 0);
  const w: IntWeights = { w: ld.alloc(n * (k / per) * 4), scales: ld.alloc(n * G * 4), zeros: ld.alloc(n * G * 4), bits: q.bits, groupSize };
  let row = 0;
  for (const p of parts) {
    const pre = prefixOf(p.name), r = p.rows;
    const qweight = ld.load([{ name: `${pre}.qweight`, rows: k / per, cols: r, shardDim: -1 }], DType.i32);
    const qzeros = ld.load([{ name: `${pre}.qzeros`, rows: G, cols: r / per, shardDim: -1 }], DType.i32);
    const scales = ld.load([{ name: `${pre}.scales`, rows: G, cols: r, shardDim: -1 }], DType.f32);
    const rows: IntWeights = {
      ...w, w: be.view(w.w, row * (k / per) * 4, r * (k / per) * 4),
      scales: be.view(w.scales, row * G * 4, r * G * 4), zeros: be.view(w.zeros, row * G * 4, r * G * 4),
    };
    be.repackGptq(rows, { qweight, qzeros, scales, scaleDtype: DType.f32 }, r, k, q.zerosMinusOne);
    for (const b of [qweight, qzeros, scales]) ld.free(b);
    row += r;
  }
  return w;
}
