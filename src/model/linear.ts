// A linear layer as the forward pass asks for it, out[M, n] = x[M, k] · Wᵀ (+ b), whatever format
// its weights are kept in. The loader (weights.ts) builds each Linear; llama.ts only calls
// runLinear, so a new weight format is a new case here and in the loader, not in the model.
import type { Backend, Buf, DType, IntWeights } from "../native/types.ts";

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

/** out[m, n] = x[m, k] · Wᵀ (+ bias), x and out of `act`. */
export function runLinear(be: Backend, l: Linear, out: Buf, x: Buf, m: number, act: DType): void {
  if (l.format === "fp8") be.gemmFp8(out, x, l.w, l.scale, l.bias, m, l.n, l.k, act);
  else if (l.format === "int") be.gemmInt(out, x, l.w, l.bias, m, l.n, l.k, act);
  else be.gemm(out, x, l.w, l.bias, m, l.n, l.k, act, l.dtype);
}
