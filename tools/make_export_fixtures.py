"""Fixtures for ftui's export (tests/export.rs), from the Hugging Face stack.

1. tests/fixtures/export/peft-phi3/: a peft LoRA adapter on the tiny Phi-3 model, with
   random (non-zero) B so that merging it changes the logits.
2. Runs ftui's exporter (`cargo test --release --test export -- --ignored
   write_fixture_folders`) to write merged folders of the tiny llama / qwen2 / phi3
   models with their adapters, and the default model as an F16 GGUF, into
   target/export-fixtures/.
3. Loads each merged folder with `AutoModelForCausalLM.from_pretrained` (fp32) and
   `AutoTokenizer`, checks the merged model against peft's base + adapter, and records
   transformers' logits, `apply_chat_template` renders and the generation config's EOS
   list in tests/fixtures/export/merged-transformers.json.
4. Loads the default model (SmolLM2-135M-Instruct) exported to F16 GGUF by ftui with
   transformers' GGUF loader (`from_pretrained(dir, gguf_file=...)`) and records its
   log-probabilities of the scoring text's token ids (tests/fixtures/smollm2_gguf.json)
   in tests/fixtures/export/gguf-transformers.json.

CI compares ftui against that file and never runs transformers.
Run from the repository root: .venv/bin/python3 tools/make_export_fixtures.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "export"
FOLDERS = ROOT / "target" / "export-fixtures"

# Same cases as tests/export.rs CASES.
ADAPTERS = {
    "llama": FIX / "lora" / "peft-llama",
    "qwen2": FIX / "lora" / "peft-qwen2-rslora-all-linear",
    "phi3": OUT / "peft-phi3",
}
INPUT_IDS = [5, 17, 42, 99, 150, 7, 250, 3, 64, 128]
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a colour.\nJust one."},
    ],
    [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ],
]


def make_phi3_adapter():
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(FIX / "models" / "phi3", dtype=torch.float32)
    cfg = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, cfg)
    model.save_pretrained(OUT / "peft-phi3")
    (OUT / "peft-phi3" / "README.md").unlink(missing_ok=True)  # peft's model card stub
    # peft keeps target_modules as a set: sort it so reruns write the same file.
    config_path = OUT / "peft-phi3" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_folders():
    env = dict(os.environ, FTUI_EXPORT_FIXTURES=str(FOLDERS), LIBTORCH_USE_PYTORCH="1")
    env["PATH"] = str(ROOT / ".venv" / "bin") + os.pathsep + env["PATH"]
    subprocess.run(
        ["cargo", "test", "--release", "--test", "export", "--", "--ignored", "--exact",
         "write_fixture_folders"],
        cwd=ROOT, env=env, check=True,
    )


def record(arch):
    folder = FOLDERS / arch
    ids = torch.tensor([INPUT_IDS])
    merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(FIX / "models" / arch, dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, ADAPTERS[arch])
    with torch.no_grad():
        logits = merged(ids).logits[0]
        reference = peft(ids).logits[0]
    diff = (logits - reference).abs().max().item()
    print(f"{arch}: merged folder vs peft base+adapter: {diff:.2e}")
    assert diff < 1e-4, diff
    tok = AutoTokenizer.from_pretrained(folder)
    renders = []
    for i, conv in enumerate(CONVERSATIONS):
        for gen in (True, False):
            text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            renders.append({"conversation": i, "add_generation_prompt": gen, "text": text})
    eos = GenerationConfig.from_pretrained(folder).eos_token_id
    return {
        "logits": [[round(x, 6) for x in row] for row in logits.tolist()],
        "peft_max_diff": diff,
        "renders": renders,
        "generation_eos": eos,
    }


def record_gguf():
    golden = json.loads((FIX / "smollm2_gguf.json").read_text())
    token_ids = golden["score"]["token_ids"]
    model = AutoModelForCausalLM.from_pretrained(
        FOLDERS, gguf_file="smollm2-f16.gguf", dtype=torch.float32
    )
    with torch.no_grad():
        logits = model(torch.tensor([token_ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(token_ids[1:])[:, None])
    return {"token_ids": token_ids, "logprobs": [round(x, 6) for x in logprobs[:, 0].tolist()]}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    make_phi3_adapter()
    if "--no-cargo" not in sys.argv:
        write_folders()
    result = {
        "input_ids": INPUT_IDS,
        "conversations": CONVERSATIONS,
        "models": {arch: record(arch) for arch in ADAPTERS},
    }
    (OUT / "merged-transformers.json").write_text(json.dumps(result, indent=1) + "\n")
    (OUT / "gguf-transformers.json").write_text(json.dumps(record_gguf(), indent=1) + "\n")


if __name__ == "__main__":
    main()
