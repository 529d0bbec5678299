"""Make the golden fixtures for ftui's LoRA trainer: one-step gradients and an SFT run.

ftui trains LoRA adapters itself (libtorch through tch) and must reproduce what
transformers 5.24 / peft 0.21.2 / trl 1.16 compute. This script runs that stack
once, on CPU in fp32, and writes what it gives to ``tests/fixtures/train/``
(``README.md`` there lists every file and key, and what a test does with it):

1. ``one-step-<arch>/`` for the tiny ``llama``, ``qwen2`` and ``phi3`` fixtures:
   a fixed adapter (``get_peft_model`` with r=4, alpha 8, dropout 0,
   "all-linear", ``init_lora_weights=False`` so B is non-zero; seeded), a
   right-padded micro-batch of 3 rows and its padding-free (packed) twin, and the
   loss and every LoRA gradient after one ``backward()`` for both.
2. ``sft-llama/``: five optimizer steps of trl's ``SFTTrainer`` (batch 4, GA 2,
   cosine with 2 warmup steps, weight decay 0.1, clipping at 0.5, fused AdamW)
   from a fixed adapter, with every micro-batch the model saw, trl's
   ``log_history``, the adapter and the AdamW state after training.
3. ``one-step-llama-nf4/``: the one-step fixture on the tiny Llama quantized to
   NF4 by bitsandbytes on CPU (``prepare_model_for_kbit_training``).

The script checks itself: the packed loss and grads against the padded ones and
against each sequence run alone, eager against SDPA attention, and the whole SFT
run replayed by hand from the recorded micro-batches (full-logits cross entropy,
``clip_grad_norm_`` by formula, AdamW by formula, the cosine schedule by formula)
against trl's logged loss, grad_norm, learning_rate, metrics and final adapter.

Run from the repository root with the fixture venv (tools/requirements.txt):

    .venv/bin/python tools/make_train_fixtures.py

Everything is seeded, runs on one CPU thread, and the script re-executes itself
with PYTHONHASHSEED=0 (peft writes ``target_modules`` in set order), so two runs
write identical files.
"""

import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":  # before anything builds a set of names
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU reference, even on a GPU machine

import json
import logging
import math
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import bitsandbytes
import datasets
import peft
import transformers
import trl
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "train"
MODELS = "tests/fixtures/models"  # relative: it is written into adapter_config.json
ARCHS = ("llama", "qwen2", "phi3")
ATTN = "eager"  # checked against "sdpa" below; both agree to fp32 rounding
VOCAB = 300
PAD_ID = 0  # <|endoftext|>, the fixtures' pad_token_id
EOS_ID = 2  # <|im_end|>
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
            target_modules="all-linear", init_lora_weights=False)
ADAPTER_SEED = {"llama": 101, "qwen2": 102, "phi3": 103, "sft": 104}
BATCH_SEED = 7
ROW_LENGTHS = (16, 11, 7)
PROMPT_LENGTHS = (5, 3, 0)  # row 2 has no prompt: only the packed first-token rule masks its first label
SFT = dict(per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=5,
           learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=2, weight_decay=0.1,
           max_grad_norm=0.5, optim="adamw_torch_fused", logging_steps=1, seed=42, use_cpu=True,
           bf16=False, fp16=False, gradient_checkpointing=False, report_to=[],
           save_strategy="no", completion_only_loss=True, padding_free=False,
           disable_tqdm=True)
SFT_EXAMPLES, SFT_DATA_SEED = 24, 11
# Keys of trl's final summary log entry that measure wall time (not reproducible).
TIMING_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second")


# ----------------------------------------------------------------------------- helpers
def load_base(arch, attn=ATTN, **kw):
    """A fixture model from its folder, fp32, train mode (every dropout of the fixtures is 0)."""
    os.chdir(ROOT)  # so that config._name_or_path (-> base_model_name_or_path) is relative
    m = AutoModelForCausalLM.from_pretrained(f"{MODELS}/{arch}", dtype=torch.float32,
                                             attn_implementation=attn, **kw)
    return m.train()


def peft_key(name):
    """A named_parameters() name as peft's adapter file spells it (no adapter name)."""
    return re.sub(r"\.(lora_[AB])\.default\.", r".\1.", name)


