// Rotary embedding frequencies. transformers computes them with float32 tensor arithmetic, and
// at long positions one float32 ulp of a frequency moves cos/sin by far more than 1e-6, so every
// step below rounds to float32 in the order torch evaluates the Python expression (a / tensor is
// tensor.reciprocal() * a in torch; tensor / scalar is a true division on CPU).
import type { ModelConfig } from "./config.ts";

const f32 = Math.fround;

/** 1 / theta^(2i/D) for i < D/2, as _compute_default_rope_parameters builds it in float32. */
function defaultInvFreq(theta: number, headDim: number): Float64Array {
  const out = new Float64Array(headDim / 2);
  const base = f32(theta);
  for (let i = 0; i < out.length; i++) {
    const exponent = f32((2 * i) / headDim);
    out[i] = f32(1 / f32(Math.pow(base, exponent)));
  }
  return out;
}

/**
 * Llama 3.1 scaling: high frequencies (wavelength < orig/high) kept, low ones (wavelength >
 * orig/low) divided by factor, the band between blended by how far orig/wavelength sits between
 * low and high.
 */
function llama3InvFreq(
  inv: Float64Array,
  s: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number },
): Float64Array {
  const factor = f32(s.factor);
  const orig = f32(s.originalMaxPositionEmbeddings);
  const low = f32(s.lowFreqFactor);
  const lowWavelen = f32(s.originalMaxPositionEmbeddings / s.lowFreqFactor);
  const highWavelen = f32(s.originalMaxPositionEmbeddings / s.highFreqFactor);
  const band = f32(s.highFreqFactor - s.lowFreqFactor);
  const twoPi = f32(2 * Math.PI);
  const out = new Float64Array(inv.length);
  for (let i = 0; i < inv.length; i++) {
    const f = inv[i]!;
    const wavelen = f32(f32(1 / f) * twoPi);
    const scaled = wavelen > lowWavelen ? f32(f / factor) : f;
    const smooth = f32(f32(f32(f32(1 / wavelen) * orig) - low) / band);
    const blended = f32(f32(f32(f32(1 - smooth) * scaled) / factor) + f32(smooth * scaled));
    const isMedium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
    out[i] = isMedium ? blended : scaled;
  }
  return out;
}

/** Inverse frequencies [headDim/2] with the config's rope scaling applied (values are float32-exact). */
export function ropeInvFreq(cfg: ModelConfig): Float64Array {
  const inv = defaultInvFreq(cfg.ropeTheta, cfg.headDim);
  const rope = cfg.rope;
  switch (rope.type) {
    case "default":
      return inv;
    case "linear": {
      const factor = f32(rope.factor);
      return inv.map((f) => f32(f / factor));
    }
    case "llama3":
      return llama3InvFreq(inv, rope);
  }
}

/**
 * f32 [maxPositions, headDim]: row p holds cos(p * f_i) for i < D/2, then sin(p * f_i), the layout
 * vd_rope_* expects. The angle is rounded to float32 as transformers' rotary forward computes it.
 */
export function ropeCosSinTable(cfg: ModelConfig, maxPositions: number): Float32Array {
  if (!Number.isInteger(maxPositions) || maxPositions < 0) {
    throw new RangeError(`maxPositions must be a non-negative integer, got ${maxPositions}`);
  }
  const inv = ropeInvFreq(cfg);
  const half = inv.length;
  const dim = 2 * half;
  const table = new Float32Array(maxPositions * dim);
  for (let p = 0; p < maxPositions; p++) {
    const row = p * dim;
    for (let i = 0; i < half; i++) {
      const angle = f32(p * inv[i]!);
      table[row + i] = Math.cos(angle);
      table[row + half + i] = Math.sin(angle);
    }
  }
  return table;
}
