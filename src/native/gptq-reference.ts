// GPTQ's tensor layout in plain TypeScript, written from AutoGPTQ's description (the oracle of the
// integer-weight tests, and the packer scripts/quantize-gptq.ts writes checkpoints with):
// qweight i32 [K*bits/32, N] holds code (k, n) in word [k / per, n] at bits (k % per) * bits;
// qzeros i32 [G, N*bits/32] holds zero (g, n) in word [g, n / per] at bits (n % per) * bits, stored
// minus one in the "gptq" format; scales [G, N]; g_idx[k] = k / group_size (no act-order).

export interface GptqLayer {
  bits: 4 | 8;
  groupSize: number; // the k of a group; the last group may be shorter
  n: number;
  k: number;
  codes: Uint8Array; // [n, k]: q in [0, 2^bits)
  zeros: Uint8Array; // [n, G]: the code that means 0 (as used, not as stored)
  scales: Float32Array; // [n, G]
}

export const groupsOf = (k: number, groupSize: number): number => Math.ceil(k / groupSize);

/** The layer's weights as f32 [n, k]: (q - zero) * scale. */
export function dequantizeGptq(l: GptqLayer): Float32Array {
  const G = groupsOf(l.k, l.groupSize), out = new Float32Array(l.n * l.k);
  for (let r = 0; r < l.n; r++)
    for (let c = 0; c < l.k; c++) {
      const g = r * G + Math.floor(c / l.groupSize);
      out[r * l.k + c] = Math.fround((l.codes[r * l.k + c]! - l.zeros[g]!) * l.scales[g]!);
    }
  return out;
}

/** qweight, qzeros (minus one when `minusOne`), scales [G, n] and g_idx, as a GPTQ checkpoint stores them. */
export function packGptq(l: GptqLayer, minusOne = true): { qweight: Int32Array; qzeros: Int32Array; scales: Float32Array; gIdx: Int32Array } {
  const per = 32 / l.bits, G = groupsOf(l.k, l.groupSize), mask = (1 << l.bits) - 1;
  const qweight = new Int32Array((l.k / per) * l.n), qzeros = new Int32Array((G * l.n) / per), scales = new Float32Array(G * l.n);
  for (let c = 0; c < l.k; c++)
    for (let r = 0; r < l.n; r++) qweight[Math.floor(c / per) * l.n + r]! |= (l.codes[r * l.k + c]! & mask) << ((c % per) * l.bits);
  for (let g = 0; g < G; g++)
    for (let r = 0; r < l.n; r++) {
      const z = (l.zeros[r * G + g]! - (minusOne ? 1 : 0)) & mask;
      qzeros[g * (l.n / per) + Math.floor(r / per)]! |= z << ((r % per) * l.bits);
      scales[g * l.n + r] = l.scales[r * G + g]!;
    }
  return { qweight, qzeros, scales, gIdx: Int32Array.from({ length: l.k }, (_, c) => Math.floor(c / l.groupSize)) };
}