def lora_params(model):
    return {peft_key(n): p for n, p in model.named_parameters() if ".lora_" in n}


def save_adapter(model, folder):
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    (folder / "README.md").unlink()  # peft's boilerplate model card; not part of the fixture
    with safe_open(folder / "adapter_model.safetensors", "pt") as f:
        keys = sorted(f.keys())
    assert keys == sorted(lora_params(model)), "adapter file keys differ from the parameter names"


def make_adapter(arch, seed, folder, base=None):
    """The fixed initial adapter: peft's init with init_lora_weights=False, seeded; saved."""
    torch.manual_seed(seed)
    pm = get_peft_model(base if base is not None else load_base(arch), LoraConfig(**LORA))
    for n, p in lora_params(pm).items():
        assert p.dtype == torch.float32 and p.requires_grad, n
    save_adapter(pm, folder)
    return pm


def load_adapter(base, folder):
    """The adapter saved in `folder`, trainable, on `base` (train mode)."""
    return PeftModel.from_pretrained(base, folder, is_trainable=True).train()


def shifted_nll(logits, labels):
    """Sum of token NLL over the labelled shifted positions (ForCausalLMLoss's numerator),
    the number of those positions, the number of argmax hits and the entropy sum."""
    z = logits[:, :-1].float().reshape(-1, logits.size(-1))
    t = labels[:, 1:].reshape(-1)
    keep = t != -100
    z, t = z[keep], t[keep]
    nll = F.cross_entropy(z, t, reduction="sum")
    logp = z.log_softmax(-1)
    entropy = -(logp.exp() * logp).sum()
    hits = (z.argmax(-1) == t).sum()
    return nll, int(keep.sum()), int(hits), entropy


def rel(a, b):
    """Relative Frobenius distance |a - b| / |b| (b the reference)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def grads_of(model):
    return {k: p.grad.detach().clone() for k, p in lora_params(model).items()}


def zero_grads(model):
    for p in model.parameters():
        p.grad = None


def count_items(labels):
    """trl/Trainer's num_items_in_batch for one micro-batch: labels[..., 1:] != -100."""
    return int((labels[..., 1:] != -100).sum())


# ----------------------------------------------------------------------------- 1. one step
def make_batch():
    """Three right-padded rows (+ the padding-free packing trl's collator makes of them)."""
    gen = torch.Generator().manual_seed(BATCH_SEED)
    rows = [torch.randint(3, VOCAB, (n,), generator=gen) for n in ROW_LENGTHS]
    labels = []
    for row, p in zip(rows, PROMPT_LENGTHS):
        lab = row.clone()
        lab[:p] = -100
        labels.append(lab)
    T = max(ROW_LENGTHS)
    b = {"input_ids": torch.full((len(rows), T), PAD_ID, dtype=torch.int64),
         "labels": torch.full((len(rows), T), -100, dtype=torch.int64),
         "attention_mask": torch.zeros((len(rows), T), dtype=torch.int64)}
    for i, (row, lab) in enumerate(zip(rows, labels)):
        b["input_ids"][i, :len(row)] = row
        b["labels"][i, :len(row)] = lab
        b["attention_mask"][i, :len(row)] = 1
    # DataCollatorForLanguageModeling(padding_free=True): concatenate, position ids restart
    # at 0 per sequence, and the label at each position id 0 becomes -100.
    pos = torch.cat([torch.arange(n) for n in ROW_LENGTHS])[None]
    plab = torch.cat(labels)[None]
    plab[pos == 0] = -100
    b["packed_input_ids"] = torch.cat(rows)[None]
    b["packed_labels"] = plab
    b["packed_position_ids"] = pos
    # cross-check against trl's own collator
    coll = trl.trainer.sft_trainer.DataCollatorForLanguageModeling(pad_token_id=PAD_ID, padding_free=True)
    got = coll.torch_call([{"input_ids": r.tolist(), "labels": l.tolist()} for r, l in zip(rows, labels)])
    assert torch.equal(got["input_ids"], b["packed_input_ids"])
    assert torch.equal(got["labels"], b["packed_labels"])
    assert torch.equal(got["position_ids"], b["packed_position_ids"])
    coll = trl.trainer.sft_trainer.DataCollatorForLanguageModeling(pad_token_id=PAD_ID)
    got = coll.torch_call([{"input_ids": r.tolist(), "labels": l.tolist()} for r, l in zip(rows, labels)])
    for k in ("input_ids", "labels", "attention_mask"):
        assert torch.equal(got[k], b[k]), k
    return b, rows, labels


