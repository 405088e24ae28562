// The checkpoint layouts of integer weights in plain TypeScript, written from the tools' published
// code (the oracle of the integer-weight tests, and the packers the quantizer scripts write with).
// GPTQ (AutoGPTQ): qweight i32 [K*bits/32, N] holds code (k, n) in word [k / per, n] at bits
// (k % per) * bits; qzeros i32 [G, N*bits/32] holds zero (g, n) in word [g, n / per] at bits
// (n % per) * bits, stored minus one in the "gptq" format; scales [G, N]; g_idx [K] the group of
// input k (k / group_size, or with act-order its rank in the quantization order / group_size).
// compressed-tensors pack-quantized (llm-compressor): weight_packed i32 [N, K*bits/32] holds code
// (n, k) in word [n, k / per] at bits (k % per) * bits; weight_zero_point i32 [ceil(N / per), G]
// holds zero (n, g) in word [n / per, g] at bits (n % per) * bits; weight_scale [N, G]. Both store
// codes unsigned: the signed value plus 2^(bits-1).
// AWQ (AutoAWQ's GEMM layout, 4-bit): qweight i32 [K, N/8] holds code (k, n) in word [k, n / 8],
// qzeros i32 [G, N/8] zero (g, n) in word [g, n / 8], at the nibble where AutoAWQ's order
// 0 2 4 6 1 3 5 7 put channel n % 8; zeros as they are; scales [G, N].

export interface IntLayer {
  bits: 4 | 8;
  groupSize: number; // the k of a group; the last group may be shorter
  n: number;
  k: number;
  codes: Uint8Array; // [n, k]: q in [0, 2^bits)
  zeros: Uint8Array; // [n, G]: the code that means 0 (as used, not as stored)
  scales: Float32Array; // [n, G]
  /** Act-order: the group of each input k ([k]); absent: k / groupSize. */
  gIdx?: Int32Array;
}

const groupOf = (l: IntLayer, c: number): number => (l.gIdx ? l.gIdx[c]! : Math.floor(c / l.groupSize));

export const groupsOf = (k: number, groupSize: number): number => Math.ceil(k / groupSize);

/** The layer's weights as f32 [n, k]: (q - zero) * scale. */
export function dequantizeInt(l: IntLayer): Float32Array {
  const G = groupsOf(l.k, l.groupSize), out = new Float32Array(l.n * l.k);
  for (let r = 0; r < l.n; r++)
    for (let c = 0; c < l.k; c++) {
      const g = r * G + groupOf(l, c);
      out[r * l.k + c] = Math.fround((l.codes[r * l.k + c]! - l.zeros[g]!) * l.scales[g]!);
    }
  return out;
}

/** qweight, qzeros (minus one when `minusOne`), scales [G, n] and g_idx, as a GPTQ checkpoint stores them. */
export function packGptq(l: IntLayer, minusOne = true): { qweight: Int32Array; qzeros: Int32Array; scales: Float32Array; gIdx: Int32Array } {
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
  return { qweight, qzeros, scales, gIdx: Int32Array.from({ length: l.k }, (_, c) => groupOf(l, c)) };
}

/** weight_packed, and weight_zero_point (for an asymmetric layer), as compressed-tensors stores them. */
export function packCompressed(l: IntLayer): { packed: Int32Array; zeroPoint: Int32Array } {
  const per = 32 / l.bits, G = groupsOf(l.k, l.groupSize), mask = (1 << l.bits) - 1;
  const packed = new Int32Array(l.n * (l.k / per)), zeroPoint = new Int32Array(Math.ceil(l.n / per) * G);
  for (let r = 0; r < l.n; r++)
    for (let c = 0; c < l.k; c++) packed[r * (l.k / per) + Math.floor(c / per)]! |= (l.codes[r * l.k + c]! & mask) << ((c % per) * l.bits);
  for (let r = 0; r < l.n; r++)
    for (let g = 0; g < G; g++) zeroPoint[Math.floor(r / per) * G + g]! |= (l.zeros[r * G + g]! & mask) << ((r % per) * l.bits);
  return { packed, zeroPoint };
}

/** AutoAWQ's packing order: nibble i of a word holds channel AWQ_ORDER[i] of its eight. */
const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];

/** qweight, qzeros and scales [G, n], as AutoAWQ's WQLinear_GEMM stores a 4-bit layer. */
export function packAwq(l: IntLayer): { qweight: Int32Array; qzeros: Int32Array; scales: Float32Array } {
  if (l.bits !== 4) throw new Error("AWQ's GEMM layout is 4-bit only");
  const G = groupsOf(l.k, l.groupSize), cols = l.n / 8;
  const qweight = new Int32Array(l.k * cols), qzeros = new Int32Array(G * cols), scales = new Float32Array(G * l.n);
  for (let col = 0; col < cols; col++)
    for (let i = 0; i < 8; i++) {
      const r = col * 8 + AWQ_ORDER[i]!;
      for (let c = 0; c < l.k; c++) qweight[c * cols + col]! |= (l.codes[r * l.k + c]! & 15) << (i * 4);
      for (let g = 0; g < G; g++) qzeros[g * cols + col]! |= (l.zeros[r * G + g]! & 15) << (i * 4);
    }
  for (let g = 0; g < G; g++) for (let r = 0; r < l.n; r++) scales[g * l.n + r] = l.scales[r * G + g]!;
  return { qweight, qzeros, scales };
}
