#!/usr/bin/env python3
"""Write tiny Hugging Face models with golden outputs for the CPU test suite.

Runs once on the GPU machine (PyTorch, transformers, tokenizers; no network):
    python3 scripts/make_fixtures.py test/fixtures [--device cuda|cpu]
Every number in the goldens comes from transformers itself, in float32 with TF32 off, so the
vllmd backends are compared with the reference implementation and not with our own reading of it.
"""
import argparse
import inspect
import json
import math
import os
import shutil
from pathlib import Path

# The GPU machine has no network: make every Hugging Face lookup local before the libraries load.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

from fixture_goldens import (MAX_NEW_TOKENS, batch_golden, check_saved_tensors, config_style,  # noqa: E402
                             effective_rope, greedy_reference, logit_drift, prompt_golden, rope_golden,
                             tokenizer_golden, warn)

SPECIALS = ["<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>"]
TOKENIZER_VOCAB = 384
# Every role but "assistant" renders as a user turn, so the template needs no raise_exception().
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<|assistant|>{% else %}<|user|>{% endif %}"
    "{{ message['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TEXT_PROMPTS = [("text_fox", "The quick brown fox"), ("text_multibyte", "We met at the café 🙂 and")]
MIN_MARGIN = 1e-3
SEED_TRIES = 20
PROMPT_SEED = 1234
LM_HEAD_GAIN = 4.0  # logits std of about 4 keeps top-1/top-2 gaps far above float32 noise
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 32}
COMMON = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, max_position_embeddings=256,
              rms_norm_eps=1e-5)
MODEL_SPECS = [
    dict(name="llama", config_class="LlamaConfig", seed=1000, rope_theta=10000.0, rope_scaling=None,
         shard="100KB", long_prompt=False,
         extra=dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)),
    dict(name="llama3", config_class="LlamaConfig", seed=2000, rope_theta=500000.0, rope_scaling=LLAMA3_SCALING,
         shard=None, long_prompt=True,
         extra=dict(num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)),
    dict(name="mistral", config_class="MistralConfig", seed=3000, rope_theta=10000.0, rope_scaling=None,
         shard=None, long_prompt=False,
         extra=dict(num_attention_heads=4, num_key_value_heads=1, sliding_window=None)),
    dict(name="qwen2", config_class="Qwen2Config", seed=4000, rope_theta=10000.0, rope_scaling=None,
         shard=None, long_prompt=False,
         extra=dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                    use_sliding_window=False)),
]
README_BEGIN = "<!-- make_fixtures:begin -->"
README_END = "<!-- make_fixtures:end -->"


def train_tokenizer(corpus_path):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    lines = corpus_path.read_text(encoding="utf-8").splitlines(keepends=True)
    tok.train_from_iterator(lines, trainer=trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", bos)])
    return tok


def wrap_tokenizer(raw):
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|bos|>", eos_token="<|eos|>",
                                              clean_up_tokenization_spaces=False)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def make_prompts(hf, vocab_real, bos, warnings):
    """Returns the prompts every model gets and the long one only llama3 gets."""
    gen = torch.Generator().manual_seed(PROMPT_SEED)

    def random_ids(length):
        return [bos] + torch.randint(len(SPECIALS), vocab_real, (length - 1,), generator=gen).tolist()

    short, medium, long = random_ids(7), random_ids(40), random_ids(150)
    prompts = [dict(name="ids_7", text=None, token_ids=short), dict(name="ids_40", text=None, token_ids=medium)]
    for name, text in TEXT_PROMPTS:
        ids = list(hf(text, add_special_tokens=True)["input_ids"])
        if ids[0] != bos:
            warn(warnings, f"HF tokenizer did not prepend BOS to {text!r}: {ids}")
        prompts.append(dict(name=name, text=text, token_ids=ids))
    return prompts, dict(name="ids_150", text=None, token_ids=long)


def init_arg_names(cls):
    names = set(inspect.signature(cls.__init__).parameters)
    return names | set(getattr(cls, "__dataclass_fields__", {}))


