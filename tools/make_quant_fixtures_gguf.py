"""Reference blocks for ftui's GGUF quantizers (src/gguf/quantize.rs, tests/export.rs).

Quantizes fixture tensors with
- gguf-py (`gguf.quants.quantize`, the PyPI package `gguf`, tools/requirements.txt):
  F16, BF16, Q8_0, Q4_0 (it has no K-quant quantizer);
- llama.cpp's C reference (`quantize_row_{q8_0,q4_0,q4_K,q6_K}_ref` in ggml's
  `src/ggml-quants.c`), compiled here from the ggml sources vendored in the PyPI sdist
  of `ggml-python` (downloaded with `pip download`, nothing installed), without FMA
  contraction, as the reference is written;
and writes tests/fixtures/export/quants.safetensors: `input` (f32 rows) and, per
implementation and type, the bytes (`gguf-py.Q4_0`, `ggml.Q4_K`, ...).

Run from the repository root: .venv/bin/python3 tools/make_quant_fixtures_gguf.py
"""

import ctypes
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "export" / "quants.safetensors"
GGML_PYTHON = "ggml-python==0.0.45"

# The ggml symbols ggml-quants.c needs that the reference quantizers never call.
STUBS = r"""
#include <stddef.h>
#include <stdlib.h>
void ggml_abort(const char * file, int line, const char * fmt, ...) { abort(); }
size_t ggml_row_size(int type, long ne) { abort(); }
const char * ggml_type_name(int type) { abort(); }
size_t ggml_type_size(int type) { abort(); }
"""

# (name, block values, block bytes)
REFS = [
    ("q8_0", "Q8_0", 32, 34),
    ("q4_0", "Q4_0", 32, 18),
    ("q4_K", "Q4_K", 256, 144),
    ("q6_K", "Q6_K", 256, 210),
]


def reference_library(work: Path) -> ctypes.CDLL:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", GGML_PYTHON, "-d", str(work)],
        check=True,
    )
    sdist = next(work.glob("ggml_python-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    ggml = next(work.glob("ggml_python-*/vendor/ggml"))
    (work / "stubs.c").write_text(STUBS)
    lib = work / "libquants.so"
    subprocess.run(
        ["cc", "-O2", "-ffp-contract=off", "-fPIC", "-shared",
         "-I", str(ggml / "include"), "-I", str(ggml / "src"), "-I", str(ggml / "src" / "ggml-cpu"),
         str(ggml / "src" / "ggml-quants.c"), str(work / "stubs.c"), "-o", str(lib), "-lm"],
        check=True,
    )
    return ctypes.CDLL(str(lib))


def inputs() -> np.ndarray:
    rng = np.random.default_rng(7)
    rows = [rng.normal(0, 0.02, 512) for _ in range(6)]           # weight-like
    rows += [rng.normal(0, 1.0, 512) for _ in range(2)]           # activation-like
    rows.append(rng.uniform(-1, 1, 512))
    heavy = rng.normal(0, 0.02, 512)
    heavy[[3, 100, 300, 511]] = [0.9, -1.3, 2.5, -0.7]            # outliers
    rows.append(heavy)
    sparse = np.zeros(512)
    sparse[[0, 40, 260, 400]] = [0.5, -0.25, 1.0, 0.125]          # mostly zero blocks
    rows.append(sparse)
    rows.append(np.zeros(512))
    rows.append(np.full(512, 0.3))                                # constant
    rows.append(np.abs(rng.normal(0, 0.05, 512)))                 # all positive (min 0)
    rows.append(-np.abs(rng.normal(0, 0.05, 512)))                # all negative
    ties = np.tile(np.array([-8, -7.5, -4.5, 0.5, 1.5, 2.5, 7.5, 8] * 4, dtype=np.float64) / 8, 16)
    rows.append(ties)                                             # exact halves
    return np.stack(rows).astype(np.float32)


def main():
    x = inputs()
    out = {"input": x}
    for name, ty in [("F16", T.F16), ("BF16", T.BF16), ("Q8_0", T.Q8_0), ("Q4_0", T.Q4_0)]:
        out[f"gguf-py.{name}"] = np.ascontiguousarray(quants.quantize(x, ty)).view(np.uint8)
    with tempfile.TemporaryDirectory() as work:
        lib = reference_library(Path(work))
        for fn, name, block, size in REFS:
            f = getattr(lib, f"quantize_row_{fn}_ref")
            f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            dst = np.zeros((x.shape[0], x.shape[1] // block * size), dtype=np.uint8)
            for r in range(x.shape[0]):
                row = np.ascontiguousarray(x[r])
                f(row.ctypes.data, dst[r].ctypes.data, row.size)
            out[f"ggml.{name}"] = dst
    for name in ("Q8_0", "Q4_0"):
        same = np.array_equal(out[f"gguf-py.{name}"], out[f"ggml.{name}"])
        print(f"{name}: gguf-py and ggml's reference {'agree' if same else 'DIFFER'}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(OUT))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
