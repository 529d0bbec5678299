"""Make the GGUF fixtures that ftui's GGUF reader is checked against.

GGUF files in the wild are written by llama.cpp's ``convert_hf_to_gguf.py``. This
script writes tiny ones the same way (the same metadata keys, tensor names, tensor
transforms and vocabulary encodings, with the ``gguf`` package's ``GGUFWriter``) from
small Hugging Face folders, and records what the Hugging Face stack computes on those
source folders. It writes into ``tests/fixtures/gguf/``:

1. ``phi3.gguf`` (from ``tests/fixtures/models/phi3``: fused ``attn_qkv``, ``ffn_up``
   holding gate and up, ``output`` present) and ``llama3-rope.gguf`` (from
   ``tests/fixtures/models/llama``: llama3 rope scaling, q/k permuted, a
   ``rope_freqs.weight`` tensor and no scaling keys), all tensors F32;
   ``expected.safetensors``: transformers' fp32 logits on the source folders.
2. ``sp-llama.gguf`` / ``sp-phi3.gguf``: SentencePiece vocabularies
   (``tokenizer.ggml.model = "llama"``) from a SentencePiece BPE model trained here, in
   the shape Llama 2 / Mistral and Phi-3 ship it (source folders ``sp-llama/`` and
   ``sp-phi3/``), and ``sentencepiece-texts.json``: transformers' ids for ~300 texts.
3. ``bpe-llama3.gguf`` / ``bpe-starcoder.gguf``: byte-level BPE vocabularies with
   Llama 3's ``ignore_merges`` and StarCoder's digit splitting (source folders
   ``bpe-llama3/`` and ``bpe-starcoder/``), and ``bpe-texts.json``.

Each file is read back (``gguf.GGUFReader``) and checked against its source; the
README next to the files says how the Rust tests use them. Run from the repository
root: ``.venv/bin/python tools/make_gguf_fixtures.py``. Two runs write identical files.
"""

import io
import json
import math
import shutil
from pathlib import Path

import gguf
import numpy as np
import sentencepiece as spm
import tokenizers
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Phi3Config
from transformers.convert_slow_tokenizer import bytes_to_unicode

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
OUT = ROOT / "tests" / "fixtures" / "gguf"
SOURCE = "tools/make_gguf_fixtures.py"

# llama.cpp's token types (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


# --------------------------------------------------------------------------- GGUF writing
# The steps of ModelBase.write / write_vocab in convert_hf_to_gguf.py: tensors first, then
# general.type, the general.* model card, the architecture's parameters, the quantization
# version and last the vocabulary.

def load_hparams(folder):
    """config.json as the converter reads it (AutoConfig(...).to_dict()), plus its
    ``rope_parameters`` view with rope_theta mirrored in."""
    hparams = AutoConfig.from_pretrained(folder).to_dict()
    rope = dict(hparams.get("rope_parameters") or hparams.get("rope_scaling") or {})
    if "rope_theta" not in rope and hparams.get("rope_theta") is not None:
        rope["rope_theta"] = hparams["rope_theta"]
    return hparams, rope


def write_gguf(path, arch, folder, tensors, set_params, set_vocab):
    """One GGUF file; ``tensors`` empty makes a vocabulary-only file (``--vocab-only``)."""
    w = gguf.GGUFWriter(path=None, arch=arch)
    for name, data in tensors:
        w.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
    total, shared, expert, experts = w.get_total_parameter_count()
    w.add_type(gguf.GGUFType.MODEL)
    meta = gguf.Metadata.load(None, folder, None, total)
    if meta.name is None:
        meta.name = folder.name
    if meta.size_label is None and total > 0:
        meta.size_label = gguf.size_label(total, shared, expert, experts)
    meta.set_gguf_meta_model(w)
    set_params(w)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    set_vocab(w)
    w.write_header_to_file(path=path)
    w.write_kv_data_to_file()
    if tensors:
        w.write_tensors_to_file()
    w.close()


