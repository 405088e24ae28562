#!/usr/bin/env bash
# Issue 5's GPU run (no network, no bun: scripts/gpu-pack.sh packed .gpu/ here; carry it): the
# GPU tests, the large-model parity check and the five speed figures. Builds cuda/ and cpu/ and
# ./vllmd while the benchmark model is written (random bf16 weights with Llama-3-8B's shapes), then
# runs each part in its own process, so the engine and transformers never share the GPU:
#   tests        scripts/gpu-check.sh: test/gpu against the cpu backend and transformers, sanitizer
#   parity       bench/parity-8b.ts + bench/baselines/parity_8b.py: the 8B's greedy tokens and
#                per-token logprobs against transformers (teacher-forced)
#   parity-fp8   the same with --quantization fp8, transformers on the e4m3 weights (and W8A8 inputs)
#   parity-int4  the same on the GPTQ checkpoint, transformers on its dequantized weights
#   floors       bench/baselines/floors.py: copy bandwidth, bf16 GEMM peak, a decode step's GEMMs
#   decode       bench/decode.ts: batch 1, 128-token prompt, 256 tokens
#   decode-fp8   the same with --quantization fp8 (issue 10: decode_b1_fp8_vs_bf16)
#   decode-int4  the same on a GPTQ 4-bit group-128 checkpoint of the model (scripts/make_bench_gptq.py;
#                issue 10: decode_b1_int4_vs_bf16)
#   torch-compiled  bench/baselines/compiled_decode.py: a compiled PyTorch decoder (gpt-fast's recipe)
#                at batch 1, the baseline of decode_b1_vs_compiled_torch
#   decode-table bench/decode-table.ts: the decode step at batch 1..256 for bf16, FP8 and GPTQ 4-bit
#                (issue 10's table: where each wins), kept in the results JSON's raw parts
#   graph-ablation  bench/graph-ablation.ts: the batch-1 decode step in a CUDA graph with each small-op
#                group left out, for bf16, FP8 and GPTQ 4-bit (what fusing each group could save; not
#                in the default set)
#   decode-step  bench/decode-step.ts: one decode step of 256 sequences at ~512 tokens of context
#   prefill      bench/prefill.ts: 8 x 2048 tokens in one step
#   tp-70b       decode_b1 of a random Llama-3-70B-shaped model (141 GB, written to BENCH_70B_DIR) at the
#                tps of GPU_BENCH_TPS_70B (default 2); needs 2+ GPUs and 160 GB of disk, else it says
#                why it did not run (not in the default set: issue 12's figure on a bigger machine)
#   tp-scaling   bench/tp-scaling.ts: decode_b1 and vd_all_reduce latency at each tp of GPU_BENCH_TPS
#                (default 1; "1,2" etc. on a machine with more GPUs: issue 12's figures)
#   prefill-fp8  the same with --quantization fp8 (W8A8 on FP8 tensor cores; issue 10: prefill_fp8_vs_bf16)
#   startup      bench/startup.ts: `vllmd serve` to GET /health 200, weights in the page cache
#   hf-b1        bench/baselines/hf_generate.py --b1: transformers' generate at batch 1
#   hf-mixed     bench/baselines/hf_generate.py --mixed: the first 128 of the 500 requests, batches of 64
#   mixed-fp8    the same with FP8 weights and an e4m3 KV cache (issue 10: mixed_fp8_vs_bf16)
#   mixed        bench/mixed.ts: the 500 requests at once through the engine
# Each part prints one JSON line last, kept as $LOGS/<part>.json (hf-b1 and hf-mixed share hf.json);
# bench/figures.ts combines them into $LOGS/results/<card>-<date>.json and
# bench/results/<card>-<date>.json and prints the figures' table last. Every step has a time
# limit, later steps run when earlier ones fail, and nothing new starts after the budget.
# Usage: bash scripts/gpu-bench.sh     (about 5-6 minutes on an H100, build and tests included)
#   GPU_BENCH_ONLY=decode,prefill      run only these parts (the builds and the model always)
#   GPU_BENCH_BUDGET_S=520             start nothing new after this many seconds
#   BENCH_MODEL_DIR=/tmp/vllmd-bench-8b  where the 8B goes (reused when complete)
#   VLLMD_COMMIT=abc1234               the commit to record (the tree here may not be a git checkout)
#   GPU_BENCH_HF_DURING_BUILD=1        run the transformers baselines while nvcc compiles (saves ~2 min;
#                                      the note in the JSON says so: nvcc takes a few of the 16 cores)
#   GPU_BENCH_MIXED_TOKENS=8192        the engine's max_num_batched_tokens in the mixed run (default: the engine's)
#   GPU_BENCH_EARLIER_LOGS="DIR ..."   part JSONs of an earlier call (its bench-logs archive, unpacked
#                                      and carried in .gpu/), for the parts this call does not run
#   GPU_BENCH_SMOKE=1                  a dry run of this script on a dev machine: the cpu backend, the tiny
#                                      test/fixtures/llama, small sizes, no builds, nothing written to bench/results
set -u
cd "$(dirname "$0")/.." || exit 1
LOGS=${GPU_BENCH_LOGS:-.gpu/logs/bench} # with $OUT set, packed into $OUT/bench-logs.tar.xz at the end
mkdir -p "$LOGS"
BUDGET_S=${GPU_BENCH_BUDGET_S:-520}
START=$SECONDS
ONLY=${GPU_BENCH_ONLY:-tests,parity,parity-fp8,parity-int4,floors,decode,decode-fp8,decode-int4,torch-compiled,decode-table,decode-step,prefill,prefill-fp8,tp-scaling,startup,hf-b1,hf-mixed,mixed-fp8,mixed}
MODEL=${BENCH_MODEL_DIR:-/tmp/vllmd-bench-8b}
WORK=${TMPDIR:-/tmp}/vllmd-bench
mkdir -p "$WORK"
export PATH="$PWD/.gpu/bin:$PATH"
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
BUN=node_modules/.bin/bun
SMOKE=${GPU_BENCH_SMOKE:-0}
DEVICE=cuda
MIXED_LEN=2048
# Per-part size flags: empty for the issue's sizes; tiny ones in a smoke run.
DECODE_ARGS=() TABLE_ARGS=() ABL_ARGS=() TP_ARGS=() DSTEP_ARGS=() PREFILL_ARGS=() WORKLOAD_ARGS=() PARITY_ARGS=() HF_SIZE_ARGS=(--mixed-requests 128 --batch-size 64)
if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu MODEL=test/fixtures/llama MIXED_LEN=128
  DECODE_ARGS=(--tokens 16 --prompt-len 8 --max-model-len 64)
  DSTEP_ARGS=(--seqs 16 --context 64 --steps 5 --warmup 2 --max-num-batched-tokens 256)
  TABLE_ARGS=(--batches 1,4,16 --context 32 --steps 2)
  ABL_ARGS=(--context 32 --steps 2)
  TP_ARGS=(--prompt-len 16 --tokens 8 --runs 1 --sizes 8192 --reps 3)
  PREFILL_ARGS=(--prompts 4 --prompt-len 64)
  WORKLOAD_ARGS=(--n 40 --prompt-min 8 --prompt-max 64 --output-min 4 --output-max 32 --token-min 4 --token-max 384)
  HF_SIZE_ARGS=(--mixed-requests 16 --batch-size 8 --prompt-len 8 --new-tokens 16)
  PARITY_ARGS=(--tokens 8 --prompt-lens 7,20,60 --max-model-len 128)
