"""Hugging Face transformers' generate on the GPU: the baselines of issue 5's decode_b1_tok_s and
mixed_vs_hf_output_ratio, on the same model directory the engine runs (eager PyTorch, bf16, the
default dynamic KV cache and attention implementation, greedy, EOS ignored via min_new_tokens).

--b1: one 128-token prompt (ids 100..227, as bench/decode.ts), 256 new tokens. tok_s_e2e = 256 /
  generate's time (the best of --b1-runs); tok_s_decode = 255 / (that time - the time of a 1-token generate), the same
  count bench/decode.ts makes (tokens after the first over the time after the first).
--mixed FILE: the requests bench/workload.ts --write wrote, the first --mixed-requests of them in
  arrival-order batches of --batch-size, left-padded, each batch generating to its longest
  max_tokens; output_tok_s counts only the tokens each request asked for, over the batches' time.
Prints one JSON line (also rewritten to --out after each part, so a timeout keeps what finished).
Usage: python3 bench/baselines/hf_generate.py MODEL_DIR [--b1] [--mixed FILE] [--mixed-requests 128] [--out FILE]
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import AutoModelForCausalLM

PAD_ID = 0


def load_model(model_dir, attn):
    """The model in bf16 on the GPU, whichever of dtype/torch_dtype and device_map this transformers takes."""
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    kw = {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch.bfloat16}
    if attn:
        kw["attn_implementation"] = attn
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, device_map="cuda", **kw)
    except (ImportError, ValueError):  # device_map needs accelerate on transformers 4.x
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kw).to("cuda")
    if model.dtype != torch.bfloat16:
        model = model.to(torch.bfloat16)
    return model.eval()


def timed_generate(model, input_ids, attention_mask, new_tokens):
    """generate to exactly new_tokens greedy tokens; (seconds, output ids)."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False, pad_token_id=PAD_ID)
    torch.cuda.synchronize()
    s = time.perf_counter() - t
    if out.shape[1] != input_ids.shape[1] + new_tokens:
        raise RuntimeError(f"generate returned {out.shape[1] - input_ids.shape[1]} new tokens, asked for {new_tokens}")
    return s, out


def bench_b1(model, prompt_len, new_tokens, runs):
    ids = torch.tensor([[100 + i for i in range(prompt_len)]], device="cuda")
    mask = torch.ones_like(ids)
    timed_generate(model, ids, mask, 8)  # warm-up
    first = statistics.median([timed_generate(model, ids, mask, 1)[0] for _ in range(3)])
    full = [timed_generate(model, ids, mask, new_tokens)[0] for _ in range(runs)]
    s = min(full)  # the best run: a slow first one (seen: 15 s against 6 s) must not flatter the engine
    return {"prompt_len": prompt_len, "new_tokens": new_tokens, "runs_s": full, "e2e_s": s, "first_token_s": first,
            "tok_s_e2e": new_tokens / s, "tok_s_decode": (new_tokens - 1) / (s - first)}


def left_padded(prompts):
    """[B, longest] ids padded on the left with PAD_ID, and the attention mask that hides the padding."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    return ids.cuda(), mask.cuda()


def bench_mixed(model, path, n, batch_size):
    with open(path) as f:
        reqs = json.load(f)["requests"][:n]
    warm_ids, warm_mask = left_padded([[1000 + i for i in range(16)], [2000 + i for i in range(32)]])
    timed_generate(model, warm_ids, warm_mask, 4)  # warm-up
    batches = []
    for start in range(0, len(reqs), batch_size):
        batch = reqs[start:start + batch_size]
        ids, mask = left_padded([r["prompt_token_ids"] for r in batch])
        longest = max(r["max_tokens"] for r in batch)
        s, _ = timed_generate(model, ids, mask, longest)
        asked = sum(r["max_tokens"] for r in batch)
        batches.append({"requests": len(batch), "prompt_width": ids.shape[1], "new_tokens": longest,
                        "asked_tokens": asked, "generated_tokens": longest * len(batch), "seconds": s})
        print(f"hf mixed batch {len(batches)}: {len(batch)} requests, width {ids.shape[1]}, {longest} new tokens, "
              f"{s:.1f} s, {asked / s:.1f} asked tok/s", flush=True)
    seconds = sum(b["seconds"] for b in batches)
    asked = sum(b["asked_tokens"] for b in batches)
    return {"requests": len(reqs), "batch_size": batch_size, "batches": batches, "seconds": seconds,
            "output_tokens": asked, "output_tok_s": asked / seconds}


def run_part(out, name, fn, out_file):
    """Runs one part; an error is recorded in its place and the next part still runs."""
    try:
        out[name] = fn()
    except Exception as e:  # noqa: BLE001 - a failed part must not lose the others
        out[name] = {"error": f"{type(e).__name__}: {e}"}
        torch.cuda.empty_cache()
    if out_file:
        with open(out_file, "w") as f:
            json.dump(out, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--b1", action="store_true", help="the batch-1 decode baseline")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--b1-runs", type=int, default=3)
    ap.add_argument("--mixed", metavar="FILE", help="the mixed baseline on this workload file")
    ap.add_argument("--mixed-requests", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--attn", default=None, help="attn_implementation (default: transformers' own choice)")
    ap.add_argument("--out", help="also write the JSON here after each part")
    a = ap.parse_args()
    if not (a.b1 or a.mixed):
        ap.error("nothing to run: give --b1 and/or --mixed FILE")
    t0 = time.time()
    model = load_model(a.model_dir, a.attn)
    out = {"bench": "hf_generate", "transformers": transformers.__version__, "torch": torch.__version__,
           "attn_implementation": getattr(model.config, "_attn_implementation", None), "load_s": time.time() - t0}
    if a.b1:
        run_part(out, "b1", lambda: bench_b1(model, a.prompt_len, a.new_tokens, a.b1_runs), a.out)
        print(f"hf b1: {json.dumps(out['b1'])}", flush=True)
    if a.mixed:
        run_part(out, "mixed", lambda: bench_mixed(model, a.mixed, a.mixed_requests, a.batch_size), a.out)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
