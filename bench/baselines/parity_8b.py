"""Transformers' side of the large-model parity check (issue 5): reads what bench/parity-8b.ts
wrote (prompts, the engine's greedy tokens, its log-probability of every token), runs the same
model in transformers (bf16 on the GPU) over each prompt + the engine's tokens (teacher forcing),
and compares:
- logprob_mean_abs / logprob_max_abs: |engine - transformers| over every scored token (nats);
- greedy_equal_share: of the engine's greedy tokens, how many are transformers' argmax too;
- max_greedy_gap: the largest (transformers' best logprob - its logprob of the engine's token),
  i.e. how far from a tie any disagreement is.
Passes when logprob_mean_abs < 0.05, greedy_equal_share >= 0.75 and max_greedy_gap < 0.25 (bf16
rounding, differently ordered, moves logits by a few hundredths; a real bug moves them by far
more). Prints one JSON line; exits 1 on failure.
Usage: python3 bench/baselines/parity_8b.py MODEL_DIR ENGINE_JSON
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from hf_generate import load_model  # noqa: E402

LIMITS = {"logprob_mean_abs": 0.05, "greedy_equal_share": 0.75, "max_greedy_gap": 0.25}


def compare(model, r):
    ids = r["prompt"] + r["generated"]
    with torch.no_grad():
        logits = model(torch.tensor([ids], device="cuda")).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)  # lp[i] predicts ids[i + 1]
    target = torch.tensor(ids[1:], device="cuda")
    hf = lp[:-1].gather(1, target[:, None])[:, 0].cpu()
    engine = torch.tensor(r["logprobs"][1:], dtype=torch.float32)
    diff = (engine - hf).abs()
    p = len(r["prompt"])
    rows = lp[p - 1:len(ids) - 1]  # the rows that chose the generated tokens
    gen = torch.tensor(r["generated"], device="cuda")
    equal = int((rows.argmax(dim=-1) == gen).sum())
    gaps = rows.max(dim=-1).values - rows.gather(1, gen[:, None])[:, 0]
    return diff, equal, len(r["generated"]), float(gaps.max())


def main():
    model_dir, engine_json = sys.argv[1], sys.argv[2]
    with open(engine_json) as f:
        data = json.load(f)
    model = load_model(model_dir, None)
    diffs, equal, total, gap = [], 0, 0, 0.0
    per_prompt = []
    for r in data["results"]:
        d, e, n, g = compare(model, r)
        diffs.append(d)
        equal, total, gap = equal + e, total + n, max(gap, g)
        per_prompt.append({"prompt_len": len(r["prompt"]), "logprob_mean_abs": float(d.mean()), "greedy_equal": e, "generated": n})
    d = torch.cat(diffs)
    out = {"bench": "parity_8b", "logprob_mean_abs": float(d.mean()), "logprob_max_abs": float(d.max()),
           "greedy_equal_share": equal / total, "max_greedy_gap": gap, "per_prompt": per_prompt, "limits": LIMITS,
           "engine_graph_steps": data.get("graph_steps")}
    out["pass"] = (out["logprob_mean_abs"] < LIMITS["logprob_mean_abs"] and out["greedy_equal_share"] >= LIMITS["greedy_equal_share"]
                   and out["max_greedy_gap"] < LIMITS["max_greedy_gap"])
    print(f"parity vs transformers: logprobs |diff| mean {out['logprob_mean_abs']:.4f} max {out['logprob_max_abs']:.4f} nats; "
          f"greedy equal {equal}/{total}; largest gap {gap:.4f}: {'PASS' if out['pass'] else 'FAIL'}", flush=True)
    print(json.dumps(out), flush=True)
    sys.exit(0 if out["pass"] else 1)


if __name__ == "__main__":
    main()
