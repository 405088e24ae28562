"""Golden outputs and consistency checks for scripts/make_fixtures.py.

Each function reads a saved fixture or a model and returns JSON-ready data; problems that should not
stop the one-shot run are printed and collected as warnings instead of raised.
"""
import json
import math

import torch
from tokenizers import Tokenizer

CHAT_MESSAGES = [{"role": "user", "content": "Hello there 🙂"},
                 {"role": "assistant", "content": "Hi! How can I help?"},
                 {"role": "user", "content": "Tell me about the café."}]
TOKENIZER_SAMPLES = ["The quick brown fox", "Meet me at the café 🙂", "日本語のテキスト", "🙂🚀 launch",
                     "naïve façade", "  leading spaces", "tabs\tand\nnewlines", "Unseen: Ωmega ñ 中文 🎉",
                     "<|user|>hi<|eos|><|assistant|>", ""]
MAX_NEW_TOKENS = 24


def warn(warnings, message):
    print(f"  WARNING: {message}")
    warnings.append(message)


def to_floats(tensor):
    values = tensor.detach().float().cpu().reshape(-1).tolist()
    if not all(math.isfinite(v) for v in values):
        raise RuntimeError("non-finite value in a golden tensor")
    return values


def effective_rope(config):
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        return dict(params)
    scaling = getattr(config, "rope_scaling", None) or {"rope_type": "default"}
    return dict(scaling, rope_theta=getattr(config, "rope_theta", None))


def greedy_reference(model, ids, eos, device):
    """Greedy decoding by full forwards, recording the top-1/top-2 logit gap of every choice."""
    seq, new, margins = list(ids), [], []
    for _ in range(MAX_NEW_TOKENS):
        logits = model(input_ids=torch.tensor([seq], device=device)).logits[0, -1].float()
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        token = int(torch.argmax(logits))
        new.append(token)
        seq.append(token)
        if token == eos:
            break
    return new, margins


def prompt_golden(model, prompt, eos, device, warnings):
    ids = prompt["token_ids"]
    inputs = torch.tensor([ids], device=device)
    last = model(input_ids=inputs).logits[0, -1]
    reference, margins = greedy_reference(model, ids, eos, device)
    out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=False,
                         max_new_tokens=MAX_NEW_TOKENS, eos_token_id=eos, pad_token_id=eos)
    sequences = out if torch.is_tensor(out) else out.sequences
    greedy = sequences[0, len(ids):].tolist()
    greedy = greedy[:greedy.index(eos) + 1] if eos in greedy else greedy
    if greedy != reference:
        warn(warnings, f"{prompt['name']}: generate() gave {greedy}, full forwards gave {reference}")
    return dict(name=prompt["name"], text=prompt["text"], token_ids=ids, last_logits=to_floats(last),
                greedy=greedy, min_margin=min(margins))


def logit_drift(model, goldens, device):
    """Largest last-position logit difference between a model and recorded goldens."""
    return max(float((model(input_ids=torch.tensor([g["token_ids"]], device=device)).logits[0, -1].float().cpu()
                      - torch.tensor(g["last_logits"])).abs().max()) for g in goldens)


def batch_golden(model, goldens, pad_id, device, warnings):
    """Last-position logits of all prompts in one left-padded forward, or None when they disagree."""
    try:
        width = max(len(g["token_ids"]) for g in goldens)
        rows = [[pad_id] * (width - len(g["token_ids"])) + g["token_ids"] for g in goldens]
        masks = [[0] * (width - len(g["token_ids"])) + [1] * len(g["token_ids"]) for g in goldens]
        ids, mask = torch.tensor(rows, device=device), torch.tensor(masks, device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        last = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].float().cpu()
        diff = max(float((last[i] - torch.tensor(g["last_logits"])).abs().max()) for i, g in enumerate(goldens))
        if not math.isfinite(diff) or diff > 1e-3:
            warn(warnings, f"batched logits differ from single ones by {diff}; batch golden skipped")
            return None
        print(f"  batch: max |batched - single| = {diff:.3g}")
        return dict(padding_side="left", pad_id=pad_id, position_ids="cumsum(attention_mask) - 1, clamped at 0",
                    prompt_names=[g["name"] for g in goldens], max_abs_diff_vs_single=diff,
                    last_logits=[to_floats(row) for row in last])
    except Exception as err:  # the batch entry is a cross-check, not worth failing the run for
        warn(warnings, f"batch golden skipped: {err!r}")
        return None