def text_model_params(w, hparams, rope, n_layers):
    """TextModel.set_gguf_parameters for a dense model; a llama3 rope type writes no
    key (LlamaModel turns it into the rope_freqs tensor)."""
    w.add_block_count(n_layers)
    w.add_context_length(hparams["max_position_embeddings"])
    w.add_embedding_length(hparams["hidden_size"])
    w.add_feed_forward_length(hparams["intermediate_size"])
    w.add_head_count(hparams["num_attention_heads"])
    w.add_head_count_kv(hparams["num_key_value_heads"])
    assert rope.get("rope_type", "default") in ("default", "llama3"), rope
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_layer_norm_rms_eps(hparams["rms_norm_eps"])
    if hparams.get("head_dim") is not None:
        w.add_key_length(hparams["head_dim"])
        w.add_value_length(hparams["head_dim"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)


def llama_params(folder):
    hparams, rope = load_hparams(folder)

    def set_params(w):
        text_model_params(w, hparams, rope, hparams["num_hidden_layers"])
        w.add_vocab_size(hparams["vocab_size"])
        w.add_rope_dimension_count(head_dim(hparams))
    return set_params


def phi3_params(folder):
    """Phi3MiniModel.set_gguf_parameters (it does not call TextModel's)."""
    hparams, rope = load_hparams(folder)

    def set_params(w):
        n_embd, n_head = hparams["hidden_size"], hparams["num_attention_heads"]
        rot_pct = rope.get("partial_rotary_factor", 1.0)
        orig = rope.get("original_max_position_embeddings",
                        hparams.get("original_max_position_embeddings"))
        w.add_context_length(hparams["max_position_embeddings"])
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_embedding_length(n_embd)
        w.add_feed_forward_length(hparams["intermediate_size"])
        w.add_block_count(hparams["num_hidden_layers"])
        w.add_head_count(n_head)
        w.add_head_count_kv(hparams["num_key_value_heads"])
        w.add_layer_norm_rms_eps(hparams["rms_norm_eps"])
        w.add_rope_dimension_count(int(rot_pct * n_embd) // n_head)
        w.add_rope_freq_base(rope["rope_theta"])
        w.add_file_type(gguf.LlamaFileType.ALL_F32)
        w.add_sliding_window(hparams.get("sliding_window") or 0)
    return set_params


def head_dim(hparams):
    return hparams.get("head_dim") or hparams["hidden_size"] // hparams["num_attention_heads"]


# --------------------------------------------------------------------------- vocabularies

def gpt2_vocab(folder, pre):
    """TextModel._set_vocab_gpt2: tokens in id order (added tokens CONTROL when special or
    `<|...|>`-shaped, else USER_DEFINED), merges and special ids from SpecialVocab.
    ``pre`` is given: these vocabularies are not among llama.cpp's known hashes."""
    tok = AutoTokenizer.from_pretrained(folder)
    hparams, _ = load_hparams(folder)
    vocab_size = hparams["vocab_size"]
    reverse = {i: t for t, i in tok.get_vocab().items()}
    added = tok.get_added_vocab()
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        token = reverse[i]
        if token in added:
            info = tok.added_tokens_decoder[i]
            looks_special = token.startswith("<|") and token.endswith("|>")
            types.append(CONTROL if info.special or looks_special else USER_DEFINED)
        else:
            types.append(NORMAL)
        tokens.append(token)

    def set_vocab(w):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        gguf.SpecialVocab(folder, load_merges=True).add_to_gguf(w, quiet=True)
    return set_vocab


def sentencepiece_pieces(folder, vocab_size):
    """The SentencePiece part of _create_vocab_sentencepiece: [PADi] placeholders, then
    each piece with its score and type."""
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [UNUSED] * vocab_size
    for i in range(sp.vocab_size()):
        kind = NORMAL
        if sp.IsUnknown(i):
            kind = UNKNOWN
        elif sp.IsControl(i):
            kind = CONTROL
        elif sp.IsUnused(i):
            kind = UNUSED
        elif sp.IsByte(i):
            kind = BYTE
        tokens[i], scores[i], types[i] = sp.IdToPiece(i).encode(), sp.GetScore(i), kind
    return tokens, scores, types


def llama_sp_vocab(folder):
    """LlamaModel.set_vocab -> _set_vocab_sentencepiece (Llama 2, Mistral, TinyLlama)."""
    hparams, _ = load_hparams(folder)
    tokens, scores, types = sentencepiece_pieces(folder, hparams["vocab_size"])
    config = json.loads((folder / "tokenizer_config.json").read_text())
    for key, data in config.get("added_tokens_decoder", {}).items():
        i, text = int(key), data["content"]
        special = data.get("special") or (text.startswith("<|") and text.endswith("|>"))
        if not special:
            text = text.replace("\u2581", " ")
        types[i] = CONTROL if special else USER_DEFINED
        tokens[i], scores[i] = text.encode(), -1000.0
    return sp_set_vocab(folder, tokens, scores, types, config)


def phi3_sp_vocab(folder):
    """Phi3MiniModel.set_vocab: added tokens from tokenizer_config.json's
    added_tokens_decoder, then tokenizer.json's added_tokens, each USER_DEFINED, or
    CONTROL when marked special."""
    hparams, _ = load_hparams(folder)
    tokens, scores, types = sentencepiece_pieces(folder, hparams["vocab_size"])
    config = json.loads((folder / "tokenizer_config.json").read_text())
    listed = [(int(k), d) for k, d in config.get("added_tokens_decoder", {}).items()]
    listed += [(d["id"], d) for d in
               json.loads((folder / "tokenizer.json").read_text())["added_tokens"]]
    for i, data in listed:
        tokens[i], scores[i] = data["content"].encode(), -1000.0
        types[i] = CONTROL if data.get("special") else USER_DEFINED
    return sp_set_vocab(folder, tokens, scores, types, {})  # no add_prefix_space look-up


def sp_set_vocab(folder, tokens, scores, types, config):
    """The SentencePiece keys, SpecialVocab's ids and add_* flags, and (LlamaModel only)
    tokenizer_config.json's add_prefix_space."""
    def set_vocab(w):
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        gguf.SpecialVocab(folder, n_vocab=len(tokens)).add_to_gguf(w, quiet=True)
        if "add_prefix_space" in config:
            w.add_add_space_prefix(config["add_prefix_space"])
    return set_vocab


# --------------------------------------------------------------------------- model GGUFs

def unpermute_check(w_hf, w_gguf, n_head):
    assert torch.equal(permute(w_hf, n_head), w_gguf)
    back = w_gguf.reshape(n_head, w_gguf.shape[0] // n_head // 2, 2, -1).transpose(1, 2)
    assert torch.equal(back.reshape(w_gguf.shape), w_hf)


def permute(weight, n_head):
    """LlamaModel.permute: within each head, rows [first half | second half] (the
    rotate-half pairing transformers uses) become interleaved pairs (0, d/2), (1, d/2+1), ...
    as llama.cpp's rope expects."""
    rows = weight.shape[0] // n_head
    return weight.reshape(n_head, 2, rows // 2, -1).transpose(1, 2).reshape(weight.shape)


def llama3_rope_factors(hparams, rope):
    """LlamaModel.generate_extra_tensors: one factor per rotary pair; llama.cpp divides
    the pair's frequency by it. The original context length is the one in the rope
    parameters (llama.cpp's older converters read a top-level key, default 8192, which
    is the same number for Llama 3.x checkpoints)."""
    dim = head_dim(hparams)
    base = rope["rope_theta"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old_ctx = rope["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32)


def hf_tensors(folder):
    with safe_open(folder / "model.safetensors", "pt") as f:
        return {k: f.get_tensor(k).float() for k in f.keys()}


def model_tensors(folder, arch):
    """(gguf name, data) in the converter's order: generated tensors, then the
    checkpoint's in file order, mapped with gguf's tensor name map."""
    hparams, rope = load_hparams(folder)
    gguf_arch = {"llama": gguf.MODEL_ARCH.LLAMA, "phi3": gguf.MODEL_ARCH.PHI3}[arch]
    name_map = gguf.get_tensor_name_map(gguf_arch, hparams["num_hidden_layers"])
    out = []
    if arch == "llama" and rope.get("rope_type") == "llama3":
        out.append(("rope_freqs.weight", llama3_rope_factors(hparams, rope)))
    for name, data in hf_tensors(folder).items():
        if arch == "llama" and name.endswith("q_proj.weight"):
            data = permute(data, hparams["num_attention_heads"])
        elif arch == "llama" and name.endswith("k_proj.weight"):
            data = permute(data, hparams["num_key_value_heads"])
        new = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new is not None, name
        out.append((new, data))
    return [(n, d.numpy()) for n, d in out]


def read_gguf(path):
    reader = gguf.GGUFReader(path)
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in reader.tensors)
    tensors = {t.name: torch.from_numpy(np.array(t.data)) for t in reader.tensors}
    fields = {k: f.contents() for k, f in reader.fields.items()
              if k.rsplit(".", 1)[-1] not in ("tokens", "scores", "token_type", "merges")}
    return tensors, fields


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits


def check_phi3(path, folder, ids, expected):
    tensors, fields = read_gguf(path)
    hf = hf_tensors(folder)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.PHI3, 2)
    assert len(tensors) == len(hf)
    for name, data in hf.items():
        assert torch.equal(tensors[name_map.get_name(name, (".weight",))], data), name
    assert "output.weight" in tensors and "blk.0.attn_qkv.weight" in tensors
    # A model rebuilt from the GGUF tensors gives the same logits.
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    inverse = {name_map.get_name(n, (".weight",)): n for n in hf}
    model.load_state_dict({inverse[n]: t for n, t in tensors.items()}, strict=True)
    assert torch.equal(logits_of(model, ids), expected)
    return fields


def check_llama(path, folder, ids, expected):
    tensors, fields = read_gguf(path)
    hf = hf_tensors(folder)
    hparams, rope = load_hparams(folder)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    assert "output.weight" not in tensors  # tied embeddings: llama.cpp reuses token_embd
    for name, data in hf.items():
        stored = tensors[name_map.get_name(name, (".weight",))]
        if name.endswith("q_proj.weight"):
            unpermute_check(data, stored, hparams["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            unpermute_check(data, stored, hparams["num_key_value_heads"])
        else:
            assert torch.equal(stored, data), name
    # rope_freqs against transformers' own llama3 inverse frequencies.
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    scaled = model.model.rotary_emb.inv_freq.clone()
    dim = head_dim(hparams)
    plain = 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factors = tensors["rope_freqs.weight"]
    assert factors.shape == (dim // 2,)
    assert torch.allclose(plain / factors, scaled, rtol=1e-6, atol=0), (plain / factors, scaled)
    # Frequencies from rope_freqs give the recorded logits; without them they differ.
    model.model.rotary_emb.inv_freq.copy_(plain / factors)
    got = logits_of(model, ids)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    model.model.rotary_emb.inv_freq.copy_(plain)
    unscaled = logits_of(model, ids)
    return fields, unscaled, factors


def model_ids(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    rows = [tok("The quick brown fox jumps over the lazy dog.")["input_ids"][:12],
            tok("Patience you must have, my young padawan.")["input_ids"][:12]]
    assert all(len(r) == 12 for r in rows)
    return torch.tensor(rows)


def make_models():
    phi3, llama = MODELS / "phi3", MODELS / "llama"
    rope = load_hparams(llama)[1]
    assert rope.get("rope_type") == "llama3" and rope["original_max_position_embeddings"] < 64
    ids = model_ids(phi3)
    assert torch.equal(ids, model_ids(llama))
    out = {"input_ids": ids}
    for name, folder, arch, params in (("phi3", phi3, "phi3", phi3_params),
                                       ("llama3-rope", llama, "llama", llama_params)):
        path = OUT / f"{name}.gguf"
        write_gguf(path, arch, folder, model_tensors(folder, arch), params(folder),
                   gpt2_vocab(folder, "gpt-2"))
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        out[f"{name}.logits"] = logits_of(model, ids)
        if arch == "phi3":
            fields = check_phi3(path, folder, ids, out[f"{name}.logits"])
        else:
            fields, unscaled, factors = check_llama(path, folder, ids, out[f"{name}.logits"])
            out[f"{name}.logits_without_rope_freqs"] = unscaled
            gap = (torch.log_softmax(unscaled, -1) - torch.log_softmax(out[f"{name}.logits"], -1))
            print(f"{name}: rope_freqs {[round(f, 4) for f in factors.tolist()]}; "
                  f"log-prob gap without them {gap.abs().max():.3f}")
            assert gap.abs().max() > 1.0
        assert not any("rope.scaling" in k for k in fields) or arch == "phi3"
        check_gguf_tokenizer(folder, path, TEXTS_FOR_MODELS)
        print(f"{name}.gguf: {path.stat().st_size} bytes; "
              + ", ".join(f"{k}={v!r}" for k, v in fields.items() if not k.startswith("GGUF.")))
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / "expected.safetensors",
              metadata={"source": f"{SOURCE}; transformers {transformers.__version__}; "
                                  f"torch {torch.__version__}; fp32"})


TEXTS_FOR_MODELS = ["Patience you must have, my young padawan.", "  two spaces\nand 12345",
                    "<|im_start|>user\nHi<|im_end|>"]


def check_gguf_tokenizer(folder, path, texts):
    """transformers' own GGUF tokenizer agrees with the source folder's on these texts."""
    src = AutoTokenizer.from_pretrained(folder)
    via = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in texts:
        for special in (True, False):
            a = src(text, add_special_tokens=special)["input_ids"]
            b = via(text, add_special_tokens=special)["input_ids"]
            assert a == b, (path.name, text, a, b)


# --------------------------------------------------------------------------- SentencePiece

SP_CORPUS = """The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
In 1984 there were 12345 apples and 678 pears in the market; prices rose by 3.5 percent.
Hello world! How are you today? I'm fine, thanks. We've been waiting for you, haven't we?
Bonjour tout le monde. Ça va très bien, merci. Où est la bibliothèque? Le café est délicieux.
Guten Tag! Die Straße ist lang und die Größe des Hauses überrascht uns. Übung macht den Meister.
¿Dónde está la estación? ¡Muy bien! El niño come una manzana con su mamá.
Xin chào! Tiếng Việt rất đẹp. Hà Nội là thủ đô của Việt Nam. Cửa Việt là một cửa biển.
Привет, мир! Как дела? Я люблю читать книги и пить чай.
こんにちは世界。東京は日本の首都です。今日はいい天気ですね。
你好，世界！我喜欢学习中文。北京是中国的首都。
مرحبا بالعالم. اللغة العربية جميلة جدا.
def add(a, b):
    return a + b
for i in range(10):
    print(i * 2)
if (x > 0 && y < 10) { return x + y; }
SELECT name, age FROM users WHERE age > 21 ORDER BY name;
The temperature is 21.5 degrees, and 2024-05-17 was a sunny day at 12:34.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 10000 3.14159 2.71828 1,000,000
Emoji make text fun 😀 🎉 👍 and llamas 🦙 too.
"""

# Phi-3's added tokens, after the SentencePiece pieces: (text, rstrip).
PHI3_ADDED = [("<|endoftext|>", False)] + [(f"<|{t}|>", True) for t in (
    "assistant", "placeholder1", "placeholder2", "placeholder3", "placeholder4", "system",
    "end", "placeholder5", "placeholder6", "user")]
PHI3_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'system' and "
                 "message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
                 "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + "
                 "'<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + "
                 "message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}"
                 "{{ eos_token }}{% endif %}")
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5)


def train_sentencepiece():
    """A SentencePiece BPE model with Llama's trainer settings: byte fallback, split
    digits, identity normalization, the dummy prefix, whitespace-only pieces allowed,
    <unk> <s> </s> at 0, 1, 2 and the 256 byte pieces next."""
    lines = [line for line in SP_CORPUS.splitlines() if line.strip()] * 20
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=600,
        byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity",
        add_dummy_prefix=True, character_coverage=0.995, num_threads=1, unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, shuffle_input_sentence=False, max_sentencepiece_length=16,
        minloglevel=2)
    return buf.getvalue()


def fresh(folder):
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def write_json(path, data):
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def make_sp_llama(model_bytes, n_pieces):
    """Llama 2 / TinyLlama layout: LlamaTokenizer (non-legacy: Metaspace, prefix on the
    first piece only), BOS added, no EOS."""
    folder = fresh(OUT / "sp-llama")
    (folder / "tokenizer.model").write_bytes(model_bytes)
    LlamaConfig(vocab_size=n_pieces, bos_token_id=1, eos_token_id=2, **TINY).save_pretrained(folder)
    write_json(folder / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
        "clean_up_tokenization_spaces": False, "eos_token": "</s>", "legacy": False,
        "model_max_length": 128, "pad_token": None, "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>"})
    # tokenizer.json as transformers converts tokenizer.model, so a reader of
    # tokenizer.json alone sees the same tokenizer.
    tok = AutoTokenizer.from_pretrained(folder)
    tok.backend_tokenizer.save(str(folder / "tokenizer.json"))
    write_gguf(OUT / "sp-llama.gguf", "llama", folder, [], llama_params(folder),
               llama_sp_vocab(folder))
    return folder


def make_sp_phi3(model_bytes, n_pieces):
    """Phi-3-mini layout: tokenizer.json with the Prepend("▁") + Replace normalizer (which
    transformers loads as is for model_type phi3), the chat tokens added after the
    SentencePiece pieces with rstrip, `</s>` a non-special rstrip token, no BOS, and the
    vocabulary padded to a multiple of 64."""
    folder = fresh(OUT / "sp-phi3")
    (folder / "tokenizer.model").write_bytes(model_bytes)
    vocab_size = (n_pieces + len(PHI3_ADDED) + 63) // 64 * 64
    eos = n_pieces  # <|endoftext|>
    Phi3Config(vocab_size=vocab_size, bos_token_id=1, eos_token_id=eos, pad_token_id=eos,
               original_max_position_embeddings=128, **TINY).save_pretrained(folder)
    base = AutoTokenizer.from_pretrained(OUT / "sp-llama").backend_tokenizer
    model = json.loads(base.to_str())["model"]
    tok = Tokenizer(models.BPE(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]],
                               unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                           normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1")
    added = [(0, "<unk>", False, True), (1, "<s>", False, True), (2, "</s>", True, False)]
    added += [(n_pieces + off, text, rstrip, True)
              for off, (text, rstrip) in enumerate(PHI3_ADDED)]
    for i, text, rstrip, special in added:
        token = AddedToken(text, rstrip=rstrip, normalized=False, special=special)
        if special:
            tok.add_special_tokens([token])
        else:
            tok.add_tokens([token])
        assert tok.token_to_id(text) == i, text
    tok.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", {
        "add_bos_token": False, "add_eos_token": False,
        "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False,
                                          "rstrip": r, "single_word": False, "special": s}
                                 for i, t, r, s in added},
        "bos_token": "<s>", "chat_template": PHI3_TEMPLATE, "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>", "legacy": False, "model_max_length": 128,
        "pad_token": "<|endoftext|>", "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>"})
    write_gguf(OUT / "sp-phi3.gguf", "phi3", folder, [], phi3_params(folder),
               phi3_sp_vocab(folder))
    return folder


