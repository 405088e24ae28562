#!/usr/bin/env python3
"""Train vllmd's built-in default model: a ~7.8M-parameter Llama on public-domain English.

Runs on the GPU machine (PyTorch, transformers, tokenizers; no network), from the repo root:
    PYTHONUNBUFFERED=1 python3 scripts/train_default_model.py --out models/default \
        --golden test/fixtures/default-golden.json --max-minutes 5.5
Input: corpus/corpus.jsonl.xz (train + val documents, from scripts/fetch_corpus.sh) and
corpus/heldout.txt (test text, never trained on and never used to choose anything).
Training is time-bounded; validation loss picks the schedule and step (a small corpus overfits).
Evaluation, goldens and the model card: default_model_report.py.
"""
import argparse
import inspect
import json
import lzma
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import default_model_report as report  # noqa: E402

SPECIALS = ["<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>"]  # ids 0..3, in this order
VOCAB_SIZE = 4096
SEQ_LEN = 512
# Every role but "assistant" renders as a user turn, so no role can make the template fail.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<|assistant|>{% else %}<|user|>{% endif %}"
    "{{ message['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MODEL_SHAPE = dict(hidden_size=320, intermediate_size=864, num_hidden_layers=6, num_attention_heads=5,
                   num_key_value_heads=1, max_position_embeddings=SEQ_LEN, rms_norm_eps=1e-5,
                   tie_word_embeddings=True)
ROPE_THETA = 10000.0
# A small corpus overfits within ~8 epochs at this size, and a run of 1,500 steps takes ~40 s on an
# H100, so one run trains several schedules from the same initialisation and keeps the variant and
# step with the lowest validation loss. Variants run in this order until the time bound.
BASE_HP = dict(steps=1500, batch=32, lr=1.5e-3, min_lr_frac=0.1, warmup=100, weight_decay=0.1,
               eval_every=100, patience=4)
DEFAULT_SWEEP = ";".join([
    "steps=1500", "steps=1000", "steps=2200", "steps=1500,lr=3e-3", "steps=1500,weight_decay=0.5",
    "steps=1000,batch=64,lr=2e-3", "steps=2200,lr=1e-3,weight_decay=0.3", "steps=3000,lr=1e-3,weight_decay=0.5",
])


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default="corpus/corpus.jsonl.xz")
    p.add_argument("--heldout", default="corpus/heldout.txt")
    p.add_argument("--out", default="models/default")
    p.add_argument("--golden", default="test/fixtures/default-golden.json")
    p.add_argument("--max-minutes", type=float, default=5.5, help="wall-clock bound of the training loop")
    p.add_argument("--sweep", default=DEFAULT_SWEEP,
                   help="variants separated by ';', each key=value overrides of " + repr(BASE_HP))
    p.add_argument("--train-loss-windows", type=int, default=256, help="training windows for the card's loss")
    p.add_argument("--seed", type=int, default=1234)
    return p.parse_args()


def load_documents(path):
    docs = {"train": [], "val": []}
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            docs[rec["split"]].append(rec)
    if not docs["train"] or not docs["val"]:
        raise SystemExit(f"{path}: needs both train and val documents")
    return docs


def train_tokenizer(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    for i, special in enumerate(SPECIALS):
        if tok.token_to_id(special) != i:
            raise SystemExit(f"special token {special} got id {tok.token_to_id(special)}, wanted {i}")
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise SystemExit(f"tokenizer vocabulary is {tok.get_vocab_size()}, wanted {VOCAB_SIZE}")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", 0)])
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                              clean_up_tokenization_spaces=False)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def token_stream(tok, texts, eos_id):
    """Documents joined by <|eos|>, so the model learns where a document ends."""
    ids = []
    for enc in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(eos_id)
    return torch.tensor(ids, dtype=torch.long)


