"""Make the golden fixture for ftui's bitsandbytes-compatible quantization.

ftui quantizes linear weights itself (``src/quant``) and must produce the very
codes bitsandbytes produces: the same NF4/FP4 nibbles in the same packing, the
same per-block absmax, the same double-quantized absmax, the same LLM.int8 row
codes and scales. This script runs bitsandbytes (on CPU) once and writes what it
gives to ``tests/fixtures/quant/bnb.safetensors``; ``tests/quant.rs`` and the
unit tests in ``src/quant`` compare against it.

Which bitsandbytes code paths run on CPU (bitsandbytes 0.50.2):

- ``quantize_4bit``: the PyTorch reference backend (``backends/default/ops.py``),
  nearest code by ``torch.bucketize`` over the code midpoints, high nibble first.
- ``dequantize_4bit``: the native C++ CPU kernel (table value * absmax, fp32).
- ``quantize_blockwise`` (the 8-bit dynamic map used for double quantization): the
  native C++ CPU kernel, which picks the code through a 65536-entry lookup table
  and so is not always the nearest code. CUDA and the reference backend pick the
  nearest code. ftui follows the reference (and CUDA); the fixture keeps both:
  ``*.absmax_codes`` from the reference backend, ``*.absmax_codes_cpu`` from the
  native CPU kernel.
- ``Int8Params`` / ``int8_vectorwise_quant``: the reference backend, on the weight
  cast to float16 first (as ``Int8Params._quantize`` does).

Metadata (versions, transformers' get_memory_footprint() of the tiny Llama fixture
quantized, the modules it quantized) goes to ``bnb.json`` beside it.

Run from the repository root with the fixture venv (tools/requirements.txt):

    .venv/bin/python tools/make_quant_fixtures.py

Everything is seeded; two runs write identical files.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

import bitsandbytes
import bitsandbytes.functional as F
import transformers
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "quant" / "bnb.safetensors"
TINY_LLAMA = ROOT / "tests" / "fixtures" / "models" / "llama"

# The reference (PyTorch) backend of a bitsandbytes op, reached past the native
# CPU kernel that is registered on top of it.
REFERENCE = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)


def reference_quantize_blockwise(A, code=None, absmax=None, out=None, blocksize=4096, nested=False):
    """``F.quantize_blockwise`` through the reference backend (nearest code)."""
    assert absmax is None and out is None and not nested
    if code is None:
        code = F.create_dynamic_map().to(A.device)
    q, am = torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(REFERENCE, A, code, blocksize)
    return q, F.QuantState(absmax=am, code=code.clone(), blocksize=blocksize, dtype=A.dtype)


def quantize_4bit_reference(w, quant_type, double_quant):
    """``F.quantize_4bit`` with the nested absmax quantized by the reference backend."""
    native = F.quantize_blockwise
    F.quantize_blockwise = reference_quantize_blockwise
    try:
        return F.quantize_4bit(w, blocksize=64, compress_statistics=double_quant, quant_type=quant_type)
    finally:
        F.quantize_blockwise = native


def edge_weight():
    """A [96, 192] fp32 weight (3 blocks of 64 per row, 288 blocks: one full block
    of 256 absmax values and a remainder of 32 for double quantization) with
    edge cases placed block by block."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(96, 192, generator=g) * 0.05
    nf4 = F.get_4bit_type("nf4", device="cpu")
    fp4 = F.get_4bit_type("fp4", device="cpu")
    nf4_mid = (nf4[:-1] + nf4[1:]) / 2
    fp4_sorted = fp4.sort().values
    fp4_mid = (fp4_sorted[:-1] + fp4_sorted[1:]) / 2

    def put(row, block, values):
        values = torch.as_tensor(values, dtype=torch.float32).flatten()
        w[row, block * 64 : block * 64 + values.numel()] = values

    put(0, 0, torch.zeros(64))  # an all-zero block
    put(0, 1, torch.full((64,), 0.0371))  # equal values
    put(0, 2, torch.full((64,), -0.0213))  # equal negative values
    put(1, 0, [0.2, -0.2])  # +absmax and -absmax in one block
    # Exact ties: with absmax 1.0 the scaled value is the value itself.
    put(1, 1, torch.cat([torch.tensor([1.0]), nf4_mid, -nf4_mid, nf4, nf4_mid.nextafter(torch.ones(15))]))
    put(1, 2, torch.cat([torch.tensor([1.0]), fp4_mid, fp4, torch.tensor([1e-4, -1e-4, 0.0, -0.0, 2.6e-3, -2.6e-3])]))
    put(2, 0, torch.randn(64, generator=g) * 1e-39)  # subnormal block: absmax below the 1e-38 clamp
    put(2, 1, [1e4])  # one huge outlier in an ordinary block
    w[3] = 0.0  # an all-zero row (LLM.int8: SCB = 0)
    put(4, 0, [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, 3.5, 126.5, -126.5])  # int8 round-half-even ties
    return w


