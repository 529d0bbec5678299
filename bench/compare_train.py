"""`ftui bench train` against trl's `SFTTrainer` + peft, in one run, on the same
model, data and settings (bench/train-smollm2.toml: SmolLM2-135M from the
embedded GGUF dequantized to fp32, LoRA r=8 all-linear, batch 8, max_length 64,
CPU), with gradient checkpointing on (trl's default) and off.

trl trains on exactly the rows ftui trains on: the script takes them from
`ftui inspect --json` (token ids and the completion mask), so both sides see the
same tokens. Tokens per second count non-padding tokens (trl's `num_tokens`);
the first step of each side warms up and is not counted. Peak memory is the
process's VmHWM after loading the model (CPU). Run nothing else meanwhile:
libtorch's threads slow down badly when the cores are shared.

    .venv/bin/python -m pip install -r tools/requirements.txt -c requirements.txt
    .venv/bin/python bench/compare_train.py [--steps 5]
"""

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "bench" / "train-smollm2.toml"
FTUI = ROOT / "target" / "release" / "ftui"
GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def vm_hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def ftui_rows():
    """The rows ftui trains on, as (input_ids, completion_mask)."""
    out = subprocess.run(
        [str(FTUI), "inspect", "--config", str(CONFIG), "--json", "--batches", "1000"],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        b = json.loads(line)
        for ids, labels, mask in zip(b["input_ids"], b["labels"], b["attention_mask"]):
            n = sum(mask)
            rows.append((ids[:n], [int(l != -100) for l in labels[:n]]))
    return rows


def ftui_figures(steps, gc):
    text = CONFIG.read_text().replace(
        "gradient_checkpointing = true", f"gradient_checkpointing = {str(gc).lower()}"
    )
    cfg = ROOT / "bench" / f".train-gc-{gc}.toml"
    cfg.write_text(text)
    try:
        out = subprocess.run(
            [str(FTUI), "bench", "train", "--config", str(cfg), "--steps", str(steps), "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
    finally:
        cfg.unlink()
    return json.loads(out)


def trl_figures(rows, steps, gc):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    # The Trainer refuses a model loaded from a GGUF (it counts as quantized):
    # move the dequantized float32 weights into a plain model of the same config.
    loaded = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    if tok.pad_token is None or tok.pad_token == tok.eos_token:
        tok.pad_token = tok.unk_token or tok.eos_token
    ds = Dataset.from_dict(
        {"input_ids": [r[0] for r in rows], "completion_mask": [r[1] for r in rows]}
    )

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

    clock = Clock()
    args = SFTConfig(
        output_dir=str(ROOT / "runs" / "bench-trl"),
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        max_steps=steps + 1,
        learning_rate=3e-4,
        logging_steps=1,
        max_length=64,
        gradient_checkpointing=gc,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        completion_only_loss=True,
        seed=42,
        dataloader_num_workers=0,
    )
    peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, peft_config=peft,
                         processing_class=tok, callbacks=[clock])
    Path("/proc/self/clear_refs").write_text("5")
    trainer.train()
    peak = vm_hwm()
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    seconds = clock.ends[-1] - clock.ends[0]
    return {
        "tokens_per_second": (tokens[-1] - tokens[0]) / seconds,
        "step_seconds": seconds / steps,
        "peak_memory_bytes": peak,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = ftui_rows()
    print(f"{len(rows)} rows, {sum(len(r[0]) for r in rows)} tokens")
    for gc in (True, False):
        f = ftui_figures(a.steps, gc)
        t = trl_figures(rows, a.steps, gc)
        print(
            f"gradient checkpointing {'on ' if gc else 'off'}: "
            f"ftui {f['tokens_per_second']:.0f} tok/s ({f['step_seconds']:.2f} s/step, "
            f"{f['peak_memory_bytes'] / 2**20:.0f} MiB) | "
            f"trl {t['tokens_per_second']:.0f} tok/s ({t['step_seconds']:.2f} s/step, "
            f"{t['peak_memory_bytes'] / 2**20:.0f} MiB) | "
            f"speed x{f['tokens_per_second'] / t['tokens_per_second']:.2f}, "
            f"memory x{f['peak_memory_bytes'] / max(t['peak_memory_bytes'], 1):.2f}"
        )


if __name__ == "__main__":
    main()
