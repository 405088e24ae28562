// Messages between the main thread and the engine Worker (structured clone: Maps and bigints pass).
import type { EngineConfigInput } from "../config.ts";
import type { EngineInfo, EngineOutput, EngineStats } from "./engine.ts";
import type { SamplingParams } from "./request.ts";

export type ToWorker =
  | { type: "init"; config: EngineConfigInput }
  | { type: "add"; id: string; promptTokenIds: number[]; params: SamplingParams }
  | { type: "abort"; id: string }
  | { type: "shutdown" };

export type FromWorker =
  | { type: "progress"; done: number; total: number }
  | { type: "ready"; info: EngineInfo }
  | { type: "outputs"; outputs: EngineOutput[]; stats: EngineStats }
  | { type: "rejected"; id: string; message: string }
  | { type: "fatal"; message: string }
  | { type: "closed" };