def dequant(packed, state):
    return F.dequantize_4bit(packed, state)


def main():
    torch.manual_seed(0)
    t = {}
    meta = {
        "bitsandbytes": bitsandbytes.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "blocksize": "64",
    }

    w = edge_weight()
    t["weight"] = w
    t["dynamic_map"] = F.create_dynamic_map()
    for qt in ("nf4", "fp4"):
        t[f"{qt}.code"] = F.get_4bit_type(qt, device="cpu")

        packed, st = quantize_4bit_reference(w, qt, double_quant=False)
        t[f"{qt}.codes"] = packed
        t[f"{qt}.absmax"] = st.absmax
        t[f"{qt}.dequant"] = dequant(packed, st)

        # Double quantization, reference nearest-code rounding of the absmax.
        packed_dq, st = quantize_4bit_reference(w, qt, double_quant=True)
        assert torch.equal(packed_dq, packed)
        t[f"{qt}dq.absmax_codes"] = st.absmax
        t[f"{qt}dq.nested_absmax"] = st.state2.absmax
        t[f"{qt}dq.offset"] = st.offset.reshape(1)
        if qt == "nf4":
            t[f"{qt}dq.dequant"] = dequant(packed, st)
            # A forward pass through bnb's matmul_4bit, compute in fp32.
            x = torch.randn(4, 192) * 0.5
            t["nf4dq.x"] = x
            t["nf4dq.y"] = bitsandbytes.matmul_4bit(x, packed.t(), quant_state=st)

        # What the native CPU kernel gives for the same absmax values.
        _, st_cpu = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type=qt)
        assert torch.equal(st_cpu.state2.absmax, st.state2.absmax)
        assert torch.equal(st_cpu.offset, st.offset)
        t[f"{qt}dq.absmax_codes_cpu"] = st_cpu.absmax

    # The 8-bit blockwise quantizer on its own (blocks of 256, 600 = 2 * 256 + 88):
    # reference nearest-code rounding, and what the native CPU kernel's lookup
    # table gives (it differs where a value lies within the table's resolution of
    # a midpoint, or among the dense codes near zero).
    v = torch.randn(600) * 0.3
    v[:4] = torch.tensor([0.0, 1e-7, -3e-6, 2e-5])
    q, st = reference_quantize_blockwise(v, blocksize=256)
    q_cpu, st_cpu = F.quantize_blockwise(v, blocksize=256)
    assert torch.equal(st.absmax, st_cpu.absmax)
    t["blockwise.input"] = v
    t["blockwise.codes"] = q
    t["blockwise.codes_cpu"] = q_cpu
    t["blockwise.absmax"] = st.absmax
    t["blockwise.dequant"] = F.dequantize_blockwise(q, st)
    meta["blockwise.cpu_differs_at"] = json.dumps((q != q_cpu).nonzero().flatten().tolist())

    # A bf16 weight (the usual checkpoint dtype): quantized from its fp32 value,
    # dequantized back to bf16.
    wb = (torch.randn(32, 128) * 0.05).to(torch.bfloat16)
    packed, st = quantize_4bit_reference(wb, "nf4", double_quant=False)
    t["bf16.weight"] = wb
    t["bf16.nf4.codes"] = packed
    t["bf16.nf4.absmax"] = st.absmax
    t["bf16.nf4.dequant"] = dequant(packed, st)

    # Element counts that are not whole blocks: 300 = 4 * 64 + 44, and 15 (odd:
    # the last byte holds one code and a zero nibble).
    for name, shape in (("rem", (10, 30)), ("odd", (3, 5))):
        wo = torch.randn(*shape) * 0.05
        packed, st = quantize_4bit_reference(wo, "nf4", double_quant=False)
        t[f"{name}.weight"] = wo
        t[f"{name}.nf4.codes"] = packed
        t[f"{name}.nf4.absmax"] = st.absmax
        t[f"{name}.nf4.dequant"] = dequant(packed, st)

    # Linear4bit (NF4, double quantization): bnb_4bit_compute_dtype is honoured
    # only for float16 inputs (float32 and bfloat16 inputs compute in their own
    # dtype).
    lin = bitsandbytes.nn.Linear4bit(192, 96, bias=True, compute_dtype=torch.bfloat16, quant_type="nf4")
    lin.weight = bitsandbytes.nn.Params4bit(w.clone(), requires_grad=False, quant_type="nf4", blocksize=64,
                                            compress_statistics=True)
    lin.bias = torch.nn.Parameter(torch.randn(96) * 0.1, requires_grad=False)
    lin = lin.to("cpu")
    lin.train()  # keep bnb's AVX512-bf16 inference repacking out of the way
    assert torch.equal(lin.weight.data, t["nf4.codes"])
    x16 = (torch.randn(4, 192) * 0.5).to(torch.float16)
    with torch.no_grad():
        t["lin4.bias"] = lin.bias.data.clone()
        t["lin4.x16"] = x16
        t["lin4.y16"] = lin(x16)  # computed in bfloat16, returned as float16

    # LLM.int8: Int8Params quantizes the weight as float16, row by row.
    p = bitsandbytes.nn.Int8Params(w.clone(), requires_grad=False).to("cpu")
    t["int8.cb"] = p.data
    t["int8.scb"] = p.SCB
    t["int8.dequant"] = F.int8_vectorwise_dequant(p.data, p.SCB)
    # Inference with outlier decomposition (threshold 6.0): the columns of x with
    # any |value| >= 6 run in float16, the rest as int8 x int8.
    lin8 = bitsandbytes.nn.Linear8bitLt(192, 96, bias=True, has_fp16_weights=False, threshold=6.0)
    lin8.weight = bitsandbytes.nn.Int8Params(w.clone(), requires_grad=False, has_fp16_weights=False)
    lin8.bias = torch.nn.Parameter(t["lin4.bias"].clone(), requires_grad=False)
    lin8 = lin8.to("cpu").eval()
    assert torch.equal(lin8.weight.data, p.data)
    x8 = (torch.randn(4, 192) * 0.5).to(torch.float16)
    x8[1, 5] = 7.5
    x8[2, 100] = -6.0
    x8[0, 150] = 5.99
    with torch.no_grad():
        t["int8.x"] = x8
        t["int8.y_lt"] = lin8(x8)

    # transformers on the tiny Llama fixture: which linears it quantizes and what
    # get_memory_footprint() reports.
    for name, cfg in (
        ("nf4dq", BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                     bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)),
        ("int8", BitsAndBytesConfig(load_in_8bit=True)),
        ("int8_skip_o", BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["o_proj"])),
    ):
        m = AutoModelForCausalLM.from_pretrained(TINY_LLAMA, quantization_config=cfg, dtype=torch.float32,
                                                 device_map="cpu")
        quantized = sorted(n for n, mod in m.named_modules()
                           if isinstance(mod, (bitsandbytes.nn.Linear4bit, bitsandbytes.nn.Linear8bitLt))
                           and mod.weight.dtype in (torch.uint8, torch.int8))
        meta[f"llama.{name}.footprint"] = str(m.get_memory_footprint())
        meta[f"llama.{name}.quantized"] = json.dumps(quantized)
        if name == "nf4dq":
            q = m.model.layers[0].self_attn.q_proj.weight
            t["llama.q_proj.codes"] = q.data.clone()
            t["llama.q_proj.absmax_codes_cpu"] = q.quant_state.absmax.clone()
            t["llama.q_proj.nested_absmax"] = q.quant_state.state2.absmax.clone()
            t["llama.q_proj.offset"] = q.quant_state.offset.reshape(1).clone()
    m = AutoModelForCausalLM.from_pretrained(TINY_LLAMA, dtype=torch.float32)
    meta["llama.fp32.footprint"] = str(m.get_memory_footprint())

    OUT.parent.mkdir(parents=True, exist_ok=True)
    # safetensors writes header metadata in no fixed order; a JSON file beside
    # the tensors keeps two runs byte-identical.
    save_file({k: v.contiguous() for k, v in t.items()}, OUT)
    OUT.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(t)} tensors) and {OUT.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
