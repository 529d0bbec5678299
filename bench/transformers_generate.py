"""Baseline for `ftui bench generate`: the same measurement with transformers.

Loads the embedded default GGUF in transformers (dequantized to fp32, CPU), warms
up, then measures
- prompt tokens/s: one forward over a 128-token prompt (no cache);
- generation tokens/s: greedy `generate` (do_sample=False, KV cache) of 64 new
  tokens from the chat prompt, EOS ignored so exactly 64 are made; the time
  includes the prompt's prefill, as a user waiting for 64 tokens sees it.
Each is the best of --repeats runs. Prints one JSON object:
{"prompt_tokens_per_second": ..., "tokens_per_second": ...}

Run from the repository root (needs tools/requirements.txt):
    .venv/bin/python bench/transformers_generate.py [--model models/X.gguf]
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("Yoda speaks in riddles, he does. The Force is strong in you, and patience "
        "you must learn before the trial in the swamp on Dagobah. ")


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
                        type=Path)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    logging.set_verbosity_error()
    logging.disable_progress_bar()

    tok = AutoTokenizer.from_pretrained(args.model.parent, gguf_file=args.model.name)
    model = AutoModelForCausalLM.from_pretrained(args.model.parent, gguf_file=args.model.name,
                                                 dtype=torch.float32).eval()
    long_ids = tok(TEXT * 20, add_special_tokens=False)["input_ids"][: args.prompt_tokens]
    prompt = torch.tensor([long_ids])
    chat = tok.apply_chat_template([{"role": "user", "content": "Tell me about the Force."}],
                                   tokenize=False, add_generation_prompt=True)
    chat_ids = torch.tensor([tok(chat, add_special_tokens=False)["input_ids"]])

    def prefill():
        model(prompt, use_cache=False)

    def generate():
        out = model.generate(chat_ids, attention_mask=torch.ones_like(chat_ids),
                             max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        assert out.shape[1] - chat_ids.shape[1] == args.tokens

    with torch.inference_mode():
        prefill()  # warm-up
        model.generate(chat_ids, attention_mask=torch.ones_like(chat_ids), max_new_tokens=4,
                       do_sample=False, pad_token_id=tok.pad_token_id)
        t_prompt = best_time(prefill, args.repeats)
        t_gen = best_time(generate, args.repeats)
    print(json.dumps({"prompt_tokens_per_second": prompt.shape[1] / t_prompt,
                      "tokens_per_second": args.tokens / t_gen}))


if __name__ == "__main__":
    main()