def loss_and_grads(model, **inputs):
    """transformers' own loss (ForCausalLMLoss with num_items_in_batch) and the LoRA grads."""
    zero_grads(model)
    n = count_items(inputs["labels"])
    out = model(**inputs, num_items_in_batch=torch.tensor(n), use_cache=False)
    out.loss.backward()
    # the same loss by hand from the logits
    nll, count, _, _ = shifted_nll(out.logits.detach(), inputs["labels"])
    assert count == n
    assert abs(out.loss.item() - nll.item() / n) <= 1e-6 * abs(out.loss.item()), "ForCausalLMLoss"
    return out.loss.detach(), n, grads_of(model)


def one_step(model, batch, rows, labels, tag):
    """Loss and grads of the padded micro-batch and of its packed twin, cross-checked."""
    loss, n, grads = loss_and_grads(model, input_ids=batch["input_ids"], labels=batch["labels"],
                                    attention_mask=batch["attention_mask"])
    ploss, pn, pgrads = loss_and_grads(model, input_ids=batch["packed_input_ids"],
                                       labels=batch["packed_labels"],
                                       position_ids=batch["packed_position_ids"])
    assert pn == n, "the packed variant counts other tokens"
    # Each sequence alone: the reference for what the packed forward must give if
    # transformers isolates the sequences (block-diagonal mask from position_ids).
    zero_grads(model)
    total = 0.0
    for row, lab in zip(rows, labels):
        out = model(input_ids=row[None], labels=lab[None], num_items_in_batch=torch.tensor(n),
                    use_cache=False)
        out.loss.backward()
        total += out.loss.item()
    sgrads = grads_of(model)
    zero_grads(model)
    d_loss = abs(ploss.item() - total) / abs(total)
    d_grad = max(rel(pgrads[k], sgrads[k]) for k in sgrads)
    d_pad = abs(ploss.item() - loss.item()) / abs(loss.item())
    d_pad_grad = max(rel(pgrads[k], grads[k]) for k in grads)
    print(f"{tag}: loss {loss.item():.6f} over {n} tokens; packed vs separate sequences "
          f"{d_loss:.2g} (grads {d_grad:.2g}); packed vs padded {d_pad:.2g} (grads {d_pad_grad:.2g})")
    assert d_loss < 1e-5 and d_grad < 1e-4, "packed position_ids do not isolate the sequences"
    assert d_pad < 1e-5 and d_pad_grad < 1e-4
    return loss, n, grads, ploss, pgrads


def expected_tensors(loss, n, grads, ploss, pgrads):
    out = {"loss": loss.to(torch.float64).reshape(()), "num_items": torch.tensor(n, dtype=torch.int64),
           "packed.loss": ploss.to(torch.float64).reshape(()),
           "packed.num_items": torch.tensor(n, dtype=torch.int64)}
    out.update({k: g.contiguous() for k, g in grads.items()})
    out.update({f"packed.{k}": g.contiguous() for k, g in pgrads.items()})
    return out


