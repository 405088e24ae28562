"""A compiled PyTorch Llama decoder, gpt-fast's recipe (a static KV cache; the one-token step under
torch.compile with CUDA graphs, mode "reduce-overhead"): the strongest peer that runs on the GPU
machine, the baseline of issue 10's decode_b1_vs_compiled_torch. It reads the model directory the
engine runs (Hugging Face Llama safetensors, bf16; q/k/v and gate/up fused as the engine fuses
them), one 128-token prompt (ids 100..227, as bench/decode.ts), 256 greedy tokens; decode tok/s
counts the tokens after the first over the time after the first (bench/decode.ts's count), the
median of --runs runs after a compile-and-warm-up run.
Usage: python3 bench/baselines/compiled_decode.py MODEL_DIR [--prompt-len 128] [--tokens 256] [--runs 3]
Prints one JSON line last."""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    w = {}
    for f in files:
        w.update(load_file(os.path.join(model_dir, f), device="cuda"))
    return {k: v.to(torch.bfloat16) for k, v in w.items()}


class Llama(torch.nn.Module):
    def __init__(self, cfg, w, max_len):
        super().__init__()
        self.n_layers, self.h, self.kvh = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
        self.d = cfg.get("head_dim") or cfg["hidden_size"] // self.h
        self.eps = cfg["rms_norm_eps"]
        # Buffers, not plain attributes: CUDA graphs then read them in place (a plain tensor attribute
        # would be a graph input, copied into a static one at every replay).
        buf = lambda name, t: self.register_buffer(name, t, persistent=False)
        buf("embed", w["model.embed_tokens.weight"])
        buf("norm", w["model.norm.weight"])
        buf("lm_head", w.get("lm_head.weight", w["model.embed_tokens.weight"]))
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            buf(f"in_norm{i}", w[p + "input_layernorm.weight"])
            buf(f"post_norm{i}", w[p + "post_attention_layernorm.weight"])
            buf(f"qkv{i}", torch.cat([w[p + f"self_attn.{x}_proj.weight"] for x in "qkv"]))
            buf(f"o{i}", w[p + "self_attn.o_proj.weight"])
            buf(f"gate_up{i}", torch.cat([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]]))
            buf(f"down{i}", w[p + "mlp.down_proj.weight"])
        shape = (self.n_layers, 1, self.kvh, max_len, self.d)
        buf("k_cache", torch.zeros(shape, dtype=torch.bfloat16, device="cuda"))
        buf("v_cache", torch.zeros(shape, dtype=torch.bfloat16, device="cuda"))
        inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, self.d, 2, device="cuda", dtype=torch.float32) / self.d))
        freqs = torch.outer(torch.arange(max_len, device="cuda", dtype=torch.float32), inv)
        buf("cos", torch.cat([freqs, freqs], dim=-1).cos().to(torch.bfloat16))  # [max_len, d]
        buf("sin", torch.cat([freqs, freqs], dim=-1).sin().to(torch.bfloat16))
        self.max_len = max_len

    def rms(self, x, weight):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * weight

    def rope(self, x, pos):  # x [1, heads, T, d] (rotate-half, as HF Llama)
        cos, sin = self.cos[pos][None, None], self.sin[pos][None, None]
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def forward(self, tokens, pos):  # tokens [1, T], pos [T] -> logits of the last position [1, vocab]
        T = tokens.shape[1]
        x = F.embedding(tokens, self.embed)
        mask = torch.arange(self.max_len, device="cuda")[None, :] <= pos[:, None]  # [T, max_len]
        for i in range(self.n_layers):
            lw = {name: getattr(self, f"{name}{i}") for name in ("in_norm", "post_norm", "qkv", "o", "gate_up", "down")}
            qkv = F.linear(self.rms(x, lw["in_norm"]), lw["qkv"])
            q, k, v = qkv.split([self.h * self.d, self.kvh * self.d, self.kvh * self.d], dim=-1)
            q = self.rope(q.view(1, T, self.h, self.d).transpose(1, 2), pos)
            k = self.rope(k.view(1, T, self.kvh, self.d).transpose(1, 2), pos)
            v = v.view(1, T, self.kvh, self.d).transpose(1, 2)
            self.k_cache[i].index_copy_(2, pos, k)
            self.v_cache[i].index_copy_(2, pos, v)
            kc = self.k_cache[i].repeat_interleave(self.h // self.kvh, dim=1)
            vc = self.v_cache[i].repeat_interleave(self.h // self.kvh, dim=1)
            a = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask[None, None])
            x = x + F.linear(a.transpose(1, 2).reshape(1, T, self.h * self.d), lw["o"])
            gu = F.linear(self.rms(x, lw["post_norm"]), lw["gate_up"])
            gate, up = gu.chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, lw["down"])
        return F.linear(self.rms(x[:, -1], self.norm), self.lm_head)


def generate(model, step, prompt, n):
    """n greedy tokens after the prompt; (seconds to the first token, seconds for the rest)."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    tok = model(prompt, torch.arange(prompt.shape[1], device="cuda")).argmax(-1, keepdim=True)  # prefill, eager
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    pos = torch.tensor([prompt.shape[1]], device="cuda")
    for _ in range(n - 1):
        tok = step(tok, pos).argmax(-1, keepdim=True).clone()
        pos += 1
    torch.cuda.synchronize()
    return t1 - t0, time.perf_counter() - t1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    t = time.perf_counter()
    with torch.no_grad():
        model = Llama(cfg, load_weights(a.model), a.prompt_len + a.tokens + 8).eval()
        load_s = time.perf_counter() - t
        step = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        prompt = torch.tensor([[100 + i for i in range(a.prompt_len)]], device="cuda")
        t = time.perf_counter()
        generate(model, step, prompt, a.tokens)  # compiles and captures the step's graphs
        compile_s = time.perf_counter() - t
        runs = [generate(model, step, prompt, a.tokens) for _ in range(a.runs)]
    tok_s = [(a.tokens - 1) / rest for _, rest in runs]
    result = {"bench": "compiled_torch_decode_b1", "torch": torch.__version__, "load_s": load_s, "compile_s": compile_s,
              "prompt_len": a.prompt_len, "tokens": a.tokens, "runs_tok_s": tok_s, "decode_tok_s": statistics.median(tok_s),
              "ttft_ms": statistics.median(first for first, _ in runs) * 1e3}
    print(f"compiled torch {torch.__version__}: decode_b1 {result['decode_tok_s']:.1f} tok/s (runs {', '.join(f'{x:.1f}' for x in tok_s)}); "
          f"compile and warm-up {compile_s:.0f} s", flush=True)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