# Pieces the varied texts are built from: whitespace, digits, scripts, combining marks,
# emoji, code and special-token strings (special for one vocabulary or the other).
PIECES = [
    "Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    " one leading space", "  two leading spaces", "   three", "trailing space ", "trailing   ",
    "double  space", "triple   space inside", "tab\tseparated\tvalues", "line one\nline two",
    "\n\nleading newlines", "trailing newline\n", "mixed \t \n whitespace", "a\r\nb", " ", "  ",
    "\n", "\t", "", "1234567890", "3.14159265358979", "1,000,000", "In 1984 there were 12345",
    "2024-05-17T12:34:56Z", "+1 (555) 010-9999", "0x1F 0b1010 1e-9", "99999999999999999999999",
    "½ ¾ ² ³ ٣٤٥ Ⅻ", "emoji 😀🎉👍🏽", "🦙🦙 llama", "👨‍👩‍👧‍👦 family", "❤️ heart",
    "日本語のテキストです。", "東京は日本の首都です", "中文测试：你好，世界！", "한국어 텍스트",
    "مرحبا بالعالم", "العربية: جميلة جدا", "עברית", "Café naïve résumé",
    "Ça va? Très bien, merci.", "Việt Nam", "Cửa Việt", "Tiếng Việt rất đẹp", "Straße Größe Übung",
    "Ελληνικά κείμενα", "Русский текст, ёлка", "Zürich, Köln, Kraków, Łódź",
    "e\u0301 combining acute", "n\u0303 and a\u0308 and o\u0302\u0323", "Z\u0351\u0364\u036b algo",
    "zero\u200bwidth", "def f(x):\n    return x**2", "if (a && b) { return c; }",
    "for i in range(10):\n\tprint(i)", "SELECT * FROM t WHERE id = 42;",
    "<div class=\"a\">text</div>", "x = [1, 2, 3]  # comment", "fn main() { println!(\"hi\"); }",
    "<s>", "</s>", "<unk>", "<s>hello</s>", "text <s> inside", "a</s>b", " <s> ", "<|user|>",
    "<|end|>", "<|assistant|>", "<|user|>\nHi<|end|>\n<|assistant|>", "<|user|> hello <|end|> ",
    "<|endoftext|>", "<|system|>You are helpful.<|end|>", "<s><s>", "</s> </s>", "<s >", "< s>",
    "<|user", "user|>", "¿Qué? ¡Sí!", "It's, we're, they've, I'd, you'll", "don't DON'T",
    "ALL CAPS TEXT", "MiXeD CaSe", "hyphen-ated words", "under_score_names", "CamelCaseIdentifier",
    "email@example.com", "https://example.com/path?q=1&r=2", "$100.00 €50 £20 ¥1000", "™ © ®",
    "…—–", "\"quoted\" 'single'", "(parens) [brackets] {braces}", "▁already▁escaped",
]
JOINERS = [" ", "  ", "\n", "\t", "<s>", "</s>", "<|end|>\n", "<|user|>", " <|assistant|> ", ""]


