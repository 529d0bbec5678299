#!/usr/bin/env bash
# The CUDA checks, as one script for a lent GPU machine: libtorch sees the GPU,
# bf16 works, CUDA logits match the CPU's, SDPA and eager agree, 4-bit runs, and
# generation speed next to transformers on the same random model.
# Usage: bench/gpu_check.sh FTUI_ENGINE_BINARY WORK_DIR
set -uo pipefail
BIN=$1
WORK=$2
mkdir -p "$WORK"
TORCH_LIB=$(python3 -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export FTUI_HOME=$WORK/home
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch; print('python torch', torch.__version__)"
echo "== doctor"; "$BIN" doctor --json
TINY=tests/fixtures/models/llama
TEXT="Strong in you, the Force is. Patience you must learn."
echo "== score: cpu vs cuda fp32, sdpa vs eager, bf16"
for args in "--device cpu --dtype float32" "--device cuda --dtype float32" "--device cuda --dtype float32 --attn eager" "--device cuda --dtype bfloat16"; do
  echo "-- $args"; "$BIN" score --model $TINY $args --text "$TEXT" --json
done
echo "== random SmolLM2-sized model"
python3 bench/make_random_model.py "$WORK/smol" >/dev/null && ls -la "$WORK/smol"
for dtype in bfloat16 float32; do
  echo "-- ftui bench generate cuda $dtype"; "$BIN" bench generate --model "$WORK/smol" --device cuda --dtype $dtype --json
  echo "-- transformers cuda $dtype"; python3 bench/hf_generate_cuda.py "$WORK/smol" $dtype
done
echo "-- ftui bench generate cuda bf16 NF4+dq"
"$BIN" bench generate --model "$WORK/smol" --device cuda --dtype bfloat16 --load-in-4bit --double-quant --json
echo "-- greedy generate, cache vs no cache (cuda bf16)"
"$BIN" generate --model "$WORK/smol" --device cuda --dtype bfloat16 --prompt "$TEXT" --max-new-tokens 24 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['token_ids'])"
"$BIN" generate --model "$WORK/smol" --device cuda --dtype bfloat16 --prompt "$TEXT" --max-new-tokens 24 --no-cache --json | python3 -c "import json,sys; print(json.load(sys.stdin)['token_ids'])"
