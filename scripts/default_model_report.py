"""Evaluation, golden numbers and model card of the built-in default model.

Called by train_default_model.py after saving. Everything here reloads the SAVED directory in
float32 (the bf16 weights upcast exactly) with eager attention and TF32 off, so the numbers are
the ones an engine reading models/default must reproduce.
"""
import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

WINDOW = 512
MAX_NEW_TOKENS = 48
EOS_ID = 1
PROMPTS = ["And God said", "The secret of a happy life is", "CYNIC, n."]


def reload(out, device):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:  # transformers 5 names it dtype; 4.x only knows torch_dtype
        model = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32,
                                                                  attn_implementation="eager")
    except TypeError:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(out), torch_dtype=torch.float32,
                                                                  attn_implementation="eager")
    if next(model.parameters()).dtype != torch.float32:
        raise SystemExit("reloaded model is not float32")
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    return model.to(device).eval(), tok


@torch.no_grad()
def window_nll(model, ids, bos_id, device):
    """The held-out protocol: chunks of WINDOW-1 tokens, each fed as [bos] + chunk; every chunk
    token is predicted from the positions before it. Returns (sum of NLL in float64, tokens)."""
    chunk = WINDOW - 1
    total, count = 0.0, 0
    for i in range(0, len(ids), chunk):
        window = torch.tensor([[bos_id] + ids[i:i + chunk]], device=device)
        logprobs = F.log_softmax(model(input_ids=window).logits[0, :-1].float(), dim=-1)
        picked = logprobs.gather(1, window[0, 1:, None])[:, 0]
        total += -picked.double().sum().item()
        count += window.shape[1] - 1
    return total, count


@torch.no_grad()
def greedy_with_margins(model, prompt_ids, device):
    """Greedy decoding by full forward passes, recording top1 - top2 of each step's logits."""
    ids, new, margins = list(prompt_ids), [], []
    for _ in range(MAX_NEW_TOKENS):
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float()
        top = torch.topk(logits, 2)
        margins.append((top.values[0] - top.values[1]).item())
        nxt = int(top.indices[0])
        ids.append(nxt)
        new.append(nxt)
        if nxt == EOS_ID:
            break
    return new, margins


@torch.no_grad()
def hf_greedy(model, prompt_ids, device):
    out = model.generate(torch.tensor([prompt_ids], device=device), max_new_tokens=MAX_NEW_TOKENS,
                         do_sample=False, eos_token_id=EOS_ID, pad_token_id=EOS_ID)
    new = out[0, len(prompt_ids):].tolist()
    return new[:new.index(EOS_ID) + 1] if EOS_ID in new else new


def prompt_goldens(model, tok, device):
    goldens = []
    for text in PROMPTS:
        prompt_ids = tok(text)["input_ids"]
        if prompt_ids[0] != tok.bos_token_id:
            raise SystemExit(f"tokenizer did not prepend <|bos|> to {text!r}: {prompt_ids}")
        new, margins = greedy_with_margins(model, prompt_ids, device)
        via_generate = hf_greedy(model, prompt_ids, device)
        if via_generate != new:
            print(f"WARNING: generate() and the manual greedy loop differ for {text!r}:\n  {via_generate}\n  {new}")
        goldens.append(dict(text=text, token_ids=prompt_ids, greedy=new,
                            greedy_text=tok.decode(new, skip_special_tokens=True), min_margin=min(margins),
                            margins=margins))
        print(f"greedy {text!r} -> {goldens[-1]['greedy_text']!r} (min margin {min(margins):.4f})")
    return goldens


def train_sample_loss(model, stream, n_windows, bos_id, device):
    """Mean loss on n evenly spaced training windows, same protocol as held-out."""
    chunk = WINDOW - 1
    step = max(chunk, (len(stream) - chunk) // n_windows)
    total, count = 0.0, 0
    for start in range(0, len(stream) - chunk, step)[:n_windows]:
        s, c = window_nll(model, stream[start:start + chunk].tolist(), bos_id, device)
        total, count = total + s, count + c
    return total / count


def check_chat_template(tok):
    text = tok.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False,
                                   add_generation_prompt=True)
    if text != "<|bos|><|user|>Hello<|eos|><|assistant|>":
        print(f"WARNING: chat template renders {text!r}")
    return text


