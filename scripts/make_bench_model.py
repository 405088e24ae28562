"""Writes a random bf16 model with Llama-3-8B's shapes, or Llama-3-70B's with --shape 70b (141 GB;
for tensor parallelism on 2+ GPUs), for benchmarks on the GPU machine. The 70B is built one layer
at a time on the GPU and written shard by shard, so it needs disk, not a GPU of its size.
Usage: python3 scripts/make_bench_model.py OUT_DIR [--shape 8b|70b] [--layers N]"""
import argparse, time, torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--shape", choices=["8b", "70b"], default="8b")
ap.add_argument("--layers", type=int)
a = ap.parse_args()
t0 = time.time()
SHAPES = {  # Llama-3's: hidden, intermediate, layers, heads
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32),
    "70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64),
}
shape = SHAPES[a.shape] | ({"num_hidden_layers": a.layers} if a.layers else {})
cfg = LlamaConfig(vocab_size=128256, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
                  rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001, **shape)
torch.set_default_dtype(torch.bfloat16)
if a.shape == "8b":
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(a.out, safe_serialization=True, max_shard_size="5GB")
    params = sum(p.numel() for p in model.parameters())
else:  # too large for host memory at once: the tensors by name, a shard file per layer
    import json, os
    from safetensors.torch import save_file
    os.makedirs(a.out, exist_ok=True)
    h, i, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    rnd = lambda *shape: torch.empty(*shape, device="cuda").normal_(0, 0.02).cpu()
    files, weight_map, params = [], {}, 0
    def write(name, tensors):
        global params
        save_file(tensors, os.path.join(a.out, name), metadata={"format": "pt"})
        weight_map.update({k: name for k in tensors})
        params += sum(t.numel() for t in tensors.values())
    write("embed.safetensors", {"model.embed_tokens.weight": rnd(cfg.vocab_size, h)})
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        write(f"layer-{l:03d}.safetensors", {
            p + "self_attn.q_proj.weight": rnd(h, h), p + "self_attn.k_proj.weight": rnd(kv, h), p + "self_attn.v_proj.weight": rnd(kv, h),
            p + "self_attn.o_proj.weight": rnd(h, h), p + "mlp.gate_proj.weight": rnd(i, h), p + "mlp.up_proj.weight": rnd(i, h),
            p + "mlp.down_proj.weight": rnd(h, i), p + "input_layernorm.weight": torch.ones(h), p + "post_attention_layernorm.weight": torch.ones(h)})
    write("head.safetensors", {"model.norm.weight": torch.ones(h), "lm_head.weight": rnd(cfg.vocab_size, h)})
    json.dump({"metadata": {}, "weight_map": weight_map}, open(os.path.join(a.out, "model.safetensors.index.json"), "w"))
    cfg.save_pretrained(a.out)
    path = os.path.join(a.out, "config.json")  # the weights' dtype, under the key this transformers writes
    c = json.load(open(path))
    c["dtype" if "dtype" in c else "torch_dtype"] = "bfloat16"
    json.dump(c, open(path, "w"), indent=2)
print(f"wrote {a.out} ({params/1e9:.2f}B params, {a.shape}) in {time.time()-t0:.1f}s", flush=True)
