// Writing safetensors files, and reading a tensor's raw bytes back: what the quantizer scripts
// (scripts/quantize-*.ts) and the tests' model writers share. The format is the reference writer's: an 8-byte little-endian header
// length, the JSON header padded to 8 bytes, then the tensors' bytes in header order.
import { closeSync, openSync, readSync, writeFileSync } from "node:fs";
import type { StDtype, TensorInfo } from "./safetensors.ts";

export interface RawTensor {
  name: string;
  dtype: StDtype;
  shape: number[];
  bytes: Uint8Array; // row-major, as stored
}

/** Writes any header (even an invalid one) followed by `data`: tests of malformed files use it too. */
export function writeRawSafetensors(path: string, header: Record<string, unknown>, data: Uint8Array): void {
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
  writeFileSync(path, out);
}

export function writeSafetensorsFile(path: string, tensors: RawTensor[]): void {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  const data = new Uint8Array(offset);
  let at = 0;
  for (const t of tensors) {
    data.set(t.bytes, at);
    at += t.bytes.length;
  }
  writeRawSafetensors(path, header, data);
}

/** A tensor's stored bytes, read from its file. */
export function readTensorBytes(t: TensorInfo, bytesPerElement: number): Uint8Array {
  const out = new Uint8Array(t.shape.reduce((a, b) => a * b, 1) * bytesPerElement);
  const fd = openSync(t.file, "r");
  try {
    readSync(fd, out, 0, out.length, t.dataOffset);
  } finally {
    closeSync(fd);
  }
  return out;
}

/** A float tensor's stored bytes as f32 values. */
export function decodeFloats(bytes: Uint8Array, dtype: "F32" | "F16" | "BF16"): Float32Array {
  const copy = bytes.slice().buffer;
  if (dtype === "F32") return new Float32Array(copy);
  if (dtype === "F16") return new Float32Array(new Float16Array(copy));
  return new Float32Array(Uint32Array.from(new Uint16Array(copy), (b) => b << 16).buffer);
}

/** f32 values as a float dtype's bytes (bf16 rounded to nearest even, NaN kept a NaN). */
export function encodeFloats(data: Float32Array, dtype: "F32" | "F16" | "BF16"): Uint8Array {
  if (dtype === "F32") return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  if (dtype === "F16") return new Uint8Array(new Float16Array(data).buffer);
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const b = bits[i]!;
    const isNan = (b & 0x7fffffff) > 0x7f800000;
    out[i] = isNan ? 0x7fc0 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return new Uint8Array(out.buffer);
}
