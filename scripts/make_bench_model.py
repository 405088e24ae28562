"""Writes a random bf16 model with Llama-3-8B's shapes (for benchmarks on the GPU machine).
Usage: python3 scripts/make_bench_model.py OUT_DIR [--layers N]"""
import argparse, time, torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--layers", type=int, default=32)
a = ap.parse_args()
t0 = time.time()
cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=a.layers,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
                  rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001)
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg)
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.02)
model.save_pretrained(a.out, safe_serialization=True, max_shard_size="5GB")
print(f"wrote {a.out} ({sum(p.numel() for p in model.parameters())/1e9:.2f}B params) in {time.time()-t0:.1f}s", flush=True)