def one_step_fixtures(batch, rows, labels):
    info = {}
    for arch in ARCHS:
        folder = OUT / f"one-step-{arch}"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in batch.items()}, folder / "batch.safetensors")
        make_adapter(arch, ADAPTER_SEED[arch], folder / "adapter")
        model = load_adapter(load_base(arch), folder / "adapter")
        res = one_step(model, batch, rows, labels, arch)
        # SDPA must agree with eager (the fixture's attention) to fp32 rounding
        sdpa = load_adapter(load_base(arch, attn="sdpa"), folder / "adapter")
        s_loss, _, s_grads = loss_and_grads(sdpa, input_ids=batch["input_ids"], labels=batch["labels"],
                                            attention_mask=batch["attention_mask"])
        assert abs(s_loss.item() - res[0].item()) <= 1e-5 * abs(res[0].item())
        assert max(rel(s_grads[k], res[2][k]) for k in s_grads) < 1e-4
        # Without use_cache=False the train-mode forward builds a DynamicCache, and
        # transformers then skips the packed-sequence detection: the rows see each other
        # (plain causal mask over the whole packed row, as with an all-ones attention mask).
        zero_grads(model)
        packed = dict(input_ids=batch["packed_input_ids"], labels=batch["packed_labels"],
                      position_ids=batch["packed_position_ids"], num_items_in_batch=torch.tensor(res[1]))
        with torch.no_grad():
            leaky = model(**packed).loss.item()
            causal = model(**packed, attention_mask=torch.ones_like(batch["packed_input_ids"]),
                           use_cache=False).loss.item()
        assert abs(leaky - causal) <= 1e-5 * abs(causal) and abs(leaky - res[3].item()) > 1e-3
        info[arch] = {"loss": res[0].item(), "packed_loss": res[3].item(), "num_items": res[1],
                      "packed_loss_if_use_cache_left_on": leaky}
        save_file(expected_tensors(*res), folder / "expected.safetensors")
    return info


# ----------------------------------------------------------------------------- 3. NF4
def nf4_fixture(batch, rows, labels):
    folder = OUT / "one-step-llama-nf4"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_compute_dtype=torch.float32)
    base = load_base("llama", quantization_config=bnb, device_map="cpu")
    base = prepare_model_for_kbit_training(base)  # default: gradient checkpointing on (reentrant)
    model = load_adapter(base, OUT / "one-step-llama" / "adapter")
    quant = {}
    for name, mod in base.named_modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            qs = mod.weight.quant_state
            key = re.sub(r"^base_model\.model\.", "", name).replace(".base_layer", "")
            assert qs.quant_type == "nf4" and qs.blocksize == 64 and not qs.nested, name
            quant[f"{key}.weight.nf4"] = mod.weight.data.contiguous()
            quant[f"{key}.weight.absmax"] = qs.absmax.contiguous()
    res = one_step(model, batch, rows, labels, "llama-nf4")
    for k, p in lora_params(model).items():
        assert p.dtype == torch.float32, k
    save_file(expected_tensors(*res), folder / "expected.safetensors")
    save_file(quant, folder / "nf4.safetensors")
    return {"loss": res[0].item(), "packed_loss": res[3].item(), "num_items": res[1],
            "quantized_modules": len(quant) // 2}


# ----------------------------------------------------------------------------- 2. SFT
@torch.no_grad()
def sft_dataset(model):
    """24 pre-tokenized prompt+completion examples. The prompt is random ids; each
    completion token is, with probability 1/2, the initial model's greedy choice (so
    mean_token_accuracy is not stuck at 0), else random; the last one is <|im_end|>."""
    gen = torch.Generator().manual_seed(SFT_DATA_SEED)
    ids, masks = [], []
    for _ in range(SFT_EXAMPLES):
        n = int(torch.randint(6, 21, (1,), generator=gen))
        p = int(torch.randint(1, min(6, n - 2) + 1, (1,), generator=gen))
        row = torch.randint(3, VOCAB, (n,), generator=gen)
        greedy = torch.rand(n, generator=gen) < 0.5
        for i in range(p, n - 1):
            if greedy[i]:
                row[i] = model(input_ids=row[None, :i], use_cache=False).logits[0, -1].argmax()
        row[-1] = EOS_ID
        ids.append(row.tolist())
        masks.append([0] * p + [1] * (n - p))
    return {"input_ids": ids, "completion_mask": masks}


class RecordingSFTTrainer(SFTTrainer):
    """SFTTrainer that keeps every micro-batch compute_loss sees, in call order."""

    records: list

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rec = {k: v.detach().clone() for k, v in inputs.items() if torch.is_tensor(v)}
        rec["keys"] = sorted(inputs)
        rec["num_items"] = num_items_in_batch
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        rec["loss"] = loss.detach().clone()
        m = self._metrics["train"]
        rec["mean_token_accuracy"] = m["mean_token_accuracy"][-1]
        rec["entropy"] = m["entropy"][-1]
        rec["num_tokens"] = m["num_tokens"][-1]
        self.records.append(rec)
        return loss


def lr_at(k, cfg):
    """transformers' cosine-with-warmup lr used by optimizer step k (0-based)."""
    N, W, lr0 = cfg["max_steps"], cfg["warmup_steps"], cfg["learning_rate"]
    if k < W:
        return lr0 * k / max(1, W)
    p = (k - W) / max(1, N - W)
    return lr0 * max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * p)))


