"""Writes a GPTQ checkpoint (AutoGPTQ's "gptq" layout: qweight/qzeros I32, scales F16, g_idx I32,
zeros stored minus one) of a float model directory: the linear layers of its decoder rounded to
nearest, symmetric, per group, as scripts/quantize-gptq.ts does it, on the GPU (the TypeScript
quantizer takes minutes for an 8B). Embeddings, norms and lm_head are copied as they are.
Usage: python3 scripts/make_bench_gptq.py SRC_DIR OUT_DIR [--bits 4] [--group-size 128]"""
import argparse, json, os, re, shutil, time
import torch
from safetensors import safe_open
from safetensors.torch import save_file

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("out")
ap.add_argument("--bits", type=int, default=4, choices=[4, 8])
ap.add_argument("--group-size", type=int, default=128)
a = ap.parse_args()
t0 = time.time()
LINEAR = re.compile(r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$")
per, qmax, zero = 32 // a.bits, 2**a.bits - 1, 2 ** (a.bits - 1)


def pack_rows(codes):  # codes [R, C] int32 < 2^bits -> [R // per, C]: code (r, c) at bits (r % per) * bits
    r, c = codes.shape
    v = codes.view(r // per, per, c)
    out = torch.zeros(r // per, c, dtype=torch.int64, device=codes.device)
    for j in range(per):
        out |= v[:, j, :].to(torch.int64) << (a.bits * j)
    return (out - ((out >> 31) << 32)).to(torch.int32)  # as two's complement int32


def quantize(w):  # w [N, K] -> GPTQ tensors
    n, k = w.shape
    g = a.group_size if a.group_size > 0 else k
    wg = w.float().view(n, k // g, g)
    scale = (wg.abs().amax(dim=2) / (qmax - zero)).clamp_min(1e-8).half()  # [N, G], as stored
    codes = (wg / scale.float().unsqueeze(2)).round().add(zero).clamp(0, qmax).to(torch.int32).view(n, k)
    zeros = torch.full((k // g, n), zero - 1, dtype=torch.int32, device=w.device)  # v1 stores zero - 1
    return {
        "qweight": pack_rows(codes.t().contiguous()),  # [K / per, N]
        "qzeros": pack_rows(zeros.t().contiguous()).t().contiguous(),  # [G, N / per]
        "scales": scale.t().contiguous(),  # [G, N]
        "g_idx": (torch.arange(k, device=w.device, dtype=torch.int32) // g),
    }


os.makedirs(a.out, exist_ok=True)
index = json.load(open(os.path.join(a.src, "model.safetensors.index.json")))
shards = sorted(set(index["weight_map"].values()))
weight_map = {}
for shard in shards:
    out = {}
    with safe_open(os.path.join(a.src, shard), framework="pt", device="cuda") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            if LINEAR.search(name):
                for suffix, v in quantize(t).items():
                    out[name[: -len("weight")] + suffix] = v.cpu()
            else:
                out[name] = t.cpu()
    save_file(out, os.path.join(a.out, shard), metadata={"format": "pt"})
    weight_map.update({name: shard for name in out})
json.dump({"metadata": {}, "weight_map": weight_map}, open(os.path.join(a.out, "model.safetensors.index.json"), "w"))
cfg = json.load(open(os.path.join(a.src, "config.json")))
cfg["quantization_config"] = {"quant_method": "gptq", "bits": a.bits, "group_size": a.group_size, "desc_act": False,
                              "sym": True, "checkpoint_format": "gptq"}
json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
for extra in os.listdir(a.src):
    if extra.endswith(".json") and extra not in ("config.json", "model.safetensors.index.json"):
        shutil.copy(os.path.join(a.src, extra), a.out)
print(f"wrote {a.out} (GPTQ {a.bits}-bit group {a.group_size}) in {time.time()-t0:.1f}s", flush=True)
