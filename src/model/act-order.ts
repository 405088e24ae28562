// GPTQ's act-order (desc_act): groups are formed along the order the inputs were quantized in, and
// g_idx records each input's group. vllmd keeps each group's codes together (vd_repack_int with a
// k_perm) and lets vd_gemm_int read the inputs through the same permutation.
import { ModelDirError } from "./errors.ts";

/**
 * The code order for g_idx: the inputs sorted by group, ties in input order. Null when that is
 * 0..k-1 (g_idx = k / group_size, nothing to permute). Every group must hold group_size inputs
 * (the last one what is left), as GPTQ writes them; anything else is refused by tensor name.
 */
export function actOrderPermutation(gIdx: Int32Array, groupSize: number, file: string, tensor: string): Int32Array | null {
  const k = gIdx.length, G = Math.ceil(k / groupSize), counts = new Int32Array(G);
  for (let c = 0; c < k; c++) {
    const g = gIdx[c]!;
    if (g < 0 || g >= G) throw new ModelDirError(file, `tensor '${tensor}' has g_idx[${c}] = ${g}; expected a group in 0..${G - 1}`);
    counts[g]!++;
  }
  const bad = counts.findIndex((n, g) => n !== Math.min(groupSize, k - g * groupSize));
  if (bad >= 0) throw new ModelDirError(file, `tensor '${tensor}' puts ${counts[bad]} inputs in group ${bad}; act-order groups hold ${groupSize}`);
  const starts = new Int32Array(G);
  for (let g = 1; g < G; g++) starts[g] = starts[g - 1]! + counts[g - 1]!;
  const perm = new Int32Array(k);
  for (let c = 0; c < k; c++) perm[starts[gIdx[c]!]!++] = c;
  return perm.every((v, j) => v === j) ? null : perm;
}
