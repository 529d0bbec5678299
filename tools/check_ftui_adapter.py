"""Check that an adapter written by ftui loads in peft and gives ftui's logits.

ftui writes adapters in peft's format (``adapter_config.json`` +
``adapter_model.safetensors``, DESIGN.md "adapters that load in both directions").
This script is the Python half of that round trip, run at ``make fixtures`` time (CI
has no Python ML stack): it loads ``ADAPTER_DIR`` with
``PeftModel.from_pretrained(base, ADAPTER_DIR)`` on a fixture base (fp32, eager
attention, eval mode), runs it on a fixed batch, and compares the logits with
``--expected``.

Usage (from the repository root, with the fixture venv):

    # ftui wrote runs/x/adapter_* for the Llama fixture and its own logits for the
    # batch of tests/fixtures/lora/expected.safetensors to ftui-logits.safetensors:
    .venv/bin/python tools/check_ftui_adapter.py runs/x --expected ftui-logits.safetensors

    # self-check against the committed peft fixture:
    .venv/bin/python tools/check_ftui_adapter.py tests/fixtures/lora/peft-llama \\
        --expected tests/fixtures/lora/expected.safetensors --key peft-llama.logits

    # the Qwen2 fixture base instead of the Llama one:
    .venv/bin/python tools/check_ftui_adapter.py DIR --base tests/fixtures/models/qwen2 \\
        --expected FILE --key peft-qwen2-rslora-all-linear.logits

Inputs: ``input_ids`` and ``attention_mask`` from the ``--expected`` file when it
has them, else from ``--inputs`` (default ``tests/fixtures/lora/expected.safetensors``:
[2, 10], row 1 right-padded by 3). Logits: the tensor ``--key`` of the expected
file, or ``logits`` when it has one, or its only float tensor; shape [batch, seq,
vocab]. Only positions with ``attention_mask == 1`` decide the verdict; the
difference over all positions is reported too.

Output: one JSON object on stdout: ``adapter``, ``base``, ``shape``,
``max_abs_diff`` (real tokens), ``max_abs_diff_all_positions``, ``tolerance``,
``ok``, ``missing_keys`` / ``unexpected_keys`` (adapter file vs what peft's model
expects: keys peft would silently leave at their init), ``warnings`` (peft's), and
``logits`` (nested lists) when ``--print-logits`` or no ``--expected`` is given.
``--save FILE`` writes peft's logits (and the inputs) as safetensors.

Exit status: 0 when every key matched and max_abs_diff <= --tolerance (default
1e-3); 1 when the logits differ or keys are missing/unexpected; 2 when the adapter,
base or expected file cannot be read.
"""

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fail(msg):
    print(f"check_ftui_adapter: {msg}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description="Load an ftui adapter into peft and compare logits.")
    ap.add_argument("adapter_dir", help="folder with adapter_config.json + adapter_model.safetensors")
    ap.add_argument("--base", default=str(ROOT / "tests/fixtures/models/llama"),
                    help="base model folder (default: the Llama fixture)")
    ap.add_argument("--expected", help="safetensors with the logits to compare against")
    ap.add_argument("--key", help="tensor name of the logits in --expected")
    ap.add_argument("--inputs", default=str(ROOT / "tests/fixtures/lora/expected.safetensors"),
                    help="safetensors with input_ids/attention_mask, when --expected has none")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--print-logits", action="store_true", help="include peft's logits in the JSON")
    ap.add_argument("--save", help="write peft's logits and the inputs to this safetensors file")
    args = ap.parse_args()

    import torch
    from safetensors.torch import load_file, save_file
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(min(2, torch.get_num_threads()))

    adapter = Path(args.adapter_dir)
    weights = adapter / "adapter_model.safetensors"
    if not (adapter / "adapter_config.json").is_file() or not weights.is_file():
        fail(f"{adapter}: needs adapter_config.json and adapter_model.safetensors")

    expected, want = {}, None
    if args.expected:
        try:
            expected = load_file(args.expected)
        except Exception as e:  # noqa: BLE001 - one-line cause, exit 2
            fail(f"{args.expected}: {e}")
        floats = [k for k, v in expected.items() if v.is_floating_point()]
        key = args.key or ("logits" if "logits" in expected else (floats[0] if len(floats) == 1 else None))
        if key is None or key not in expected:
            fail(f"{args.expected}: say which logits with --key (float tensors: {', '.join(floats)})")
        want = expected[key].float()
    if "input_ids" in expected:
        source = expected
    else:
        try:
            source = load_file(args.inputs)
        except Exception as e:  # noqa: BLE001
            fail(f"{args.inputs}: {e}")
    ids = source["input_ids"].long()
    mask = source.get("attention_mask", torch.ones_like(ids)).long()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            base = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32,
                                                        attn_implementation="eager")
            model = PeftModel.from_pretrained(base, str(adapter)).eval()
        except Exception as e:  # noqa: BLE001
            fail(f"peft could not load {adapter} on {args.base}: {type(e).__name__}: {e}")
        with torch.no_grad():
            got = model(input_ids=ids, attention_mask=mask).logits.float()

    # What the file holds vs what peft's model would save: a missing key would load
    # silently as peft's init (B = 0), which the logits alone might not reveal.
    have = set(load_file(str(weights)).keys())
    wanted = set(get_peft_model_state_dict(model, save_embedding_layers=False).keys())
    report = {
        "adapter": str(adapter), "base": args.base, "shape": list(got.shape),
        "missing_keys": sorted(wanted - have), "unexpected_keys": sorted(have - wanted),
        "warnings": sorted({str(w.message) for w in caught if "deprecated" not in str(w.message)}),
        "tolerance": args.tolerance,
    }
    ok = not report["missing_keys"] and not report["unexpected_keys"]
    if want is not None:
        if want.shape != got.shape:
            report.update(ok=False, error=f"expected logits have shape {list(want.shape)}")
            print(json.dumps(report))
            sys.exit(1)
        real = mask.bool()
        diff = (got - want).abs()
        report["max_abs_diff"] = diff[real].max().item()
        report["max_abs_diff_all_positions"] = diff.max().item()
        ok = ok and report["max_abs_diff"] <= args.tolerance
    report["ok"] = ok
    if args.print_logits or want is None:
        report["logits"] = got.tolist()
    if args.save:
        save_file({"input_ids": ids.contiguous(), "attention_mask": mask.contiguous(),
                   "logits": got.contiguous()}, args.save)
    print(json.dumps(report))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