def varied_texts():
    """~300 distinct texts: each piece, each non-blank piece with a leading space, and
    pieces joined pairwise by whitespace or special-token strings."""
    n = len(PIECES)
    texts = list(PIECES) + [" " + p for p in PIECES if p.strip()]
    texts += [PIECES[i] + JOINERS[i % len(JOINERS)] + PIECES[(7 * i + 3) % n] for i in range(n)]
    texts += [p + " " for p in PIECES[:12]]
    return list(dict.fromkeys(texts))


def ids_for(tok, text):
    return {"with_special": tok(text, add_special_tokens=True)["input_ids"],
            "without_special": tok(text, add_special_tokens=False)["input_ids"]}


def record(variants, texts):
    """Ids for each text and variant from the source folder's tokenizer; where
    transformers' own GGUF tokenizer gives other ids, those too."""
    cases, diffs = [], {}
    loaded = {name: (AutoTokenizer.from_pretrained(folder),
                     AutoTokenizer.from_pretrained(OUT, gguf_file=f"{name}.gguf"))
              for name, folder in variants.items()}
    for text in texts:
        case = {"text": text}
        for name, (src, via) in loaded.items():
            case[name] = ids_for(src, text)
            other = ids_for(via, text)
            if other != case[name]:
                case[f"{name}.transformers_gguf"] = other
                diffs[name] = diffs.get(name, 0) + 1
        cases.append(case)
    return cases, diffs


