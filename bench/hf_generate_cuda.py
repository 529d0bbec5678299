"""transformers' speed on the same random model and prompt as `ftui bench
generate` (token ids 1000 + 37 i mod 5000), on CUDA, for the GPU check.

    python3 bench/hf_generate_cuda.py MODEL_DIR [bfloat16|float32]
"""

import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def best(fn, n=3):
    times = []
    for _ in range(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    path, dtype = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "bfloat16")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype),
                                                 attn_implementation="sdpa").cuda().eval()
    ids = torch.tensor([[1000 + (i * 37) % 5000 for i in range(128)]]).cuda()
    mask = torch.ones_like(ids)

    def gen(n):
        model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                       pad_token_id=0)

    with torch.inference_mode():
        model(ids)
        gen(4)
        t_prompt = best(lambda: model(ids))
        t1 = best(lambda: gen(1))
        t64 = best(lambda: gen(64))
    print(json.dumps({"dtype": dtype, "prompt_tokens_per_second": 128 / t_prompt,
                      "tokens_per_second": 63 / (t64 - t1)}))


if __name__ == "__main__":
    main()
