#!/usr/bin/env bash
# Issue 9's soak on the GPU machine: bench/soak.ts against ./vllmd serving the 8B benchmark model
# (random bf16 weights with Llama-3-8B's shapes, scripts/make_bench_model.py) on cuda. That model
# has no tokenizer: the built-in model's is copied in, so text prompts work (its 4096 ids are all
# in the 8B's vocabulary; generated ids beyond them decode to nothing).
# Usage: bash scripts/gpu-soak.sh [SECONDS (120)]   after scripts/gpu-check.sh in the same call, or alone
#   BENCH_MODEL_DIR=/tmp/vllmd-bench-8b   where the 8B is (written when missing; waits for a writer)
set -u
cd "$(dirname "$0")/.." || exit 1
LOGS=${OUT:-.gpu/logs}
mkdir -p "$LOGS"
export PATH="$PWD/.gpu/bin:$PATH"
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
MODEL=${BENCH_MODEL_DIR:-/tmp/vllmd-bench-8b}
[ -x node_modules/.bin/bun ] || bash .gpu/unpack || exit 1
[ -f build/libvllmd_cuda.so ] || make -j16 cuda > "$LOGS/soak-build-cuda.log" 2>&1 || { tail -20 "$LOGS/soak-build-cuda.log"; exit 1; }
cp build/libvllmd_cuda.so libvllmd_cuda.so
make compile > "$LOGS/soak-compile.log" 2>&1 || { tail -20 "$LOGS/soak-compile.log"; exit 1; }
if [ ! -f "$MODEL/.complete" ] && [ ! -d "$MODEL" ]; then
  python3 scripts/make_bench_model.py "$MODEL" > "$LOGS/soak-model.log" 2>&1 && touch "$MODEL/.complete"
fi
for _ in $(seq 300); do [ -f "$MODEL/.complete" ] && break; sleep 1; done # a writer started elsewhere
[ -f "$MODEL/.complete" ] || { echo "no complete model in $MODEL"; exit 1; }
cp models/default/tokenizer.json models/default/tokenizer_config.json models/default/chat_template.jinja "$MODEL/"
node_modules/.bin/bun bench/soak.ts --duration "${1:-120}" --vllmd ./vllmd --max-health-ms 1000 --json "$LOGS/soak-8b.json" \
  -- "$MODEL" --device cuda --max-model-len 4096
