// A linear layer as the forward pass asks for it, out[M, n] = x[M, k] · Wᵀ (+ b), whatever format
// its weights are kept in. The loader (weights.ts) builds each Linear; llama.ts only calls
// runLinear, so a new weight format is a new case here and in the loader, not in the model.
import { ActQuant, type Backend, type Buf, type DType, type IntWeights } from "../native/types.ts";

/**
 * The weight formats a Linear may hold; "fp8": e4m3 codes with one f32 scale per output row;
 * "int": 4- or 8-bit codes with a scale and zero per group of inputs (GPTQ, repacked at load).
 */
export type WeightFormat = "dense" | "fp8" | "int";

interface LinearShape {
  n: number; // output features on this rank
  k: number; // input features on this rank
  bias: Buf; // [n], or 0
}

export type Linear =
  | (LinearShape & { format: "dense"; w: Buf; dtype: DType }) // w [n, k] and bias of dtype
  | (LinearShape & { format: "fp8"; w: Buf; scale: Buf }) // w e4m3 [n, k], scale f32 [n], bias of the activation dtype
  | (LinearShape & { format: "int"; w: IntWeights }); // vd_gemm_int's layout, bias of the activation dtype

/**
 * FP8 layers quantize their activations per token (W8A8, as vLLM runs FP8 checkpoints) from this
 * many rows on, when LinearMode.w8a8 says so (by default where Backend.fastW8a8): below it the
 * weight-only GEMV streams the codes at memory speed and quantizing x would only add a launch.
 * An 8B's decode step on an H200 (bench/decode-table.ts, fp8 against fp8:wo): 4.80 ms weight-only
 * against 6.40 W8A8 at 3 rows, 7.52 against 6.50 at 4.
 */
export const W8A8_MIN_ROWS = 4;

/** How the forward pass runs its linears: the activations' dtype, and whether FP8 ones may be W8A8. */
export interface LinearMode {
  act: DType;
  w8a8: boolean;
}

/** out[m, n] = x[m, k] · Wᵀ (+ bias), x and out of `mode.act`. */
export function runLinear(be: Backend, l: Linear, out: Buf, x: Buf, m: number, mode: LinearMode): void {
  const act = mode.act;
  if (l.format === "fp8") be.gemmFp8(out, x, l.w, l.scale, l.bias, m, l.n, l.k, act, mode.w8a8 && m >= W8A8_MIN_ROWS ? ActQuant.fp8Row : ActQuant.none);
  else if (l.format === "int") be.gemmInt(out, x, l.w, l.bias, m, l.n, l.k, act);
  else be.gemm(out, x, l.w, l.bias, m, l.n, l.k, act, l.dtype);
}