def evaluate_and_write(out, heldout_path, golden_path, stream, facts, device):
    model, tok = reload(out, device)
    check_chat_template(tok)
    heldout_text = heldout_path.read_text(encoding="utf-8")
    ids = tok.encode(heldout_text, add_special_tokens=False)
    nll, count = window_nll(model, ids, tok.bos_token_id, device)
    facts["heldout"] = dict(loss=nll / count, ppl=math.exp(nll / count), tokens=count,
                            bytes=len(heldout_text.encode()), bits_per_byte=nll / math.log(2) / len(heldout_text.encode()))
    facts["train_sample_loss"] = train_sample_loss(model, stream, facts["args"]["train_loss_windows"],
                                                   tok.bos_token_id, device)
    print(f"held-out: {count} tokens, loss {nll / count:.4f}, ppl {facts['heldout']['ppl']:.4f}; "
          f"train sample loss {facts['train_sample_loss']:.4f}")
    prompts = prompt_goldens(model, tok, device)
    golden = dict(transformers_version=transformers.__version__, torch_version=torch.__version__,
                  heldout_file="corpus/heldout.txt", heldout_ppl=facts["heldout"]["ppl"], heldout_tokens=count,
                  window=WINDOW, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=EOS_ID, prompts=prompts)
    golden_path.parent.mkdir(parents=True, exist_ok=True)
    golden_path.write_text(json.dumps(golden, indent=2, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(model_card(facts, prompts))
    print(f"wrote {golden_path} and {out / 'README.md'}")


def sweep_rows(f):
    rows = []
    for r in f["sweep"]:
        hp, mark = r["hp"], " (chosen)" if r["name"] == f["chosen"]["name"] else ""
        rows.append(f"| {r['name']}{mark} | {hp['batch']} | {hp['lr']:g} | {hp['weight_decay']:g} | {hp['steps']} | "
                    f"{r['run']['steps']} | {r['best_step']} | {r['best_val_loss']:.4f} |")
    return "\n".join(rows)


def model_card(f, prompts):
    c = f["chosen"]
    hp, run, h, stream_tokens = argparse.Namespace(**c["hp"]), c["run"], f["heldout"], f["train_stream_tokens"]
    log_rows = "\n".join(f"| {e['step']} | {e['epochs']:.2f} | {e['lr']:.2e} | {e['train_loss']:.4f} | {e['val_loss']:.4f} |"
                         for e in c["log"])
    samples = "\n\n".join(f"**{p['text']!r}** →\n\n```\n{p['text']}{p['greedy_text']}\n```\n"
                          f"({len(p['greedy'])} tokens{', ends with <|eos|>' if p['greedy'][-1:] == [EOS_ID] else ''}; "
                          f"smallest top-1/top-2 logit gap {p['min_margin']:.3f})" for p in prompts)
    return f"""# vllmd default model

The model `./vllmd` uses when no `--model` is given: a small Llama trained from scratch on
public-domain and freely redistributable English text from Debian packages. It writes
King-James-style prose, fortune-cookie quips and Devil's-Dictionary definitions. It is a test and
demo model, not an assistant.

## Data

Built by `scripts/fetch_corpus.sh` (packages, versions and licence lines: `corpus/SOURCES.md`):

| source | Debian package | licence | training text |
| --- | --- | --- | --- |
| King James Bible (1611), one chapter a document, one verse a line | bible-kjv-text 4.38 | public domain (expired) | 4.12 MB |
| Fortune cookies (all non-offensive sets but ascii-art, pratchett, translate-me) | fortunes, fortunes-min 1:1.99.1-7.3 | BSD (fortune-mod) | 2.56 MB |
| The Devil's Dictionary, Ambrose Bierce (1911), one entry a document | dict-devil 1.0-13.1 | public domain (expired) | 0.36 MB |

{f['docs']['train']:,} training documents, joined by `<|eos|>` ({f['train_stream_tokens']:,} tokens).
Before anything was trained, a contiguous slice of each source was set aside: the **test** text
`corpus/heldout.txt` (the book of Ruth, 123 fortunes, 25 dictionary entries; {h['bytes']:,} bytes),
never trained on and never used for any choice, and a **validation** slice (Jonah and other
fortunes and entries; {f['docs']['val']} documents) used only to pick the checkpoint.

## Tokenizer

Byte-level BPE (`tokenizers`), 4,096 tokens trained on the training text: `<|bos|>`=0,
`<|eos|>`=1, `<|user|>`=2, `<|assistant|>`=3, then the 256 byte symbols and merges. ByteLevel
pre-tokenizer (add_prefix_space=False) and decoder; the post-processor prepends `<|bos|>`.
About {f['bytes_per_token']:.2f} bytes per token on the training text. Chat template (tokenizer_config.json and
chat_template.jinja): `<|bos|>` then `<|user|>…<|eos|>` / `<|assistant|>…<|eos|>` turns, ending
with `<|assistant|>` when a generation prompt is asked for. The model never saw chat turns in
training, so chat replies are plain continuations.

## Architecture

`LlamaForCausalLM`: vocab 4,096, hidden 320, 6 layers, 5 attention heads of 64, 1 key/value head
(GQA), MLP 864 (SiLU), RoPE theta 10,000, RMSNorm eps 1e-5, tied input/output embeddings, context
512. **{f['n_params']:,} parameters**, stored in bfloat16 (`model.safetensors`).

## Training

`scripts/train_default_model.py` on one {f['gpu']}: PyTorch bf16 autocast, AdamW (betas 0.9/0.95,
weight decay on matrices only), warmup then cosine decay to 0.1× the peak learning rate, gradient
clipping 1.0, windows of 512 tokens (each is `<|bos|>` + 511 tokens of the stream, starting
anywhere, as in the held-out protocol), validation every 100 steps, stopping after 4
evaluations without improvement. The corpus overfits after about 8 epochs, and a schedule trains
in well under a minute, so the run trained these schedules from the same initialisation and kept
the one with the lowest validation loss, at its best step:

| variant | batch | peak lr | weight decay | schedule steps | steps run | best step | best val loss |
| --- | --- | --- | --- | --- | --- | --- | --- |
{sweep_rows(f)}

Chosen: **{c['name']}**, weights of **step {c['best_step']}** ({c['best_tokens']:,} tokens seen,
{c['best_tokens'] / stream_tokens:.1f} epochs of the {stream_tokens:,}-token stream; that variant ran {run['steps']} steps,
{run['tokens']:,} tokens, {run['minutes']:.2f} min). All variants: {f['train_minutes']:.2f} min of training;
tokenizer, data and training {f['wall_minutes']:.1f} min. Log of the chosen variant:

| step | epochs | lr | train loss (batch) | val loss |
| --- | --- | --- | --- | --- |
{log_rows}

## Results

Measured on the saved bf16 weights reloaded in float32 (eager attention, TF32 off):

| | loss (nats/token) | perplexity |
| --- | --- | --- |
| training text (sample of {f['args']['train_loss_windows']} windows) | {f['train_sample_loss']:.4f} | {math.exp(f['train_sample_loss']):.2f} |
| validation (at the chosen step, bf16 autocast) | {c['best_val_loss']:.4f} | {math.exp(c['best_val_loss']):.2f} |
| **held-out test, corpus/heldout.txt** | **{h['loss']:.4f}** | **{h['ppl']:.4f}** |

Held-out: {h['tokens']:,} tokens, {h['bits_per_byte']:.3f} bits per byte. Protocol (what
`vllmd eval-ppl` reproduces): `ids = tok.encode(text, add_special_tokens=False)`; cut `ids` into
consecutive chunks of 511; each window is `[<|bos|>] + chunk`; every chunk token is predicted from
the positions before it (the first from `<|bos|>`); perplexity = exp(sum of NLL over all chunk
tokens / their number), summed in float64. Goldens: `test/fixtures/default-golden.json`.

## Samples (greedy, at most {MAX_NEW_TOKENS} new tokens)

{samples}

## Limitations

- Tiny and trained on ~7 MB: it imitates the style of its three sources, with little sense; facts,
  arithmetic, instructions and chat are beyond it.
- The text is old (1611, 1881–1906) or dated (fortune files of the 1970s–2000s, IRC logs) and
  reflects the views of its time; fortunes quote many people, some of them still in copyright as
  quotations; the sets Debian marks offensive were left out, but not every fortune is polite.
- Context is 512 tokens: it never saw a longer sequence.
- It repeats itself in long greedy continuations; sample with a temperature for variety.
"""