def llama3_inv_freq(plain, scaling):
    """Llama 3.1 frequency scaling, written from the published formula as an independent check."""
    old_len, factor = scaling["original_max_position_embeddings"], scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    scaled = []
    for freq in plain:
        wavelen = 2 * math.pi / freq
        if wavelen < old_len / high:
            scaled.append(freq)
        elif wavelen > old_len / low:
            scaled.append(freq / factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            scaled.append((1 - smooth) * freq / factor + smooth * freq)
    return scaled


def rope_golden(model, config, spec, warnings):
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    plain = (1.0 / (spec["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)))
    plain = plain.tolist()
    expected = llama3_inv_freq(plain, spec["rope_scaling"]) if spec["rope_scaling"] else plain
    buffers = [b for n, b in model.named_buffers() if n.endswith("inv_freq") and "original" not in n]
    golden = dict(effective=json.loads(json.dumps(effective_rope(config), default=str)), head_dim=head_dim,
                  inv_freq=None, entries_changed_by_scaling=None)
    if not buffers:
        warn(warnings, "no inv_freq buffer found on the model")
        return golden
    actual = to_floats(buffers[0])
    changed = sum(1 for a, p in zip(actual, plain) if abs(a - p) > 1e-6 * abs(p))
    worst = max(abs(a - e) / abs(e) for a, e in zip(actual, expected))
    print(f"  rope: {changed}/{len(actual)} inv_freq entries differ from unscaled; "
          f"max rel diff vs formula {worst:.2e}")
    if worst > 1e-5:
        warn(warnings, f"inv_freq differs from the reference formula by {worst:.2e}")
    golden.update(inv_freq=actual, entries_changed_by_scaling=changed)
    return golden


def tokenizer_golden(hf, tokenizer_json, special_ids, warnings):
    """Encodings from the saved tokenizer.json, cross-checked against the transformers wrapper."""
    raw = Tokenizer.from_file(str(tokenizer_json))
    encodings = []
    for text in TOKENIZER_SAMPLES:
        ids = raw.encode(text).ids
        if ids != list(hf(text, add_special_tokens=True)["input_ids"]):
            warn(warnings, f"tokenizer.json and transformers disagree on {text!r}")
        encodings.append(dict(text=text, ids=ids, decoded=raw.decode(ids, skip_special_tokens=True)))
    golden = dict(vocab_size=raw.get_vocab_size(with_added_tokens=True), special_ids=special_ids,
                  encodings=encodings, chat=None)
    try:
        rendered = hf.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
        golden["chat"] = dict(messages=CHAT_MESSAGES, add_generation_prompt=True, rendered=rendered,
                              token_ids=raw.encode(rendered, add_special_tokens=False).ids)
    except Exception as err:  # a missing jinja2 should not cost the model goldens
        warn(warnings, f"chat template golden skipped: {err!r}")
    return golden


def check_saved_tensors(model, out, warnings):
    """Returns {name: shape} of the saved tensors after checking they equal the in-memory ones."""
    from safetensors.torch import load_file
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    shapes = {}
    for path in sorted(out.glob("*.safetensors")):
        for name, tensor in load_file(str(path)).items():
            shapes[name] = list(tensor.shape)
            if tensor.dtype != torch.float32 or name not in state or not torch.equal(state[name], tensor):
                warn(warnings, f"saved tensor {name} ({tensor.dtype}) differs from the model")
    return shapes


def config_style(out):
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    style = "rope_parameters" if "rope_parameters" in saved else "rope_theta/rope_scaling"
    return dict(rope_style=style, config_keys=sorted(saved),
                chat_template_file=(out / "chat_template.jinja").exists())