# Plausible reimplementation mistakes; the fixture must tell each from the real thing.
MUTATIONS = ("no_clipping", "no_weight_decay", "coupled_weight_decay", "ga_mean_of_microbatch_means",
             "lr_one_step_ahead")


def replay(folder, records, cfg, mutation=None):
    """The SFT run by hand from the recorded micro-batches: full-logits loss, clipping,
    AdamW and the schedule by formula (or with one of MUTATIONS). Returns the per-step
    logs, the final params and the AdamW moments."""
    model = load_adapter(load_base("llama"), folder / "adapter-initial")
    params = lora_params(model)
    names = sorted(params)
    state = {k: (torch.zeros_like(params[k]), torch.zeros_like(params[k])) for k in names}
    b1, b2, eps = 0.9, 0.999, 1e-8
    wd = 0.0 if mutation == "no_weight_decay" else cfg["weight_decay"]
    ga = cfg["gradient_accumulation_steps"]
    logs, num_tokens = [], 0
    for step in range(cfg["max_steps"]):
        mbs = records[step * ga:(step + 1) * ga]
        n = sum(count_items(r["labels"]) for r in mbs)
        zero_grads(model)
        loss_sum, accs, ents, hits_all, cnt_all = 0.0, [], [], 0, 0
        for r in mbs:
            assert int(r["num_items"]) == n, "num_items is not the window count"
            out = model(input_ids=r["input_ids"], attention_mask=r["attention_mask"], use_cache=False)
            nll, cnt, hits, ent = shifted_nll(out.logits, r["labels"])
            loss = nll / cnt / ga if mutation == "ga_mean_of_microbatch_means" else nll / n
            loss.backward()
            loss_sum += loss.item()
            accs.append(hits / cnt)
            hits_all, cnt_all = hits_all + hits, cnt_all + cnt
            ents.append(ent.item() / cnt)
            num_tokens += int(r["attention_mask"].sum())
        grads = [params[k].grad for k in names]
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        coef = min(1.0, cfg["max_grad_norm"] / (total.item() + 1e-6))
        if mutation == "no_clipping":
            coef = 1.0
        lr = lr_at(step + 1 if mutation == "lr_one_step_ahead" else step, cfg)
        with torch.no_grad():
            t = step + 1
            for k in names:
                p, g = params[k], params[k].grad * coef
                m, v = state[k]
                if mutation == "coupled_weight_decay":
                    g = g + wd * p
                else:
                    p.mul_(1 - lr * wd)
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = v.sqrt() / math.sqrt(1 - b2 ** t) + eps
                p.sub_(lr / (1 - b1 ** t) * m / denom)
        logs.append({"loss": loss_sum, "grad_norm": total.item(), "learning_rate": lr,
                     "mean_token_accuracy": sum(accs) / len(accs), "entropy": sum(ents) / len(ents),
                     "num_tokens": float(num_tokens), "clip_coef": coef,
                     "token_weighted_accuracy": hits_all / cnt_all})
    zero_grads(model)
    return logs, {k: params[k].detach().clone() for k in names}, state