def build_model(vocab_size, device):
    kwargs = dict(MODEL_SHAPE, vocab_size=vocab_size, bos_token_id=0, eos_token_id=1, pad_token_id=None)
    if "rope_parameters" in inspect.signature(transformers.LlamaConfig.__init__).parameters:  # transformers 5
        config = transformers.LlamaConfig(**kwargs, rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA})
    else:
        config = transformers.LlamaConfig(**kwargs, rope_theta=ROPE_THETA)
    rope = getattr(config, "rope_parameters", None) or {"rope_theta": getattr(config, "rope_theta", None)}
    if rope.get("rope_theta") != ROPE_THETA:
        raise SystemExit(f"config did not keep rope_theta {ROPE_THETA}: {rope}")
    return transformers.LlamaForCausalLM(config).to(device)


def eval_windows(ids, bos_id):
    """The held-out protocol: consecutive chunks of 511 tokens, each window [bos] + chunk."""
    chunk = SEQ_LEN - 1
    return [[bos_id] + ids[i:i + chunk] for i in range(0, len(ids), chunk)]


@torch.no_grad()
def mean_window_loss(model, windows, device, autocast=True):
    """Mean NLL per chunk token (float64 sum) over [bos] + chunk windows."""
    model.eval()
    total, count = 0.0, 0
    for w in windows:
        x = torch.tensor([w], device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast and device.type == "cuda"):
            logits = model(input_ids=x).logits
        nll = F.cross_entropy(logits[0, :-1].float(), x[0, 1:], reduction="sum")
        total += nll.double().item()
        count += len(w) - 1
    model.train()
    return total / count


def parse_sweep(text):
    variants = []
    for spec in filter(None, (v.strip() for v in text.split(";"))):
        hp = dict(BASE_HP)
        for item in spec.split(","):
            key, _, value = item.partition("=")
            if key.strip() not in hp:
                raise SystemExit(f"--sweep: unknown key {key!r} in {spec!r}")
            hp[key.strip()] = type(BASE_HP[key.strip()])(float(value))
        variants.append(argparse.Namespace(name=spec, **hp))
    return variants