def build_config(spec, vocab_size, special_ids, warnings):
    cls = getattr(transformers, spec["config_class"])
    kwargs = dict(COMMON, **spec["extra"], vocab_size=vocab_size, bos_token_id=special_ids["<|bos|>"],
                  eos_token_id=special_ids["<|eos|>"])
    scaling = spec["rope_scaling"]
    if "rope_parameters" in init_arg_names(cls):  # transformers 5.x
        rope = dict(scaling or {"rope_type": "default"}, rope_theta=spec["rope_theta"])
        config, path = cls(**kwargs, rope_parameters=rope), "rope_parameters"
    else:  # transformers 4.x
        config, path = cls(**kwargs, rope_theta=spec["rope_theta"], rope_scaling=scaling), "rope_theta/rope_scaling"
    rope = effective_rope(config)
    wanted_type = (scaling or {}).get("rope_type", "default")
    if rope.get("rope_theta") != spec["rope_theta"] or rope.get("rope_type", rope.get("type")) != wanted_type:
        warn(warnings, f"config kept rope {rope}, wanted theta {spec['rope_theta']} type {wanted_type}")
    print(f"  config: {spec['config_class']} built with {path}; effective rope {rope}")
    return config


def instantiate(config):
    try:
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        path = "from_config(attn_implementation='eager')"
    except (TypeError, ValueError) as err:
        config._attn_implementation = "eager"
        model = transformers.AutoModelForCausalLM.from_config(config)
        path = f"from_config after setting config._attn_implementation ({err!r})"
    if getattr(model.config, "_attn_implementation", None) != "eager" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
        path += " + set_attn_implementation"
    return model.float().eval(), path


