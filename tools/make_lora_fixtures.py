"""Make the golden fixtures for ftui's LoRA (``src/lora``): adapters, logits, counts.

ftui injects LoRA adapters itself and must (DESIGN.md, "Correctness standard")
compute the logits peft computes, count trainable parameters as peft counts them,
and read and write adapters peft can load. This script runs peft once and writes
what it gives to ``tests/fixtures/lora/``:

1. ``peft-llama/``: an adapter saved by peft (``get_peft_model`` then
   ``save_pretrained``: ``adapter_config.json`` + ``adapter_model.safetensors``; the
   boilerplate model card ``README.md`` it also writes is deleted) on
   the tiny fixture ``tests/fixtures/models/llama``: r=4, lora_alpha=8 (scaling
   alpha/r = 2), lora_dropout=0, bias "none", target_modules q/v/o/gate/down_proj.
2. ``peft-qwen2-rslora-all-linear/``: use_rslora=True (scaling alpha/sqrt(r) =
   16/sqrt(8)), target_modules "all-linear", r=8, lora_alpha=16,
   modules_to_save=["lm_head"], on ``tests/fixtures/models/qwen2``. The Qwen2
   fixture is used, not the Llama one, because the Llama fixture ties lm_head to
   embed_tokens: peft then warns that "a tied layer is part of the adapter" without
   ``ensure_weight_tying`` and the saved lm_head copy silently unties the two
   (recorded in ``trainable.json`` under ``llama_tied_lm_head_modules_to_save``).
   Qwen2 is untied and also has q/k/v biases, so LoRA over a biased Linear is covered.
   peft saves "all-linear" resolved: adapter_config.json lists the full module paths
   (``model.layers.0.self_attn.q_proj``, ...), and the lm_head copy is saved as
   ``base_model.model.lm_head.weight``.

   peft's default init (A kaiming-uniform, B zero) makes an adapter a no-op, which
   would prove nothing; so after ``get_peft_model`` every lora_A and lora_B is
   overwritten with seeded N(0, 0.1^2) values (in sorted parameter-name order), and
   the trainable lm_head copy of adapter 2 gets seeded N(0, 0.02^2) added to it.
3. ``expected.safetensors``: ``input_ids`` [2, 10] (seeded, ids 3..299; row 1 is
   right-padded by 3 with pad id 0) and ``attention_mask`` [2, 10] (int64), and fp32
   eval-mode logits [2, 10, 300] (eager attention, as the model goldens) of:
   ``base.logits`` (Llama base), ``peft-llama.logits`` (base + adapter 1, loaded
   back from disk with ``PeftModel.from_pretrained``), ``peft-llama.merged.logits``
   (``merge_and_unload``), ``qwen2-base.logits``, ``peft-qwen2-rslora-all-linear.logits``,
   ``peft-qwen2-rslora-all-linear.merged.logits``. Pad positions of row 1 are
   included as transformers computes them (causal + key-padding mask, eager); tests
   should compare ``attention_mask == 1`` positions.
4. ``trainable.json``: ``get_nb_trainable_parameters()`` and the
   ``print_trainable_parameters()`` line for each fixture adapter on its base and for
   the embedded default ``models/SmolLM2-135M-Instruct.Q4_1.gguf`` (transformers'
   GGUF loader, dequantized to float32) with ftui's default ``[lora]`` of
   ``sample-data/ftui.toml`` (r=8, alpha 16, dropout 0.05, bias none, "all-linear")
   and with ["q_proj","k_proj","v_proj","o_proj"]; the modules peft targeted and the
   adapter state-dict key names (peft saves them without the adapter name:
   ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``).

Run from the repository root with the fixture venv (tools/requirements.txt):

    .venv/bin/python tools/make_lora_fixtures.py              # everything
    .venv/bin/python tools/make_lora_fixtures.py --skip-gguf  # no SmolLM2 counts
                                                              # (keeps the old ones)

``tools/check_ftui_adapter.py`` checks an adapter written by ftui against peft with
the same inputs.

Everything is seeded and the script re-executes itself with PYTHONHASHSEED=0
(peft stores ``target_modules`` as a set and writes it to adapter_config.json in
set order), so two runs write identical files.
"""

