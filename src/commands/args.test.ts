// The engine flags every command shares, as the engine config gets them.
import { describe, expect, test } from "bun:test";
import { parseEngineConfig } from "../config.ts";
import { engineConfigFrom, UsageError } from "./args.ts";

describe("engineConfigFrom", () => {
  test("--enforce-eager turns decode graphs off; without it the engine decides", () => {
    expect(parseEngineConfig(engineConfigFrom({ "enforce-eager": true }, "m")).decodeGraphs).toBe("off");
    expect(parseEngineConfig(engineConfigFrom({}, "m")).decodeGraphs).toBe("auto");
  });

  test("--async-scheduling and --no-async-scheduling force it; without them the engine decides", () => {
    const mode = (a: Record<string, unknown>) => parseEngineConfig(engineConfigFrom(a, "m")).asyncScheduling;
    expect([mode({ "async-scheduling": true }), mode({ "no-async-scheduling": true }), mode({})]).toEqual(["on", "off", "auto"]);
    expect(() => engineConfigFrom({ "async-scheduling": true, "no-async-scheduling": true }, "m")).toThrow("contradict");
  });

  test("numbers and the device are checked", () => {
    const cfg = parseEngineConfig(engineConfigFrom({ "max-num-seqs": "8", device: "cpu" }, "m"));
    expect([cfg.maxNumSeqs, cfg.device]).toEqual([8, "cpu"]);
    expect(() => engineConfigFrom({ device: "tpu" }, "m")).toThrow(UsageError);
    expect(() => engineConfigFrom({ "max-num-seqs": "many" }, "m")).toThrow("--max-num-seqs expects a number, got 'many'");
  });

  test("--quantization takes vLLM's method names, and nothing else", () => {
    const q = (name: string) => parseEngineConfig(engineConfigFrom({ quantization: name }, "m")).quantization;
    expect([q("fp8"), q("gptq"), q("awq"), q("compressed-tensors")]).toEqual(["fp8", "gptq", "awq", "compressed-tensors"]);
    expect(() => engineConfigFrom({ quantization: "int3" }, "m")).toThrow("--quantization must be one of fp8, gptq, awq, compressed-tensors, got 'int3'");
  });
});