def rstrip_as_llama_cpp(cases):
    """True when transformers' tokenizer from sp-phi3.gguf, given llama.cpp's RSTRIP rule
    for a model named phi3 (every added token strips the whitespace after it, except
    <unk>, <s> and <|endoftext|>), gives the source ids on every case."""
    data = json.loads(AutoTokenizer.from_pretrained(OUT, gguf_file="sp-phi3.gguf")
                      .backend_tokenizer.to_str())
    for added in data["added_tokens"]:
        added["rstrip"] = added["content"] not in ("<unk>", "<s>", "<|endoftext|>")
    tok = Tokenizer.from_str(json.dumps(data))
    return all(tok.encode(c["text"], add_special_tokens=False).ids
               == c["sp-phi3"]["without_special"] for c in cases)


def describe(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    backend = json.loads(tok.backend_tokenizer.to_str())
    return {"source": f"{folder.name}/", "gguf": f"{folder.name}.gguf",
            "transformers_class": type(tok).__name__,
            "normalizer": backend["normalizer"], "pre_tokenizer": backend["pre_tokenizer"]}


def make_sentencepiece():
    model_bytes = train_sentencepiece()
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    n_pieces = sp.vocab_size()
    assert sp.IdToPiece(3) == "<0x00>" and sp.IdToPiece(258) == "<0xFF>"
    variants = {"sp-llama": make_sp_llama(model_bytes, n_pieces),
                "sp-phi3": make_sp_phi3(model_bytes, n_pieces)}
    texts = varied_texts()
    cases, diffs = record(variants, texts)
    assert not diffs.get("sp-llama") and rstrip_as_llama_cpp(cases), diffs
    phi3 = AutoTokenizer.from_pretrained(variants["sp-phi3"])
    assert type(phi3).__name__ == "TokenizersBackend", type(phi3)
    same_as_sp = sum(phi3(t, add_special_tokens=False)["input_ids"] == sp.encode(t)
                     for t in texts if "<" not in t)
    print(f"sentencepiece: {n_pieces} pieces, {len(texts)} texts; phi3-style ids equal "
          f"SentencePiece's on {same_as_sp} of {sum('<' not in t for t in texts)} texts "
          f"without '<'; transformers-from-GGUF differs on {diffs or 'none'}")
    write_json(OUT / "sentencepiece-texts.json", {
        "source": SOURCE, "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__, "sentencepiece": spm.__version__,
        "variants": {name: describe(folder) for name, folder in variants.items()},
        "cases": cases})


# --------------------------------------------------------------------------- byte-level BPE

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
BPE_CORPUS = [
    "Xin chào! Công việc ở Viên Chăn rất vui và người Vinh có nhiều cảnh đẹp.",
    "Hà Nam, Huế và Sài Gòn là những thành phố lớn; người dân nộp đơn rất nhanh.",
    "The quick brown fox jumps over the lazy dog; I've been told it's true.",
    "In 1984 there were 12345 apples, 678 pears and 4 ½ melons for 3.5 months.",
    "He stayed 4 ½ months, then 2 ½ weeks, and paid 1000 dollars for 250 items.",
    "def count(n):\n    return sum(i * 2 for i in range(n))  # 42 times",
]
# Whole words added to the Llama 3 vocabulary that its merges do not build.
LLAMA3_WORDS = [" Việt", "Nội"]
LLAMA3_TEXTS = [
    "Cửa Việt", " Việt", "Việt", "Việt Nam", "Tiếng Việt rất đẹp", "người Việt", "Hà Nội",
    " Nội", "Nội thành", "Cửa Việt và Hà Nội", "xViệt", "Việtnam", "  Việt", "\nViệt",
    "Hello world", "I've been told it's true", "12345 and 1234567", " 42", "3.5 months",
    "line\n\nnext", "a  b   c", "tabs\tand\nnewlines", "emoji 😀 here", "<|begin_of_text|>hi",
    "x<|eot_id|>y", "<|end_of_text|>", "def count(n):\n    return n", "ied 4 ½ months",
]
STARCODER_TEXTS = [
    "ied 4 ½ months", "4 ½", " ½", "½", "ied 4½ months", "2 ½ weeks", "12345", " 12345",
    "x = 1234567890", "3.14", "v1.2.3", "In 1984 there were 12345 apples", "room 101",
    "½¾", "¼ cup", "²³", "٣٤٥", "Ⅻ", "x1 y22 z333", "1,000,000", "1e-9", "0x1F",
    "def count(n):\n    return sum(i * 2 for i in range(n))", "He stayed 4 ½ months",
    "<|endoftext|>4 ½", "a  b", "Hello world",
]


def bytes_spelling(text):
    """A word as a byte-level vocabulary spells it (GPT-2's byte-to-character table)."""
    spelling = bytes_to_unicode()
    return "".join(spelling[b] for b in text.encode("utf-8"))


def byte_level_bpe(pre_tokenizer, extra_words, specials, vocab_size):
    """A BPE trained on BPE_CORPUS with the GPT-2 split (so it learns digit and ` ½`
    merges), then given its own pre-tokenizer, extra whole words and special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(BPE_CORPUS * 5, trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for word in extra_words:
        spelled = bytes_spelling(word)
        assert spelled not in vocab, word
        vocab[spelled] = len(vocab)
    data["model"]["ignore_merges"] = pre_tokenizer == "llama3"
    tok = Tokenizer.from_str(json.dumps(data))
    if pre_tokenizer == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if pre_tokenizer == "llama3":
        bos = specials[0]
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                          special_tokens=[(bos, tok.token_to_id(bos))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def make_bpe_folder(name, tok, bos, eos, arch_pre):
    folder = fresh(OUT / name)
    tok.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", {
        "bos_token": bos, "clean_up_tokenization_spaces": False, "eos_token": eos,
        "model_max_length": 128, "tokenizer_class": "PreTrainedTokenizerFast"})
    n = tok.get_vocab_size(with_added_tokens=True)
    LlamaConfig(vocab_size=n, bos_token_id=tok.token_to_id(bos or eos),
                eos_token_id=tok.token_to_id(eos), **TINY).save_pretrained(folder)
    write_gguf(OUT / f"{name}.gguf", "llama", folder, [], llama_params(folder),
               gpt2_vocab(folder, arch_pre))
    return folder


def make_bpe():
    llama3 = byte_level_bpe("llama3", LLAMA3_WORDS,
                            ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], 420)
    starcoder = byte_level_bpe("starcoder", [], ["<|endoftext|>", "<fim_prefix>"], 420)
    # What the defects are about: merges alone split ` Việt`; the GPT-2 split keeps ` ½`.
    whole = llama3.token_to_id(bytes_spelling(" Việt"))
    merged = Tokenizer.from_str(llama3.to_str().replace('"ignore_merges":true',
                                                        '"ignore_merges":false'))
    assert llama3.encode(" Việt", add_special_tokens=False).ids == [whole]
    assert len(merged.encode(" Việt", add_special_tokens=False).ids) > 1
    half = starcoder.token_to_id(bytes_spelling(" ½"))
    assert half is not None and half not in starcoder.encode("ied 4 ½ months").ids
    variants = {"bpe-llama3": make_bpe_folder("bpe-llama3", llama3, "<|begin_of_text|>",
                                              "<|end_of_text|>", "llama-bpe"),
                "bpe-starcoder": make_bpe_folder("bpe-starcoder", starcoder, None,
                                                 "<|endoftext|>", "starcoder")}
    result = {"source": SOURCE, "transformers": transformers.__version__,
              "tokenizers": tokenizers.__version__,
              "variants": {n: describe(f) for n, f in variants.items()}}
    for name, texts in (("bpe-llama3", LLAMA3_TEXTS), ("bpe-starcoder", STARCODER_TEXTS)):
        cases, diffs = record({name: variants[name]}, texts)
        result[name] = cases
        print(f"{name}: {len(texts)} texts; transformers-from-GGUF differs on "
              f"{diffs.get(name, 0)}")
    result["bpe-llama3.whole_words"] = {w: llama3.token_to_id(bytes_spelling(w))
                                        for w in LLAMA3_WORDS}
    result["bpe-starcoder.space_half"] = half
    write_json(OUT / "bpe-texts.json", result)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    make_models()
    make_sentencepiece()
    make_bpe()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT.relative_to(ROOT)}: {total} bytes in all")


if __name__ == "__main__":
    main()
