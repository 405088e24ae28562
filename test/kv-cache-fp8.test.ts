// --kv-cache-dtype fp8 end to end on the cpu backend (the reference the GPU kernels will be checked
// against): keys and values stored as e4m3, four times the f32 cache's blocks in the same bytes,
// the built-in model's perplexity within 1% of the f32 cache's, a cached e4m3 prefix read back
// with chunked prefill; the flag's values checked by name.
import { describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseEngineConfig } from "../src/config.ts";
import { engineConfigFrom } from "../src/commands/args.ts";
import { checkKvCacheDtype } from "../src/engine/engine.ts";
import { type Backend, DType } from "../src/native/types.ts";
import { makeEngine, runToCompletion } from "./helpers/engine-run.ts";
import { writeSafetensors } from "./helpers/model-dir-writer.ts";
import { calibrationWindows, writeFp8Checkpoint } from "../scripts/quantize-fp8.ts";
import { loadModelDir } from "../src/model/model-dir.ts";

const model = "models/default";
const budget = { cpuKvCacheBytes: 6 * 2 ** 20, maxModelLen: 256, maxNumSeqs: 64 };

/** A temporary folder holding a 6000-character excerpt of the held-out text; fn gets both. */
function withExcerpt(fn: (dir: string, file: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "vllmd-kv-fp8-")), file = join(dir, "excerpt.txt");
  writeFileSync(file, readFileSync("corpus/heldout.txt", "utf8").slice(0, 6000));
  try {
    fn(dir, file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `vllmd eval-ppl` of `m` on `file` (windows of 256) with --kv-cache-dtype `kv`; throws its stderr on failure. */
function perplexityOf(m: string, file: string, kv: string): number {
  const p = Bun.spawnSync([process.execPath, "src/cli.ts", "eval-ppl", "--model", m, "--file", file, "--window", "256", "--kv-cache-dtype", kv, "--json"]);
  if (p.exitCode !== 0 || p.stderr.toString() !== "") throw new Error(p.stderr.toString());
  return JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!).perplexity as number;
}

describe("--kv-cache-dtype fp8", () => {
  test("e4m3 keys and values: 4x the f32 blocks in the same budget", () => {
    const f32 = makeEngine({ model, ...budget }), fp8 = makeEngine({ model, ...budget, kvCacheDtype: "fp8" });
    try {
      expect(f32.info.kvCacheDtype).toBe("f32");
      expect(fp8.info.kvCacheDtype).toBe("fp8_e4m3");
      expect(fp8.info.numBlocks).toBe(4 * f32.info.numBlocks);
    } finally {
      f32.dispose();
      fp8.dispose();
    }
  });

  test("the built-in model's perplexity moves by less than 1% (and does move: the cache is e4m3)", () => withExcerpt((_dir, file) => {
    const [f32, fp8] = [perplexityOf(model, file, "auto"), perplexityOf(model, file, "fp8")];
    expect(Math.abs(fp8 / f32 - 1)).toBeLessThan(0.01);
    expect(fp8).not.toBe(f32);
  }), 60_000);

  test("a checkpoint's e4m3 KV scales (kv_cache_scheme) are read, and used with --kv-cache-dtype fp8", () => withExcerpt((dir, file) => {
    const layers = JSON.parse(readFileSync(join(model, "config.json"), "utf8")).num_hidden_layers as number;
    /** A copy of the built-in model whose config declares an e4m3 KV cache, every layer's scales `scale`. */
    const withScales = (name: string, scale: number | null) => {
      const out = join(dir, name);
      cpSync(model, out, { recursive: true });
      const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
      cfg.quantization_config = { quant_method: "compressed-tensors", format: "float-quantized",
        kv_cache_scheme: { num_bits: 8, type: "float", strategy: "tensor", dynamic: false, symmetric: true } };
      writeFileSync(join(out, "config.json"), JSON.stringify(cfg));
      if (scale !== null)
        writeSafetensors(join(out, "kv-scales.safetensors"), Array.from({ length: layers }, (_, i) => ["k", "v"].map((kv) => (
          { name: `model.layers.${i}.self_attn.${kv}_scale`, dtype: "F32" as const, shape: [1], data: Float32Array.of(scale) }))).flat());
      return out;
    };
    const ppl = (m: string, kv: string) => perplexityOf(m, file, kv);
    const f32 = ppl(model, "auto"), unit = ppl(model, "fp8");
    const half = ppl(withScales("half", 0.5), "fp8"), coarse = ppl(withScales("coarse", 4096), "fp8");
    expect(ppl(withScales("half-auto", 0.5), "auto")).toBe(f32); // scales only matter to an e4m3 cache
    expect(Math.abs(half / f32 - 1)).toBeLessThan(0.01);
    expect(half).not.toBe(unit); // the checkpoint's scales, not 1.0
    expect(coarse / f32).toBeGreaterThan(1.05); // scale 4096: keys and values fall below e4m3's smallest code
    expect(() => ppl(withScales("missing", null), "fp8")).toThrow(/self_attn.k_scale/);
  }), 120_000);

  test("quantize-fp8 --kv-cache writes calibrated scales that load and keep perplexity within 1%", () => withExcerpt((dir, file) => {
    const out = join(dir, "fp8-kv");
    writeFp8Checkpoint(model, out, { strategy: "channel", activations: "dynamic", kvCalibration: calibrationWindows(model, readFileSync("scripts/fixture_corpus.txt", "utf8")) });
    const md = loadModelDir(out);
    expect(md.config.kvCacheScales).toBe(true);
    for (let i = 0; i < md.config.numLayers; i++)
      for (const kv of ["k", "v"]) expect(md.tensors.get(`model.layers.${i}.self_attn.${kv}_scale`)?.shape).toEqual([1]);
    const [auto, fp8] = [perplexityOf(out, file, "auto"), perplexityOf(out, file, "fp8")];
    expect(Math.abs(fp8 / auto - 1)).toBeLessThan(0.01);
    expect(fp8).not.toBe(auto);
  }), 120_000);

  test("the same request twice gives the same tokens: the second reads the first's cached e4m3 prefix", () => {
    const e = makeEngine({ model, ...budget, kvCacheDtype: "fp8_e4m3", maxNumBatchedTokens: 4 }); // chunked prefill too
    try {
      const long = { id: "a", prompt: Array.from({ length: 40 }, (_, i) => 10 + i), params: { maxTokens: 8, ignoreEos: true } };
      const first = runToCompletion(e, [long]).get("a")!, second = runToCompletion(e, [{ ...long, id: "b" }]).get("b")!;
      expect(second).toEqual(first);
    } finally {
      e.dispose();
    }
  });

  test("a backend that cannot keep an e4m3 cache is asked first and refuses by name, leaking nothing", () => {
    const live = new Set<number>();
    let next = 1;
    const backend = (supported: boolean) => ({
      name: "cuda",
      alloc: () => (live.add(next), next++),
      free: (b: number) => live.delete(b),
      ropeWriteKv: () => {
        if (!supported) throw new Error("vd_rope_write_kv: an e4m3 KV cache is not implemented on cuda yet");
      },
    }) as unknown as Backend;
    expect(() => checkKvCacheDtype(backend(false), DType.fp8E4m3, DType.bf16, "fp8")).toThrow(
      "--kv-cache-dtype fp8: the cuda backend cannot keep such a cache: vd_rope_write_kv: an e4m3 KV cache is not implemented on cuda yet");
    expect(() => checkKvCacheDtype(backend(true), DType.fp8E4m3, DType.bf16, "fp8")).not.toThrow();
    expect(live.size).toBe(0);
  });

  test("the flag takes vLLM's names for e4m3 and refuses the rest by name", () => {
    const kv = (v: string) => parseEngineConfig(engineConfigFrom({ "kv-cache-dtype": v }, "m")).kvCacheDtype;
    expect(kv("fp8")).toBe("fp8");
    expect(kv("fp8_e4m3")).toBe("fp8_e4m3");
    expect(kv("auto")).toBe("auto");
    expect(parseEngineConfig(engineConfigFrom({}, "m")).kvCacheDtype).toBe("auto");
    expect(() => engineConfigFrom({ "kv-cache-dtype": "fp8_e5m2" }, "m")).toThrow("--kv-cache-dtype must be one of auto, fp8, fp8_e4m3, got 'fp8_e5m2'");
  });
});