fi
for p in floors hf decode decode-fp8 decode-int4 torch-compiled decode-table graph-ablation mixed mixed-fp8 decode-step prefill prefill-fp8 tp-scaling tp-70b startup parity parity-engine parity-fp8 parity-fp8-engine parity-int4 parity-int4-engine; do rm -f "$LOGS/$p.json"; done # stale parts must not count

ROWS=()  # "name|status|seconds"
NOTES=() # lines for the result JSON
FAILED=0
left() { echo $((BUDGET_S - (SECONDS - START))); }
want() { [[ ",$ONLY," == *",$1,"* ]]; }
# cap N: N, or what is left of the budget when that is less.
cap() { local l; l=$(left); if [ "$l" -lt "$1" ]; then echo "$l"; else echo "$1"; fi; }

source scripts/gpu-steps.sh # run_step, row (the working directory is the repository root)

# part NAME LIMIT CMD...: a benchmark part; its last JSON line becomes $LOGS/NAME.json.
part() {
  local name=$1 limit
  limit=$(cap "$2")
  shift 2
  if [ "$limit" -lt 20 ]; then row "$name" "not run (time budget)" 0; FAILED=1; return 1; fi
  echo "== $name"
  run_step "$LOGS/$name.log" "$limit" "$@"
  local rc=$?
  grep '^{' "$LOGS/$name.log" | tail -1 > "$LOGS/$name.json"
  if [ ! -s "$LOGS/$name.json" ]; then rm -f "$LOGS/$name.json"; STATUS="$STATUS, no JSON"; fi
  row "$name" "$STATUS" "$ELAPSED"
  if [ "$rc" -ne 0 ]; then tail -6 "$LOGS/$name.log"; else grep -v '^{' "$LOGS/$name.log" | tail -2; fi
  return "$rc"
}