import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":  # before anything builds a set of names
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import argparse
import contextlib
import io
import json
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import peft
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "lora"
MODELS = "tests/fixtures/models"  # relative: it is written into adapter_config.json
GGUF_DIR, GGUF_FILE = "models", "SmolLM2-135M-Instruct.Q4_1.gguf"
SEED = 1234
VOCAB = 300
PAD_ID = 0  # <|endoftext|>, the fixtures' pad_token_id

ADAPTERS = {
    "peft-llama": dict(
        base="llama",
        config=dict(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                    target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]),
    ),
    "peft-qwen2-rslora-all-linear": dict(
        base="qwen2",
        config=dict(r=8, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                    use_rslora=True, target_modules="all-linear", modules_to_save=["lm_head"]),
    ),
}
# ftui's default [lora] (sample-data/ftui.toml) and the attention-only variant.
GGUF_CONFIGS = {
    "all-linear": dict(r=8, lora_alpha=16, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
                       target_modules="all-linear"),
    "qkvo": dict(r=8, lora_alpha=16, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
}


def load_base(arch):
    """A fixture model from its folder, fp32, eager attention, eval mode."""
    os.chdir(ROOT)  # so that config._name_or_path (-> base_model_name_or_path) is relative
    m = AutoModelForCausalLM.from_pretrained(f"{MODELS}/{arch}", dtype=torch.float32,
                                             attn_implementation="eager")
    return m.eval()


def counts(pm):
    """get_nb_trainable_parameters() and the print_trainable_parameters() line."""
    trainable, total = pm.get_nb_trainable_parameters()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    return {"trainable": trainable, "total": total,
            "trainable_percent": 100 * trainable / total,
            "print_trainable_parameters": buf.getvalue().strip()}


def randomize(pm, gen, lm_head_noise):
    """Overwrite every lora_A/lora_B with N(0, 0.1^2); perturb a saved lm_head copy."""
    params = dict(pm.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            if ".lora_A." in name or ".lora_B." in name:
                p = params[name]
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        if lm_head_noise:
            w = pm.base_model.model.lm_head.modules_to_save["default"].weight
            w.add_(torch.randn(w.shape, generator=gen) * 0.02)


@torch.no_grad()
def logits(model, inputs):
    return model(**inputs).logits.float().contiguous()


def make_inputs(gen):
    ids = torch.randint(3, VOCAB, (2, 10), generator=gen)
    mask = torch.ones(2, 10, dtype=torch.int64)
    ids[1, 7:] = PAD_ID
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def adapter_fixture(name, spec, gen, inputs):
    """Make, save, reload and run one adapter; returns (tensors, trainable.json entry)."""
    arch = spec["base"]
    torch.manual_seed(SEED)  # peft's own init (overwritten below) stays reproducible too
    model = load_base(arch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = get_peft_model(model, LoraConfig(**spec["config"]))
    randomize(pm, gen, lm_head_noise="modules_to_save" in spec["config"])
    pm.eval()
    entry = {"base": f"{MODELS}/{arch}", "config": spec["config"], **counts(pm),
             "scaling": sorted({v for m in pm.modules() if isinstance(m, LoraLayer)
                                for v in m.scaling.values()}),
             "targeted_module_names": list(pm.targeted_module_names),
             "num_targeted_modules": len(pm.targeted_module_names),
             "warnings": sorted({str(w.message) for w in caught
                                        if "deprecated" not in str(w.message)})}
    in_memory = logits(pm, inputs)

    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    pm.save_pretrained(folder)
    (folder / "README.md").unlink()  # peft's boilerplate model card; not part of the fixture

    # Logits come from the saved folder, so the round trip is part of the fixture.
    loaded = PeftModel.from_pretrained(load_base(arch), folder).eval()
    with_adapter = logits(loaded, inputs)
    assert torch.equal(with_adapter, in_memory), f"{name}: save/load changed the logits"
    merged = logits(loaded.merge_and_unload().eval(), inputs)
    base = logits(load_base(arch), inputs)

    real = inputs["attention_mask"].bool()
    d_adapter = (with_adapter - base)[real].abs().max().item()
    d_merged = (merged - with_adapter)[real].abs().max().item()
    print(f"{name} on {arch}: {entry['trainable']:,} trainable of {entry['total']:,}; "
          f"|adapter - base| {d_adapter:.3g}; |merged - unmerged| {d_merged:.3g}")
    assert d_adapter > 0.1, f"{name}: the adapter barely changes the logits"
    assert d_merged < 1e-4, f"{name}: merge_and_unload disagrees with the adapter"
    with safe_open(folder / "adapter_model.safetensors", "pt") as f:
        entry["saved_keys"] = sorted(f.keys())
    entry["adapter_config"] = json.loads((folder / "adapter_config.json").read_text())
    tensors = {f"{name}.logits": with_adapter, f"{name}.merged.logits": merged}
    return arch, base, tensors, entry


def llama_tied_note():
    """What peft does with modules_to_save=["lm_head"] on the tied Llama fixture."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = get_peft_model(load_base("llama"), LoraConfig(**ADAPTERS["peft-qwen2-rslora-all-linear"]["config"]))
    return {"base": f"{MODELS}/llama", "tie_word_embeddings": True, **counts(pm),
            "warnings": sorted({str(w.message) for w in caught if "deprecated" not in str(w.message)}),
            "note": "peft copies lm_head into a trainable ModulesToSaveWrapper; embed_tokens keeps the "
                    "original tied weight, so after training the two are no longer tied (the adapter "
                    "file holds base_model.model.lm_head.weight). Not used as a fixture."}


def gguf_counts():
    """ftui's default LoRA configs on the embedded SmolLM2-135M-Instruct (GGUF, fp32)."""
    out = {"source": f"{GGUF_DIR}/{GGUF_FILE}",
           "load": f"AutoModelForCausalLM.from_pretrained('{GGUF_DIR}', gguf_file='{GGUF_FILE}', "
                   "dtype=torch.float32)"}
    for key, cfg in GGUF_CONFIGS.items():
        os.chdir(ROOT)
        model = AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF_FILE, dtype=torch.float32)
        base_total = sum(p.numel() for p in model.parameters())
        pm = get_peft_model(model, LoraConfig(**cfg))
        names = sorted(pm.targeted_module_names,
                       key=lambda n: [int(s) if s.isdigit() else s for s in n.split(".")])
        keys = list(get_peft_model_state_dict(pm, save_embedding_layers=False).keys())
        out[key] = {"config": cfg, **counts(pm), "base_total": base_total,
                    "num_targeted_modules": len(names), "targeted_module_names_first": names[:8],
                    "targeted_leaf_names": sorted({n.rsplit(".", 1)[-1] for n in names}),
                    "lm_head_targeted": any(n.endswith("lm_head") for n in names),
                    "num_state_dict_keys": len(keys), "state_dict_keys_first5": keys[:5]}
        print(f"SmolLM2 {key}: {out[key]['print_trainable_parameters']}")
        del pm, model
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-gguf", action="store_true", help="keep trainable.json's SmolLM2 part")
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(SEED)
    inputs = make_inputs(gen)

    tensors = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    fixtures = {}
    for name, spec in ADAPTERS.items():
        arch, base, t, entry = adapter_fixture(name, spec, gen, inputs)
        tensors["base.logits" if arch == "llama" else f"{arch}-base.logits"] = base
        tensors.update(t)
        fixtures[name] = entry
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "expected.safetensors",
              # One metadata key: safetensors writes several in hash-map (run-dependent) order.
              metadata={"made_by": f"tools/make_lora_fixtures.py; torch {torch.__version__}; "
                                   f"transformers {transformers.__version__}; peft {peft.__version__}; "
                                   "fp32 eval, eager attention"})

    trainable_path = OUT / "trainable.json"
    old = json.loads(trainable_path.read_text()) if trainable_path.exists() else {}
    doc = {
        "made_by": "tools/make_lora_fixtures.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
        "rules": {
            "trainable_percent": "100 * trainable / total; print_trainable_parameters prints it with "
                                 "4 decimals and counts with thousands separators",
            "total": "sum of numel over PeftModel.named_parameters() (tied weights counted once; "
                     "base weights + lora_A/lora_B + modules_to_save copies)",
            "scaling": "lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora",
            "all-linear": "every torch.nn.Linear (or transformers Conv1D) except the model's output "
                          "embeddings (lm_head)",
        },
        "fixtures": fixtures,
        "llama_tied_lm_head_modules_to_save": llama_tied_note(),
        "smollm2_gguf": old.get("smollm2_gguf") if args.skip_gguf else gguf_counts(),
    }
    trainable_path.write_text(json.dumps(doc, indent=2) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT.relative_to(ROOT)} ({total:,} bytes)")


if __name__ == "__main__":
    main()
