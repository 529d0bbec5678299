"""A random-weight model with SmolLM2-135M's shape, for speed checks where the
real weights cannot travel (GPU machines without network). Saved as a Hugging
Face folder with the tiny fixture tokenizer (ids above its vocabulary still run
through the model; only decoding them shows nothing).

    python3 bench/make_random_model.py OUT_DIR
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent


def main():
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, rms_norm_eps=1e-5, rope_theta=100000.0,
                         max_position_embeddings=8192, tie_word_embeddings=True, bos_token_id=1,
                         eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ROOT / "tests/fixtures/models/llama" / f, out / f)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
