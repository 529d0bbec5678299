"""`ftui bench generate` against transformers' `generate`, in one run.

Both load the embedded default GGUF (SmolLM2-135M-Instruct, dequantized to fp32)
on the CPU and use the same prompt: 128 token ids `1000 + (37 * i) % 5000`.
- prompt tokens/s: one forward over the prompt (transformers: `model(prompt)`;
  ftui: the prefill of `generate`, first token included);
- generation tokens/s: greedy decoding with the KV cache, EOS ignored;
  transformers' rate is (N - 1) / (time(N new tokens) - time(1 new token)), so
  its prefill is not counted, as ftui's isn't.
Each figure is the best of --repeats runs. Run nothing else meanwhile: libtorch's
threads slow down badly when the cores are shared.

    .venv/bin/python -m pip install -r tools/requirements.txt -c requirements.txt
    .venv/bin/python bench/compare_generate.py
"""

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging

ROOT = Path(__file__).resolve().parent.parent


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def transformers_figures(model_path, prompt_tokens, tokens, repeats):
    torch.set_num_threads(os.cpu_count())
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(
        model_path.parent, gguf_file=model_path.name, dtype=torch.float32
    ).eval()
    ids = torch.tensor([[1000 + (i * 37) % 5000 for i in range(prompt_tokens)]])
    mask = torch.ones_like(ids)

    def gen(n):
        out = model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=0)
        assert out.shape[1] - ids.shape[1] == n

    with torch.inference_mode():
        model(ids)  # warm-up
        gen(4)
        t_prompt = best_time(lambda: model(ids), repeats)
        t_one = best_time(lambda: gen(1), repeats)
        t_all = best_time(lambda: gen(tokens), repeats)
    return {
        "prompt_tokens_per_second": prompt_tokens / t_prompt,
        "tokens_per_second": (tokens - 1) / (t_all - t_one),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path,
                        default=ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--ftui", type=Path, default=ROOT / "target" / "release" / "ftui")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ftui = json.loads(subprocess.run(
        [str(args.ftui), "bench", "generate", "--model", str(args.model), "--device", "cpu",
         "--dtype", "float32", "--tokens", str(args.tokens),
         "--prompt-tokens", str(args.prompt_tokens), "--repeats", str(args.repeats), "--json"],
        check=True, capture_output=True, text=True).stdout)
    hf = transformers_figures(args.model, args.prompt_tokens, args.tokens, args.repeats)
    print(json.dumps({
        "ftui": ftui,
        "transformers": hf,
        "prompt_speedup": ftui["prompt_tokens_per_second"] / hf["prompt_tokens_per_second"],
        "generation_speedup": ftui["tokens_per_second"] / hf["tokens_per_second"],
    }, indent=2))


if __name__ == "__main__":
    main()