def fill_parameters(model, seed):
    """Replaces HF's small init with large values so greedy choices have clear margins."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(tuple(param.shape), generator=gen, dtype=torch.float32)
        if name.endswith("bias"):
            value = 0.1 * noise
        elif param.ndim == 1:
            value = 1.0 + 0.1 * noise
        elif "embed_tokens" in name:
            value = noise
        elif param.ndim == 2:
            gain = LM_HEAD_GAIN if "lm_head" in name else 1.0
            value = noise * (gain / math.sqrt(param.shape[1]))
        else:
            raise ValueError(f"no fill rule for parameter {name} of shape {tuple(param.shape)}")
        param.copy_(value.to(param.device))


def choose_seed(spec, config, prompts, eos, device):
    best = None
    for seed in range(spec["seed"], spec["seed"] + SEED_TRIES):
        torch.manual_seed(seed)
        model, path = instantiate(config)
        fill_parameters(model, seed)
        model.to(device)
        margin = min(min(greedy_reference(model, p["token_ids"], eos, device)[1]) for p in prompts)
        print(f"  seed {seed}: min greedy margin {margin:.4g} ({path})")
        if best is None or margin > best[1]:
            best = (seed, margin, model)
        if margin >= MIN_MARGIN:
            break
    return best


def save_model_dir(model, hf, spec, special_ids, out, warnings):
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shard = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    try:
        model.save_pretrained(str(out), safe_serialization=True, **shard)
        print("  save_pretrained(safe_serialization=True)")
    except TypeError as err:
        model.save_pretrained(str(out), **shard)
        print(f"  save_pretrained without safe_serialization ({err!r})")
    hf.save_pretrained(str(out))
    transformers.GenerationConfig(bos_token_id=special_ids["<|bos|>"], eos_token_id=special_ids["<|eos|>"],
                                  do_sample=False).save_pretrained(str(out))
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    indexed = (out / "model.safetensors.index.json").exists()
    print(f"  {len(shards)} safetensors file(s), index: {indexed}")
    if spec["shard"] and (len(shards) < 2 or not indexed):
        warn(warnings, f"wanted a sharded checkpoint, got {shards} (index {indexed})")
    if list(out.glob("*.bin")):
        warn(warnings, "a .bin checkpoint was written next to safetensors")
    return shards


def reload_model(out, device):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out), attn_implementation="eager")
    return model.float().to(device).eval()


def make_model_fixture(spec, ctx):
    print(f"\n== {spec['name']}")
    warnings = []
    eos, device = ctx["special_ids"]["<|eos|>"], ctx["device"]
    config = build_config(spec, ctx["vocab_model"], ctx["special_ids"], warnings)
    prompts = ctx["prompts"] + ([ctx["long_prompt"]] if spec["long_prompt"] else [])
    seed, margin, model = choose_seed(spec, config, prompts, eos, device)
    if margin < MIN_MARGIN:
        warn(warnings, f"no seed reached margin {MIN_MARGIN}; kept seed {seed} with {margin:.3g}")
    out = ctx["out_root"] / spec["name"]
    shards = save_model_dir(model, ctx["hf"], spec, ctx["special_ids"], out, warnings)
    tensors = check_saved_tensors(model, out, warnings)
    reloaded = reload_model(out, device)
    goldens = [prompt_golden(reloaded, p, eos, device, warnings) for p in prompts]
    drift = logit_drift(model, goldens, device)
    print(f"  reloaded vs in-memory: max |logit diff| = {drift:.3g}")
    if drift > 1e-5:
        warn(warnings, f"reloaded model differs from the in-memory one by {drift}")
    golden = dict(transformers_version=transformers.__version__, torch_version=torch.__version__,
                  tokenizers_version=tokenizers.__version__, device=ctx["device_name"], dtype="float32",
                  attn_implementation="eager", seed=seed, max_new_tokens=MAX_NEW_TOKENS,
                  config_style=config_style(out), rope=rope_golden(reloaded, reloaded.config, spec, warnings),
                  safetensors_files=shards, tensors=tensors, prompts=goldens,
                  batch=batch_golden(reloaded, goldens, eos, device, warnings),
                  tokenizer=tokenizer_golden(ctx["hf"], out / "tokenizer.json", ctx["special_ids"], warnings),
                  warnings=warnings)
    (out / "golden.json").write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n",
                                     encoding="utf-8")
    files = sorted(p for p in out.iterdir() if p.is_file())
    return dict(name=spec["name"], params=sum(p.numel() for p in reloaded.parameters()), files=len(files),
                bytes=sum(p.stat().st_size for p in files), seed=seed,
                min_margin=min(g["min_margin"] for g in goldens),
                greedy_lengths=[len(g["greedy"]) for g in goldens], warnings=warnings)


def summary_lines(rows, total_bytes):
    lines = ["| model | params | files | bytes | seed | min margin | greedy lengths |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['params']} | {r['files']} | {r['bytes']} | {r['seed']} | "
                     f"{r['min_margin']:.4g} | {r['greedy_lengths']} |")
    lines.append(f"\nTotal bytes under the fixtures directory: {total_bytes}")
    return lines


def update_readme(out_root, rows, ctx, total_bytes):
    special = ["| token | id |", "|---|---|"] + [f"| `{t}` | {i} |" for t, i in ctx["special_ids"].items()]
    section = [README_BEGIN, "", f"Generated with transformers {transformers.__version__}, tokenizers "
               f"{tokenizers.__version__}, torch {torch.__version__} on {ctx['device_name']}. Tokenizer "
               f"vocabulary: {len(ctx['hf'])} tokens; model vocab_size: {ctx['vocab_model']}.", ""] + special
    section += [""] + summary_lines(rows, total_bytes) + ["", README_END]
    path = out_root / "README.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        text = head + "\n".join(section) + rest.split(README_END, 1)[1]
    else:
        text = text + ("\n" if text else "") + "\n".join(section) + "\n"
    path.write_text(text, encoding="utf-8")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", default="test/fixtures")
    parser.add_argument("--device", choices=["cuda", "cpu"],
                        default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args()


def main():
    args = parse_args()
    print(f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, torch {torch.__version__}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.set_default_dtype(torch.float32)
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    out_root = Path(args.out_dir)
    out_root.mkdir(parents=True, exist_ok=True)
    raw = train_tokenizer(Path(__file__).resolve().parent / "fixture_corpus.txt")
    hf = wrap_tokenizer(raw)
    special_ids = {t: raw.token_to_id(t) for t in SPECIALS}
    vocab_real = len(hf)
    print(f"tokenizer: {vocab_real} tokens, specials {special_ids}")
    if sorted(special_ids.values()) != list(range(len(SPECIALS))):
        raise RuntimeError(f"special tokens should take ids 0..{len(SPECIALS) - 1}: {special_ids}")
    setup_warnings = []
    prompts, long_prompt = make_prompts(hf, vocab_real, special_ids["<|bos|>"], setup_warnings)
    ctx = dict(hf=hf, special_ids=special_ids, vocab_model=(vocab_real + 7) // 8 * 8, prompts=prompts,
               long_prompt=long_prompt, device=args.device, device_name=device_name, out_root=out_root)
    with torch.no_grad():
        rows = [make_model_fixture(spec, ctx) for spec in MODEL_SPECS]
    total_bytes = sum(p.stat().st_size for p in out_root.rglob("*") if p.is_file())
    update_readme(out_root, rows, ctx, total_bytes)
    print("\n" + "\n".join(summary_lines(rows, total_bytes)))
    for message in setup_warnings + [f"{r['name']}: {w}" for r in rows for w in r["warnings"]]:
        print(f"WARNING: {message}")


if __name__ == "__main__":
    main()
