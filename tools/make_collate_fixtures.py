"""Golden token ids, labels and packed batches from trl, for tests/collate.rs.

trl's own preparation (`SFTTrainer._prepare_dataset`, called without a model)
and collator (`DataCollatorForLanguageModeling`) run on the embedded default
model's tokenizer (SmolLM2-135M-Instruct, read from its GGUF by transformers):
- prompt_completion: the book's Yoda data (sentence -> prompt, translation_extra
  -> completion) as conversational prompt/completion, completion-only loss
  (SmolLM2's template adds its long default system prompt, so most examples are
  truncated at 64 tokens); prompt_completion_system: the same with a short
  system prompt, which fits;
- messages_assistant_only: multi-turn conversations with `assistant_only_loss`,
  using SmolLM2's template with `{% generation %}` blocks
  (tests/fixtures/templates/smollm2-generation.jinja);
- messages_all: the same conversations, every token trained;
- text: plain text, EOS appended;
- packed_bfd / packed_wrapped: the prompt/completion data (short system prompt)
  packed to 128 tokens (bfd rows are collated padding-free in batches of 4).
Writes tests/fixtures/collate/trl.json.

    .venv/bin/python -m pip install -r tools/requirements.txt -c requirements.txt
    .venv/bin/python tools/make_collate_fixtures.py
"""

import json
import tempfile
import types
from pathlib import Path

import trl
import transformers
from datasets import Dataset
from transformers import AutoTokenizer
from transformers.utils import logging
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

ROOT = Path(__file__).resolve().parent.parent
GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = ROOT / "tests" / "fixtures" / "collate" / "trl.json"
MAX_LENGTH = 64
PACKED_LENGTH = 128
SYSTEM = "You speak like Yoda."


def yoda(n, system=None):
    rows = [json.loads(l) for l in (ROOT / "sample-data" / "yoda_sentences.jsonl").read_text().splitlines()[:n]]
    head = [{"role": "system", "content": system}] if system else []
    return [
        {"prompt": head + [{"role": "user", "content": r["sentence"]}],
         "completion": [{"role": "assistant", "content": r["translation_extra"]}]}
        for r in rows
    ]


CONVERSATIONS = [
    [{"role": "system", "content": "You speak like Yoda."},
     {"role": "user", "content": "Where is the ship?"},
     {"role": "assistant", "content": "In the swamp, the ship is."},
     {"role": "user", "content": "Can you lift it?"},
     {"role": "assistant", "content": "Lift it, I can. Hmm."}],
    [{"role": "user", "content": "Say hello."},
     {"role": "assistant", "content": "Hello, I say. Yes, hrrmmm."}],
    [{"role": "user", "content": "What is 2 + 2?"},
     {"role": "assistant", "content": "Four, it is."},
     {"role": "user", "content": "And 3 + 3?"},
     {"role": "assistant", "content": "Six, the answer is. Café, naïve — ok 😀"}],
]

TEXTS = [
    "Patience you must learn, young one.",
    "The Force is strong with this one.<|im_end|>",
    "Numbers 1984 and 12345 split into digits.",
]


def prepare(tok, rows, packing=False, strategy="bfd", assistant_only=False, completion_only=None,
            max_length=MAX_LENGTH):
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, max_length=max_length, packing=packing, packing_strategy=strategy,
                         assistant_only_loss=assistant_only, completion_only_loss=completion_only,
                         bf16=False, report_to=[], dataset_num_proc=None)
    ds = Dataset.from_list(rows)
    sample = rows[0]
    trainer = types.SimpleNamespace(
        _tokenizer=tok,
        chat_template=None,
        completion_only_loss=(("prompt" in sample and "completion" in sample)
                              if completion_only is None else completion_only),
        _is_vision_dataset=False,
    )
    out = SFTTrainer._prepare_dataset(trainer, ds, tok, args, packing, None, "train")
    return [dict(r) for r in out]


def main():
    logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    generation_template = (ROOT / "tests" / "fixtures" / "templates" / "smollm2-generation.jinja").read_text()
    cases = {}

    pc = yoda(24)
    rows = prepare(tok, pc)
    cases["prompt_completion"] = {"examples": pc, "input_ids": [r["input_ids"] for r in rows],
                                  "labels": [r["labels"] for r in rows]}

    pc = yoda(24, system=SYSTEM)
    rows = prepare(tok, pc)
    cases["prompt_completion_system"] = {"examples": pc, "input_ids": [r["input_ids"] for r in rows],
                                         "labels": [r["labels"] for r in rows]}

    rows = prepare(tok, [{"messages": c} for c in CONVERSATIONS])
    cases["messages_all"] = {"examples": CONVERSATIONS, "input_ids": [r["input_ids"] for r in rows],
                             "labels": [r["labels"] for r in rows]}

    gen_tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    gen_tok.chat_template = generation_template
    rows = prepare(gen_tok, [{"messages": c} for c in CONVERSATIONS], assistant_only=True)
    cases["messages_assistant_only"] = {"examples": CONVERSATIONS, "chat_template": "smollm2-generation.jinja",
                                        "input_ids": [r["input_ids"] for r in rows],
                                        "labels": [r["labels"] for r in rows]}

    rows = prepare(tok, [{"text": t} for t in TEXTS])
    cases["text"] = {"examples": TEXTS, "input_ids": [r["input_ids"] for r in rows],
                     "labels": [r["labels"] for r in rows]}

    pc = yoda(40, system=SYSTEM)
    rows = prepare(tok, pc, packing=True, strategy="bfd", max_length=PACKED_LENGTH)
    collator = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)
    batches = []
    for i in range(0, len(rows), 4):
        b = collator([{k: r[k] for k in ("input_ids", "labels", "seq_lengths")} for r in rows[i:i + 4]])
        batches.append({"input_ids": b["input_ids"].tolist(), "position_ids": b["position_ids"].tolist(),
                        "labels": b["labels"].tolist()})
    cases["packed_bfd"] = {"examples": pc, "rows": [{"input_ids": r["input_ids"], "labels": r["labels"],
                                                     "seq_lengths": r["seq_lengths"]} for r in rows],
                           "batches": batches}

    rows = prepare(tok, pc, packing=True, strategy="wrapped", max_length=PACKED_LENGTH)
    collator = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)
    b = collator([{k: r[k] for k in ("input_ids", "labels")} for r in rows[:4]])
    cases["packed_wrapped"] = {"examples": pc, "rows": [{"input_ids": r["input_ids"], "labels": r["labels"]}
                                                        for r in rows],
                               "first_batch": {k: b[k].tolist() for k in ("input_ids", "labels", "attention_mask")}}

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"trl": trl.__version__, "transformers": transformers.__version__,
                               "max_length": MAX_LENGTH, "packed_length": PACKED_LENGTH, "system": SYSTEM, "pad_token_id": tok.pad_token_id, "cases": cases},
                              ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