def sft_fixture():
    folder = OUT / "sft-llama"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    make_adapter("llama", ADAPTER_SEED["sft"], folder / "adapter-initial")
    model = load_adapter(load_base("llama"), folder / "adapter-initial")
    data = sft_dataset(model)
    (folder / "dataset.json").write_text(json.dumps(data, separators=(",", ":")) + "\n")
    tok = AutoTokenizer.from_pretrained(f"{MODELS}/llama")
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, **SFT)
        trainer = RecordingSFTTrainer(model=model, args=args, processing_class=tok,
                                      train_dataset=datasets.Dataset.from_dict(data))
        trainer.records = []
        trainer.train()
    opt = trainer.optimizer
    groups = [{"weight_decay": g["weight_decay"], "lr": g.get("initial_lr"), "fused": g["fused"],
               "betas": list(g["betas"]), "eps": g["eps"], "num_params": len(g["params"])}
              for g in opt.param_groups]
    pname = {id(p): peft_key(n) for n, p in trainer.model.named_parameters()}
    decay = sorted(pname[id(p)] for p in opt.param_groups[0]["params"])
    assert decay == sorted(lora_params(trainer.model)), "weight decay is not on every lora_A/B"
    assert all(len(g["params"]) == 0 for g in opt.param_groups[1:]), "an undecayed LoRA param"
    assert opt.param_groups[0]["fused"] and opt.param_groups[0]["weight_decay"] == SFT["weight_decay"]
    for k, p in lora_params(trainer.model).items():
        assert p.dtype == torch.float32, k
    save_adapter(trainer.model, folder / "adapter-final")
    optim_state = {}
    for p, st in opt.state.items():
        k = pname[id(p)]
        optim_state[f"{k}.exp_avg"] = st["exp_avg"].contiguous()
        optim_state[f"{k}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
        optim_state["step"] = st["step"].to(torch.float32).reshape(())
    save_file(optim_state, folder / "optimizer-final.safetensors")

    recs = trainer.records
    ga = SFT["gradient_accumulation_steps"]
    assert len(recs) == SFT["max_steps"] * ga
    batches = {}
    for i, r in enumerate(recs):
        for k in ("input_ids", "labels", "attention_mask", "position_ids"):
            if k in r:
                batches[f"mb{i}.{k}"] = r[k].contiguous()
        batches[f"mb{i}.num_items"] = torch.as_tensor(r["num_items"], dtype=torch.int64).reshape(())
        batches[f"mb{i}.loss"] = r["loss"].to(torch.float64).reshape(())
        batches[f"mb{i}.mean_token_accuracy"] = torch.tensor(r["mean_token_accuracy"], dtype=torch.float64)
        batches[f"mb{i}.entropy"] = torch.tensor(r["entropy"], dtype=torch.float64)
    save_file(batches, folder / "batches.safetensors")
    history = [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in trainer.state.log_history]
    (folder / "log_history.json").write_text(json.dumps(history, indent=1) + "\n")

    check_sft_order(recs, data)
    return check_sft_replay(folder, recs, history, groups)


def check_sft_order(recs, data):
    """The micro-batches are the dataset in torch.randperm(n) order, seeded seed + epoch,
    cut into consecutive slices of the batch size and right-padded with pad id 0."""
    bs = SFT["per_device_train_batch_size"]
    order = []
    epoch = 0
    while len(order) < len(recs) * bs:
        g = torch.Generator().manual_seed(SFT["seed"] + epoch)
        order += torch.randperm(SFT_EXAMPLES, generator=g).tolist()
        epoch += 1
    for i, r in enumerate(recs):
        idx = order[i * bs:(i + 1) * bs]
        T = max(len(data["input_ids"][j]) for j in idx)
        assert r["input_ids"].shape == (bs, T), f"mb{i} shape"
        for row, j in enumerate(idx):
            ids, cm = data["input_ids"][j], data["completion_mask"][j]
            n = len(ids)
            assert r["input_ids"][row, :n].tolist() == ids and (r["input_ids"][row, n:] == PAD_ID).all()
            assert r["attention_mask"][row].tolist() == [1] * n + [0] * (T - n)
            want = [t if c else -100 for t, c in zip(ids, cm)] + [-100] * (T - n)
            assert r["labels"][row].tolist() == want, f"mb{i} row {row} labels"
    print("sft: the micro-batches are randperm(24) seeded 42 + epoch, in slices of 4")


def check_sft_replay(folder, recs, history, groups):
    steps = [e for e in history if "loss" in e]
    logs, final, state = replay(folder, recs, SFT)
    worst = {}
    for s, (h, mine) in enumerate(zip(steps, logs)):
        assert h["step"] == s + 1
        assert abs(h["epoch"] - ((s * 2 + 2) // 6 + ((s * 2 + 2) % 6) / 6)) < 1e-12
        for k in ("loss", "grad_norm", "learning_rate", "mean_token_accuracy", "entropy", "num_tokens"):
            d = abs(h[k] - mine[k]) / max(abs(h[k]), 1e-30) if h[k] != mine[k] else 0.0
            worst[k] = max(worst.get(k, 0.0), d)
    final_ref = load_file(folder / "adapter-final" / "adapter_model.safetensors")
    init = load_file(folder / "adapter-initial" / "adapter_model.safetensors")
    worst["adapter_final"] = max(rel(final[k], final_ref[k]) for k in final_ref)
    worst["adapter_update"] = max(rel(final[k] - init[k], final_ref[k] - init[k]) for k in final_ref)
    opt_ref = load_file(folder / "optimizer-final.safetensors")
    worst["exp_avg"] = max(rel(state[k][0], opt_ref[f"{k}.exp_avg"]) for k in final_ref)
    worst["exp_avg_sq"] = max(rel(state[k][1], opt_ref[f"{k}.exp_avg_sq"]) for k in final_ref)
    moved = max(rel(final_ref[k], init[k]) for k in init)
    print(f"sft: replay by hand vs trl (max relative difference): "
          + ", ".join(f"{k} {v:.2g}" for k, v in worst.items()) + f"; adapter moved {moved:.3g}")
    print("sft: clip coefficients " + ", ".join(f"{m['clip_coef']:.4f}" for m in logs))
    tol = {"loss": 1e-5, "grad_norm": 1e-5, "learning_rate": 1e-12, "mean_token_accuracy": 1e-6,
           "entropy": 1e-5, "num_tokens": 0.0, "adapter_final": 1e-5, "adapter_update": 1e-4,
           "exp_avg": 1e-5, "exp_avg_sq": 1e-5}
    for k, v in worst.items():
        assert v <= tol[k], f"sft replay: {k} differs by {v:.3g}"
    assert any(m["clip_coef"] < 1 for m in logs), "clipping never acted"
    assert logs[0]["learning_rate"] == 0.0
    assert any(h["mean_token_accuracy"] > 0 for h in steps), "mean_token_accuracy is 0 throughout"
    # ... and it is the plain mean of the micro-batch accuracies, not a token-weighted one
    assert max(abs(h["mean_token_accuracy"] - m["token_weighted_accuracy"]) for h, m in zip(steps, logs)) > 1e-3
    # How far each plausible mistake lands from trl (relative Frobenius, worst tensor).
    detect = {}
    for mutation in MUTATIONS:
        mlogs, mfinal, mstate = replay(folder, recs, SFT, mutation)
        detect[mutation] = {
            "adapter_final": max(rel(mfinal[k], final_ref[k]) for k in final_ref),
            "adapter_update": max(rel(mfinal[k] - init[k], final_ref[k] - init[k]) for k in final_ref),
            "exp_avg": max(rel(mstate[k][0], opt_ref[f"{k}.exp_avg"]) for k in final_ref),
            "logged_loss": max(abs(h["loss"] - m["loss"]) / h["loss"] for h, m in zip(steps, mlogs)),
        }
        print(f"sft: mutation {mutation}: " + ", ".join(f"{k} {v:.2g}" for k, v in detect[mutation].items()))
    return {"replay_max_relative_difference": worst, "clip_coef": [m["clip_coef"] for m in logs],
            "adapter_moved_relative": moved, "mutations": detect,
            "param_groups": groups, "mb_keys": recs[0]["keys"]}


# ----------------------------------------------------------------------------- main
def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    logging.getLogger("peft").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    OUT.mkdir(parents=True, exist_ok=True)
    batch, rows, labels = make_batch()
    meta = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "peft": peft.__version__, "trl": trl.__version__,
                         "bitsandbytes": bitsandbytes.__version__},
            "attn_implementation": ATTN, "lora": LORA, "adapter_seeds": ADAPTER_SEED,
            "row_lengths": ROW_LENGTHS, "prompt_lengths": PROMPT_LENGTHS, "sft_config": SFT}
    meta["one_step"] = one_step_fixtures(batch, rows, labels)
    meta["one_step_nf4"] = nf4_fixture(batch, rows, labels)
    meta["sft"] = sft_fixture()
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT.relative_to(ROOT)}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