# bg NAME LOG LIMIT CMD...: runs in the background; bg_wait NAME collects its row. Sets BG_PID_NAME.
declare -A BG_PID BG_T0 BG_LOG
bg() {
  local name=$1 log=$2 limit=$3
  shift 3
  BG_T0[$name]=$(date +%s)
  BG_LOG[$name]=$log
  rm -f "$log.end"
  # The end time goes to LOG.end: bg_wait may collect the job long after it finished.
  (timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1; rc=$?; date +%s > "$log.end"; exit "$rc") &
  BG_PID[$name]=$!
}
bg_wait() {
  local name=$1 rc
  wait "${BG_PID[$name]}"
  rc=$?
  STATUS="ok"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then STATUS="TIMEOUT"; elif [ "$rc" -ne 0 ]; then STATUS="FAILED rc=$rc"; fi
  [ "$rc" -ne 0 ] && { FAILED=1; echo "--- $name failed; the last lines of ${BG_LOG[$name]}:"; tail -15 "${BG_LOG[$name]}"; }
  row "$name" "$STATUS" $(($(cat "${BG_LOG[$name]}.end" 2> /dev/null || date +%s) - BG_T0[$name]))
  return "$rc"
}

skip() { row "$1" "not run ($2)" 0; FAILED=1; }
engine_part() { # engine_part NAME LIMIT CMD...: needs the cuda library and the model
  if [ "$CUDA_OK" -ne 1 ]; then skip "$1" "make cuda failed"; elif [ "$MODEL_OK" -ne 1 ]; then skip "$1" "no model"; else part "$@"; fi
}

write_workload() {
  want hf-mixed || want mixed || return 0
  run_step "$LOGS/workload.log" 60 "$BUN" bench/workload.ts --write "$WORK/workload.json" ${WORKLOAD_ARGS[@]+"${WORKLOAD_ARGS[@]}"}
  row "workload ($(tail -1 "$LOGS/workload.log" | grep -oE '[0-9]+ requests' || echo '?'))" "$STATUS" "$ELAPSED"
}

# The GPTQ 4-bit checkpoint of the benchmark model, for decode-int4 and decode-table. Sets GPTQ_OK.
GPTQ_MODEL=${BENCH_GPTQ_DIR:-$MODEL-gptq4}
GPTQ_OK=0
make_gptq_model() {
  { want decode-int4 || want decode-table || want graph-ablation || want parity-int4; } && [ "$MODEL_OK" -eq 1 ] || return 0
  if [ -f "$GPTQ_MODEL/.complete" ]; then row "GPTQ 4-bit checkpoint" "reused $GPTQ_MODEL" 0; GPTQ_OK=1; return 0; fi
  run_step "$LOGS/make-gptq.log" "$(cap 180)" bash -c 'rm -rf "$2" && python3 scripts/make_bench_gptq.py "$1" "$2" && touch "$2/.complete"' _ "$MODEL" "$GPTQ_MODEL"
  row "GPTQ 4-bit checkpoint" "$STATUS" "$ELAPSED"
  [ "$STATUS" = ok ] && GPTQ_OK=1
  tail -1 "$LOGS/make-gptq.log"
}

FLOORS_DONE=0
run_floors() {
  want floors && [ "$FLOORS_DONE" -eq 0 ] || return 0
  FLOORS_DONE=1
  if [ "$MODEL_OK" -eq 1 ]; then part floors 120 python3 bench/baselines/floors.py "$MODEL"; else skip floors "no model"; fi
}