def lr_at(step, hp):
    if step < hp.warmup:
        return hp.lr * (step + 1) / hp.warmup
    progress = min(1.0, (step - hp.warmup) / max(1, hp.steps - hp.warmup))
    floor = hp.lr * hp.min_lr_frac
    return floor + (hp.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def batches(stream, batch, bos_id, gen):
    """Epochs of non-overlapping 512-token label spans at a fresh random phase.

    The input of each span is [bos] + its first 511 tokens, as in the held-out protocol, so the model
    learns to read a window that starts mid-document right after <|bos|>.
    """
    while True:
        phase = int(torch.randint(0, SEQ_LEN, (1,), generator=gen))
        starts = torch.arange(phase, len(stream) - SEQ_LEN, SEQ_LEN)
        starts = starts[torch.randperm(len(starts), generator=gen)]
        for i in range(0, len(starts) - batch + 1, batch):
            labels = stream[starts[i:i + batch, None] + torch.arange(SEQ_LEN)[None, :]]
            inputs = torch.cat([torch.full((batch, 1), bos_id), labels[:, :-1]], dim=1)
            yield inputs, labels


def optimizer_for(model, hp):
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


def train_variant(model, stream, val_windows, hp, seed, deadline, device):
    """Trains one schedule; returns its best (validation loss, step, tokens, weights), log and totals.

    Stops at the schedule's end, at the deadline, or after hp.patience evaluations without improvement.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = optimizer_for(model, hp)
    best = {"val_loss": float("inf"), "step": 0, "tokens": 0, "state": None}
    log, since_best, tokens, t0 = [], 0, 0, time.time()
    model.train()
    for step, (x, y) in enumerate(batches(stream, hp.batch, 0, gen)):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, hp)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += y.numel()
        done = step + 1 >= hp.steps or time.time() >= deadline
        if (step + 1) % hp.eval_every == 0 or done:
            val = mean_window_loss(model, val_windows, device)
            entry = dict(step=step + 1, tokens=tokens, minutes=(time.time() - t0) / 60, lr=lr_at(step, hp),
                         train_loss=loss.item(), val_loss=val, epochs=tokens / len(stream))
            log.append(entry)
            improved = val < best["val_loss"]
            if improved:
                best = {"val_loss": val, "step": step + 1, "tokens": tokens,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            since_best = 0 if improved else since_best + 1
            print(f"  step {step + 1:5d} ep {entry['epochs']:5.2f} {entry['minutes']:5.2f} min lr {entry['lr']:.2e} "
                  f"train {entry['train_loss']:.4f} val {val:.4f}{' *' if improved else ''}")
            if since_best >= hp.patience:
                print(f"  stopping: no validation improvement in {hp.patience} evaluations")
                done = True
        if done:
            break
    return best, log, dict(steps=step + 1, tokens=tokens, minutes=(time.time() - t0) / 60)


def sweep(variants, vocab_size, stream, val_windows, args, device):
    """Trains each variant from the same initialisation until the time bound; keeps the best."""
    deadline = time.time() + args.max_minutes * 60
    best, results = None, []
    for hp in variants:
        if time.time() >= deadline:
            print(f"variant {hp.name}: skipped, out of time")
            continue
        print(f"variant {hp.name}: {vars(hp)}")
        torch.manual_seed(args.seed)
        model = build_model(vocab_size, device)
        got, log, run = train_variant(model, stream, val_windows, hp, args.seed, deadline, device)
        results.append(dict(name=hp.name, hp=vars(hp), best_val_loss=got["val_loss"], best_step=got["step"],
                            best_tokens=got["tokens"], run=run, log=log))
        if best is None or got["val_loss"] < best[0]["val_loss"]:
            best = (got, results[-1])
        del model
    model = build_model(vocab_size, device)
    model.load_state_dict(best[0]["state"])
    return model, best[1], results


def save(model, tok, out):
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.safetensors*"):
        stale.unlink()
    model = model.to(torch.bfloat16)
    try:
        model.save_pretrained(str(out), safe_serialization=True)
    except TypeError:  # a transformers that writes only safetensors and dropped the flag
        model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    transformers.GenerationConfig(bos_token_id=0, eos_token_id=1, do_sample=False).save_pretrained(str(out))
    # transformers 5 keeps the template in chat_template.jinja; older readers look in tokenizer_config.json.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    files = sorted(p.name for p in out.iterdir())
    print("saved:", ", ".join(f"{n} ({(out / n).stat().st_size} B)" for n in files))


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t_start = time.time()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")
    docs = load_documents(args.corpus)
    train_texts = [d["text"] for d in docs["train"]]
    tok = train_tokenizer(train_texts)
    stream = token_stream(tok, train_texts, eos_id=1)
    val_text = "\n\n".join(d["text"] for d in docs["val"]) + "\n"
    val_windows = eval_windows(tok.encode(val_text, add_special_tokens=False), 0)
    bytes_per_token = sum(len(t.encode()) for t in train_texts) / len(stream)
    print(f"tokenizer + data: {time.time() - t_start:.1f} s; train stream {len(stream)} tokens "
          f"({bytes_per_token:.2f} bytes/token), val {sum(len(w) - 1 for w in val_windows)} tokens")
    variants = parse_sweep(args.sweep)
    n_params = sum(p.numel() for p in build_model(len(tok), "cpu").parameters())
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"model: {n_params} parameters; device {gpu}; {len(variants)} variants")
    model, chosen, results = sweep(variants, len(tok), stream, val_windows, args, device)
    print(f"chosen: {chosen['name']} step {chosen['best_step']} val {chosen['best_val_loss']:.4f}")
    out = Path(args.out)
    save(model, tok, out)
    facts = dict(args=vars(args), n_params=n_params, train_stream_tokens=len(stream), chosen=chosen,
                 sweep=[{k: v for k, v in r.items() if k != "log"} for r in results], gpu=gpu,
                 docs={k: len(v) for k, v in docs.items()}, bytes_per_token=bytes_per_token,
                 train_minutes=sum(r["run"]["minutes"] for r in results), wall_minutes=(time.time() - t_start) / 60)
    report.evaluate_and_write(out, Path(args.heldout), Path(args.golden), stream, facts, device)
    print(f"all done in {(time.time() - t_start) / 60:.2f} min")


if __name__ == "__main__":
    main()
