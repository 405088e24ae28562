// Prometheus metrics under vLLM's names, so existing dashboards work unchanged.
import type { EngineStats } from "../engine/engine.ts";

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: readonly number[],
  ) {
    this.counts = buckets.map(() => 0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) this.counts[i]!++;
  }

  render(labels: string): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{${labels},le="${b}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{${labels},le="+Inf"} ${this.count}`);
    lines.push(`${this.name}_sum{${labels}} ${this.sum}`, `${this.name}_count{${labels}} ${this.count}`);
    return lines.join("\n");
  }
}

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const E2E_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

export class ServingMetrics {
  private promptTokens = 0;
  private clientsGone = 0;
  private generationTokens = 0;
  /** Finished requests by finish reason (stop, length, abort), as vLLM labels them. */
  private readonly finishedBy = new Map<string, number>();
  private readonly ttft = new Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS);
  private readonly itl = new Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS);
  private readonly e2e = new Histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", E2E_BUCKETS);

  constructor(
    private readonly modelName: string,
    private readonly engineStats: () => EngineStats,
  ) {}

  firstToken(seconds: number): void {
    this.ttft.observe(seconds);
  }

  /** A client closed its connection before its request body was complete. */
  clientGone(): void {
    this.clientsGone++;
  }

  interToken(seconds: number): void {
    this.itl.observe(seconds);
  }

  requestFinished(e2eSeconds: number, promptTokens: number, generationTokens: number, reason: string): void {
    this.e2e.observe(e2eSeconds);
    this.promptTokens += promptTokens;
    this.generationTokens += generationTokens;
    this.finishedBy.set(reason, this.finished(reason) + 1);
  }

  /** How many requests have finished for `reason`. */
  finished(reason: string): number {
    return this.finishedBy.get(reason) ?? 0;
  }

  private renderFinished(labels: string): string {
    const name = "vllm:request_success_total";
    const lines = [`# HELP ${name} Count of successfully processed requests.`, `# TYPE ${name} counter`];
    for (const r of ["stop", "length", "abort"]) lines.push(`${name}{${labels},finished_reason="${r}"} ${this.finished(r)}`);
    return lines.join("\n");
  }

  /** The Prometheus text exposition of every metric. */
  render(): string {
    const labels = `model_name="${this.modelName.replace(/["\\\n]/g, "_")}"`;
    const s = this.engineStats();
    const scalar = (name: string, type: "gauge" | "counter", help: string, v: number) =>
      `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name}{${labels}} ${v}`;
    return [
      scalar("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", s.numRunning),
      scalar("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", s.numWaiting),
      scalar("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", s.kvCacheUsage),
      scalar("vllm:num_preemptions_total", "counter", "Cumulative number of preemptions from the engine.", s.numPreemptionsTotal),
      scalar("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", this.promptTokens),
      scalar("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", this.generationTokens),
      scalar("vllmd:client_disconnects_total", "counter", "Requests whose client went away before sending the whole body.", this.clientsGone),
      this.renderFinished(labels),
      this.ttft.render(labels),
      this.itl.render(labels),
      this.e2e.render(labels),
    ].join("\n") + "\n";
  }
}
