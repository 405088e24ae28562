"""The hardware floors issue 5's figures are measured against, on this GPU, for one model directory.

- copy: device-to-device copies of --copy-gib GiB, timed with CUDA events; bytes_per_s counts the
  bytes read plus the bytes written (2N/t, as CUDA's bandwidthTest does), i.e. the rate at which
  HBM moves bytes, which is what reading a KV cache is bound by. Best of the repetitions.
- gemm_peak: torch.matmul 8192x8192x8192 in bf16, best of the repetitions, 2*M*N*K FLOPs.
- step_gemm: every GEMM of one decode step at batch M (1 and 256) for the directory's config.json:
  per layer qkv and gate_up (each fused, as the engine runs them), o and down, times the layers, plus
  the lm_head on M rows. Each layer gets its own weights (so nothing is served from L2 that a
  real step would read from HBM) and the whole step is captured in a CUDA graph and replayed, so
  Python's launch overhead is not counted. total_ms_min is the floor's GEMM time.
Prints one JSON line. Usage: python3 bench/baselines/floors.py MODEL_DIR [--reps 10] [--copy-gib 2]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def model_shape(model_dir):
    with open(f"{model_dir}/config.json") as f:
        c = json.load(f)
    h, heads = c["hidden_size"], c["num_attention_heads"]
    return {
        "hidden_size": h, "intermediate_size": c["intermediate_size"], "num_layers": c["num_hidden_layers"],
        "num_heads": heads, "num_kv_heads": c.get("num_key_value_heads") or heads,
        "head_dim": c.get("head_dim") or h // heads, "vocab_size": c["vocab_size"],
    }


def event_times_ms(fn, reps, warmup=3):
    """fn() timed alone reps times with CUDA events, after warmup untimed calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def as_graph(fn):
    """fn captured in a CUDA graph (warmed up on a side stream first, as capture requires): its
    replay; fn itself, launched eagerly, where capture fails (the JSON then says graphs: false)."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph.replay, True
    except RuntimeError:
        torch.cuda.synchronize()
        return fn, False


def summary(times):
    return {"ms_min": min(times), "ms_median": statistics.median(times), "ms": times}


def copy_bandwidth(gib, reps):
    n = int(gib * 2**30)
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    t = event_times_ms(lambda: dst.copy_(src), reps)
    del src, dst
    best = min(t) / 1e3
    return {"bytes": n, **summary(t), "bytes_per_s": 2 * n / best, "copied_bytes_per_s": n / best}


def gemm_peak(reps, size=8192, per_timing=5):
    a = torch.randn(size, size, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(size, size, dtype=torch.bfloat16, device="cuda")
    c = torch.empty(size, size, dtype=torch.bfloat16, device="cuda")

    def run():
        for _ in range(per_timing):
            torch.matmul(a, b, out=c)

    t = [x / per_timing for x in event_times_ms(run, reps)]
    return {"m": size, "n": size, "k": size, **summary(t), "flops_per_s": 2 * size**3 / (min(t) / 1e3)}


def layer_weights(s):
    """(name, [N, K] per layer) for every projection of a decoder layer, K the input width."""
    h, i, q, kv = s["hidden_size"], s["intermediate_size"], s["num_heads"] * s["head_dim"], s["num_kv_heads"] * s["head_dim"]
    shapes = {"qkv": (q + 2 * kv, h), "o": (h, q), "gate_up": (2 * i, h), "down": (h, i)}
    return {name: [torch.randn(n, k, dtype=torch.bfloat16, device="cuda") * 0.02 for _ in range(s["num_layers"])]
            for name, (n, k) in shapes.items()}


def step_gemm(s, weights, lm_head, m, reps):
    """GEMM time of one step at batch m: per projection over all layers, and the whole step as one graph."""
    inputs = {k: torch.randn(m, ws[0].shape[1], dtype=torch.bfloat16, device="cuda") for k, ws in weights.items()}
    x = torch.randn(m, s["hidden_size"], dtype=torch.bfloat16, device="cuda")

    def projection(name):
        return lambda: [F.linear(inputs[name], w) for w in weights[name]]

    def whole_step():
        for layer in range(s["num_layers"]):
            for name in weights:
                F.linear(inputs[name], weights[name][layer])
        F.linear(x, lm_head)

    graphs = []

    def timed(fn):
        run, captured = as_graph(fn)
        graphs.append(captured)
        return event_times_ms(run, reps)

    per = {name: min(timed(projection(name))) for name in weights}
    per["lm_head"] = min(timed(lambda: F.linear(x, lm_head)))
    total = timed(whole_step)
    return {"m": m, "total_ms_min": min(total), "total_ms_median": statistics.median(total),
            "sum_of_parts_ms": sum(per.values()), "per_projection_ms_min": per, "graphs": all(graphs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--copy-gib", type=float, default=2.0)
    ap.add_argument("--batches", default="1,256", help="decode batch sizes for step_gemm, comma-separated")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("floors.py needs a CUDA GPU")
    t0 = time.time()
    s = model_shape(a.model_dir)
    out = {"bench": "floors", "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "model": s, "kv_bytes_per_token": 2 * s["num_layers"] * s["num_kv_heads"] * s["head_dim"] * 2}
    out["copy"] = copy_bandwidth(a.copy_gib, a.reps)
    out["gemm_peak"] = gemm_peak(a.reps)
    weights = layer_weights(s)
    lm_head = torch.randn(s["vocab_size"], s["hidden_size"], dtype=torch.bfloat16, device="cuda") * 0.02
    params = sum(w.numel() for ws in weights.values() for w in ws) + lm_head.numel()
    out["matmul_weight_bytes"] = 2 * params
    out["matmul_weights_read_ms_at_copy_bw"] = 2 * params / out["copy"]["bytes_per_s"] * 1e3
    out["step_gemm"] = {str(m): step_gemm(s, weights, lm_head, m, a.reps) for m in map(int, a.batches.split(","))}
    out["seconds"] = time.time() - t0
    print(f"copy {out['copy']['bytes_per_s'] / 1e12:.2f} TB/s (read+write); gemm peak {out['gemm_peak']['flops_per_s'] / 1e12:.0f} TFLOP/s; "
          + "; ".join(f"step GEMMs at batch {m}: {g['total_ms_min']:.2f} ms" for m, g in out["step_gemm"].items()), flush=True)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
