// FP8 e4m3fn in plain TypeScript, written from the format's definition rather than from
// common/fp8.h, as the oracle of the quantization tests: decoding by formula, encoding by nearest
// code (ties to the even code, saturating at 448).

/** The value of an e4m3fn code (NaN for S.1111.111). */
export function fp8Decode(b: number): number {
  const sign = b & 0x80 ? -1 : 1, e = (b >> 3) & 0xf, m = b & 7;
  if (e === 0xf && m === 7) return NaN;
  return sign * (e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
}

const POSITIVE = Array.from({ length: 0x7f }, (_, b) => b); // 0 .. 0x7e: every finite non-negative code

/** The nearest code to v (ties to the even code), +-448 beyond the range. */
export function fp8Encode(v: number): number {
  if (Number.isNaN(v)) return 0x7f;
  const a = Math.min(Math.abs(v), 448);
  let best = 0;
  for (const b of POSITIVE) {
    const d = Math.abs(fp8Decode(b) - a), db = Math.abs(fp8Decode(best) - a);
    if (d < db || (d === db && (b & 1) === 0 && (best & 1) === 1)) best = b;
  }
  return v < 0 || Object.is(v, -0) ? best | 0x80 : best;
}

/** vd_quantize_fp8's contract for one row: the scale (absmax / 448, 1 for zeros) and the codes. */
export function quantizeRow(row: ArrayLike<number>): { scale: number; codes: Uint8Array } {
  let absmax = 0;
  for (let i = 0; i < row.length; i++) absmax = Math.max(absmax, Math.abs(row[i]!));
  const scale = absmax > 0 ? Math.fround(Math.fround(absmax) / 448) : 1;
  return { scale, codes: Uint8Array.from(row, (v) => fp8Encode(Math.fround(Math.fround(v) / scale))) };
}
