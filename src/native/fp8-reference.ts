// FP8 e4m3fn in plain TypeScript, written from the format's definition rather than from
// common/fp8.h, as the oracle of the quantization tests: decoding by formula, encoding by nearest
// code (ties to the even code, saturating at 448).

/** The value of an e4m3fn code (NaN for S.1111.111). */
export function fp8Decode(b: number): number {
  const sign = b & 0x80 ? -1 : 1, e = (b >> 3) & 0xf, m = b & 7;
  if (e === 0xf && m === 7) return NaN;
  return sign * (e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
}

// Codes 0 .. 0x7e are every finite non-negative value, in increasing order.
const POSITIVE = Float64Array.from({ length: 0x7f }, (_, b) => fp8Decode(b));

/** The nearest code to v (ties to the even code), +-448 beyond the range. */
export function fp8Encode(v: number): number {
  if (Number.isNaN(v)) return 0x7f;
  const a = Math.min(Math.abs(v), 448);
  let lo = 0, hi = 0x7e; // the largest code whose value is <= a, by bisection
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (POSITIVE[mid]! <= a) lo = mid;
    else hi = mid - 1;
  }
  let best = lo;
  if (lo < 0x7e) {
    const below = a - POSITIVE[lo]!, above = POSITIVE[lo + 1]! - a;
    if (above < below || (above === below && (lo & 1) === 1)) best = lo + 1;
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