HF_DONE=0
run_hf() {
  [ "$HF_DONE" -eq 0 ] || return 0
  HF_DONE=1
  local args=()
  want hf-b1 && args+=(--b1)
  want hf-mixed && args+=(--mixed "$WORK/workload.json")
  [ "${#args[@]}" -gt 0 ] || return 0
  if [ "$MODEL_OK" -ne 1 ]; then skip "hf (transformers generate)" "no model"; return 0; fi
  # hf_generate.py rewrites its --out after each of its parts: a timeout keeps the finished ones.
  rm -f "$WORK/hf-partial.json"
  part hf 300 python3 bench/baselines/hf_generate.py "$MODEL" "${args[@]}" "${HF_SIZE_ARGS[@]}" --out "$WORK/hf-partial.json"
  [ -s "$LOGS/hf.json" ] || { [ -s "$WORK/hf-partial.json" ] && cp "$WORK/hf-partial.json" "$LOGS/hf.json"; }
  want hf-mixed && NOTES+=("hf mixed baseline: ${HF_SIZE_ARGS[*]}")
}

# Unpacks bun; builds cuda/, cpu/ and ./vllmd on the CPU while the model is written on the GPU;
# then, the GPU being free, measures the floors (CUDA graphs and events: the compiler's CPU load
# does not enter them) and, with GPU_BENCH_HF_DURING_BUILD=1, the transformers baselines.
# Sets CUDA_OK, MODEL_OK and VLLMD_CMD.
build_all() {
  echo "== unpack bun + node_modules"
  run_step "$LOGS/unpack.log" 120 bash .gpu/unpack
  row "unpack bun + node_modules" "$STATUS" "$ELAPSED"
  cat "$LOGS/unpack.log"

  export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} --threads 0"
  bg "make cuda" "$LOGS/build-cuda.log" 330 make -j16 cuda
  bg "make cpu" "$LOGS/build-cpu.log" 180 make -j16 cpu
  bg "bun build --compile vllmd" "$LOGS/build-vllmd.log" 120 make compile
  MODEL_OK=0
  if [ -f "$MODEL/.complete" ]; then
    row "benchmark model (8B, bf16)" "reused $MODEL" 0
    MODEL_OK=1
  else
    bg "benchmark model (8B, bf16)" "$LOGS/make-model.log" 240 bash -c \
      'rm -rf "$1" && python3 scripts/make_bench_model.py "$1" && touch "$1/.complete"' _ "$MODEL"
  fi
  write_workload
  if [ "$MODEL_OK" -eq 0 ]; then bg_wait "benchmark model (8B, bf16)" && MODEL_OK=1; tail -1 "$LOGS/make-model.log"; fi
  make_gptq_model
  run_floors
  if [ "${GPU_BENCH_HF_DURING_BUILD:-0}" = 1 ]; then
    NOTES+=("the transformers baselines ran while nvcc was compiling (GPU_BENCH_HF_DURING_BUILD=1)")
    run_hf
  fi
  CUDA_OK=0
  bg_wait "make cuda" && CUDA_OK=1
  bg_wait "make cpu"
  VLLMD_CMD=./vllmd
  if ! bg_wait "bun build --compile vllmd"; then
    VLLMD_CMD="$BUN src/cli.ts"
    NOTES+=("startup measured with '$BUN src/cli.ts serve' (bun build --compile failed), not ./vllmd")
  fi
}

GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1)
GPU_NAME=${GPU_NAME:-unknown-gpu}
CARD=$(echo "$GPU_NAME" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+|-+$//g')
DATE=$(date -u +%F)
COMMIT=${VLLMD_COMMIT:-$(git rev-parse --short HEAD 2> /dev/null || echo unknown)}
echo "gpu: $GPU_NAME ($(nvidia-smi --query-gpu=memory.total,driver_version --format=csv,noheader 2> /dev/null | head -1)); commit $COMMIT; parts: $ONLY"

if [ "$SMOKE" = 1 ]; then
  row "builds, unpack, model" "skipped (smoke run)" 0
  CUDA_OK=1 MODEL_OK=1 VLLMD_CMD="$BUN src/cli.ts"
  write_workload
else
  build_all
fi

run_tests() {
  want tests && [ "$SMOKE" != 1 ] || return 0
  local limit
  limit=$(cap 240)
  echo "== tests (scripts/gpu-check.sh)"
  GPU_CHECK_BUDGET_S=$((limit - 30)) run_step "$LOGS/gpu-check.log" "$limit" bash scripts/gpu-check.sh
  row "tests (scripts/gpu-check.sh)" "$STATUS$(grep -qE '^total +all ok' "$LOGS/gpu-check.log" || echo ', SOMETHING FAILED')" "$ELAPSED"
  [ "$STATUS" = ok ] || sed -n '/^== gpu-check/,$p' "$LOGS/gpu-check.log"
}

# parity_pair NAME "ENGINE FLAGS" "PYTHON FLAGS": the engine's side, then transformers' on the same tokens.
parity_pair() {
  local name=$1 engine_args py_args
  read -ra engine_args <<< "$2"
  read -ra py_args <<< "$3"
  engine_part "$name-engine" 120 "$BUN" bench/parity-8b.ts "${engine_args[@]}" --device "$DEVICE" --out "$WORK/$name-engine.json" \
    ${PARITY_ARGS[@]+"${PARITY_ARGS[@]}"} || return 0
  part "$name" 120 python3 bench/baselines/parity_8b.py "$MODEL" "$WORK/$name-engine.json" ${py_args[@]+"${py_args[@]}"}
  [ -s "$LOGS/$name.json" ] && NOTES+=("$name: $(grep -E '^parity vs' "$LOGS/$name.log" | tail -1)")
}

run_parity() {
  want parity && parity_pair parity "--model $MODEL" ""
  want parity-fp8 && parity_pair parity-fp8 "--model $MODEL --quantization fp8" "--fp8"
  if want parity-int4; then
    if [ "$GPTQ_OK" -eq 1 ]; then parity_pair parity-int4 "--model $GPTQ_MODEL" "--gptq $GPTQ_MODEL"
    else skip parity-int4 "no GPTQ checkpoint (made only on the GPU machine)"; fi
  fi
  return 0
}

run_tests
run_parity
run_floors
want decode && engine_part decode 120 "$BUN" bench/decode.ts --model "$MODEL" --device "$DEVICE" ${DECODE_ARGS[@]+"${DECODE_ARGS[@]}"}
want decode-fp8 && engine_part decode-fp8 120 "$BUN" bench/decode.ts --model "$MODEL" --device "$DEVICE" --quantization fp8 ${DECODE_ARGS[@]+"${DECODE_ARGS[@]}"}
if want decode-int4; then
  if [ "$GPTQ_OK" -eq 1 ]; then
    engine_part decode-int4 120 "$BUN" bench/decode.ts --model "$GPTQ_MODEL" --device "$DEVICE" ${DECODE_ARGS[@]+"${DECODE_ARGS[@]}"}
  else skip decode-int4 "no GPTQ checkpoint (made only on the GPU machine)"; fi
fi
if want torch-compiled; then
  if [ "$MODEL_OK" -eq 1 ]; then part torch-compiled 240 python3 bench/baselines/compiled_decode.py "$MODEL"; else skip torch-compiled "no model"; fi
fi
# The weight formats side by side in decode-table and graph-ablation: bf16, FP8 at load, GPTQ 4-bit.
FORMAT_RUNS="bf16=$MODEL,fp8=$MODEL:fp8"
[ "$GPTQ_OK" -eq 1 ] && FORMAT_RUNS="$FORMAT_RUNS,int4=$GPTQ_MODEL"
want decode-table && engine_part decode-table 240 "$BUN" bench/decode-table.ts --runs "$FORMAT_RUNS" --device "$DEVICE" ${TABLE_ARGS[@]+"${TABLE_ARGS[@]}"}
want graph-ablation && engine_part graph-ablation 240 "$BUN" bench/graph-ablation.ts --runs "$FORMAT_RUNS" --device "$DEVICE" ${ABL_ARGS[@]+"${ABL_ARGS[@]}"}
want decode-step && engine_part decode-step 180 "$BUN" bench/decode-step.ts --model "$MODEL" --device "$DEVICE" ${DSTEP_ARGS[@]+"${DSTEP_ARGS[@]}"}
want prefill && engine_part prefill 120 "$BUN" bench/prefill.ts --model "$MODEL" --device "$DEVICE" ${PREFILL_ARGS[@]+"${PREFILL_ARGS[@]}"}
if want tp-70b; then
  M70=${BENCH_70B_DIR:-/tmp/vllmd-bench-70b}
  GPUS=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU' || true)
  FREE_GB=$(( $(df -Pk "$(dirname "$M70")" | awk 'NR == 2 {print $4}') / 1048576 ))
  if [ "$SMOKE" = 1 ]; then skip tp-70b "a smoke run"
  elif [ "${GPUS:-0}" -lt 2 ]; then skip tp-70b "$GPUS GPU(s): the 70B needs 2+"
  elif [ ! -f "$M70/.complete" ] && [ "$FREE_GB" -lt 160 ]; then skip tp-70b "$FREE_GB GB free on $(dirname "$M70"), the 70B needs 160"
  else
    if [ ! -f "$M70/.complete" ]; then
      run_step "$LOGS/make-model-70b.log" "$(cap 900)" bash -c 'rm -rf "$1" && python3 scripts/make_bench_model.py "$1" --shape 70b && touch "$1/.complete"' _ "$M70"
      row "benchmark model (70B, bf16)" "$STATUS" "$ELAPSED"
    fi
    if [ -f "$M70/.complete" ]; then
      engine_part tp-70b 300 "$BUN" bench/tp-scaling.ts --model "$M70" --device "$DEVICE" --tps "${GPU_BENCH_TPS_70B:-2}" --sizes 8192 --runs 2
    else skip tp-70b "no 70B model"; fi
  fi
fi
want tp-scaling && engine_part tp-scaling 240 "$BUN" bench/tp-scaling.ts --model "$MODEL" --device "$DEVICE" --tps "${GPU_BENCH_TPS:-1}" ${TP_ARGS[@]+"${TP_ARGS[@]}"}
want prefill-fp8 && engine_part prefill-fp8 120 "$BUN" bench/prefill.ts --model "$MODEL" --device "$DEVICE" --quantization fp8 ${PREFILL_ARGS[@]+"${PREFILL_ARGS[@]}"}
want startup && engine_part startup 150 "$BUN" bench/startup.ts --model "$MODEL" --cmd "$VLLMD_CMD" --device "$DEVICE" --runs 2 --timeout 60
run_hf

# The timed mixed runs stop at --max-seconds (reported as partial) so that the figures still get
# written; mixed-fp8 (FP8 weights, e4m3 KV cache) goes first, since mixed may take what is left.
run_mixed() {
  local name=$1 limit=$2 max_s
  shift 2
  max_s=$((limit - 45))
  if [ "$max_s" -lt 30 ]; then skip "$name" "time budget"; return 0; fi
  local args=(--max-num-seqs 256 --max-model-len "$MIXED_LEN" --max-seconds "$max_s")
  [ -n "${GPU_BENCH_MIXED_TOKENS:-}" ] && args+=(--max-num-batched-tokens "$GPU_BENCH_MIXED_TOKENS")
  engine_part "$name" "$limit" "$BUN" bench/mixed.ts --model "$MODEL" --device "$DEVICE" --workload "$WORK/workload.json" "${args[@]}" "$@"
}
want mixed-fp8 && run_mixed mixed-fp8 "$(cap 150)" --quantization fp8 --kv-cache-dtype fp8
want mixed && run_mixed mixed "$(($(left) - 15))"

RESULT="$CARD-$DATE.json"
FIG_ARGS=(--dir "$LOGS" --out "$LOGS/results/$RESULT" --gpu "$GPU_NAME" --commit "$COMMIT" --date "$DATE")
for d in ${GPU_BENCH_EARLIER_LOGS:-}; do FIG_ARGS+=(--dir "$d"); done # parts an earlier call ran
[ "$SMOKE" = 1 ] || FIG_ARGS+=(--out "bench/results/$RESULT")
for n in ${NOTES[@]+"${NOTES[@]}"}; do FIG_ARGS+=(--note "$n"); done
timeout 60 "$BUN" bench/figures.ts "${FIG_ARGS[@]}" > "$LOGS/figures.log" 2>&1 || { FAILED=1; echo "bench/figures.ts failed:"; }

echo
print_table "gpu-bench: $GPU_NAME, commit $COMMIT" 40
echo "logs: $LOGS; figures: $LOGS/results/$RESULT$([ "$SMOKE" = 1 ] || echo " and bench/results/$RESULT")"
echo
cat "$LOGS/figures.log"
export_logs bench "$LOGS/results/$RESULT" # the results JSON comes back on its own too
exit "$FAILED"
