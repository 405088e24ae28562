#!/usr/bin/env bash
# The one script for the GPU machine (no network, no bun: scripts/gpu-pack.sh packed .gpu/ here):
# unpack bun, build the cuda and cpu backends, run the GPU parity tests (test/gpu) file by file,
# run compute-sanitizer on a few small kernel tests, and print a short table last. Every step runs
# even if an earlier one failed (except tests that need the library a failed build did not make).
# Logs go to .gpu/logs/check (GPU_CHECK_LOGS to change it); with $OUT set (the device tool's folder)
# they are packed into $OUT/check-logs.tar.xz at the end.
# Usage: bash scripts/gpu-check.sh        (about 3-6 minutes; stops starting work after ~7)
set -u
cd "$(dirname "$0")/.." || exit 1
LOGS=${GPU_CHECK_LOGS:-.gpu/logs/check}
mkdir -p "$LOGS"
rm -f "$LOGS"/test-*.log "$LOGS/sanitizer.log" # a stale log must not read as this run's
BUDGET_S=${GPU_CHECK_BUDGET_S:-430} # start nothing new after this; each step is also time-limited
START=$SECONDS
export PATH="$PWD/.gpu/bin:$PATH"
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
BUN=node_modules/.bin/bun

ROWS=()    # "name|status|seconds" for the table
CRASHED=() # logs of test files whose bun process died
FAILED=0
left() { echo $((BUDGET_S - (SECONDS - START))); }

source scripts/gpu-steps.sh # run_step, row (the working directory is the repository root)

# step NAME LOG TIMEOUT CMD...: run_step, then a row in the table.
step() {
  local name=$1 rc
  shift
  echo "== $name"
  run_step "$@"
  rc=$?
  row "$name" "$STATUS" "$ELAPSED"
  return "$rc"
}

GPU_NAME=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)
echo "gpu: $GPU_NAME"
echo "nvcc: $(command -v nvcc > /dev/null && nvcc --version | tail -1 || echo 'not found')"

step "unpack bun + node_modules" "$LOGS/unpack.log" 120 bash .gpu/unpack
cat "$LOGS/unpack.log"

# nvcc compiles the two architectures of each file in parallel; make -j helps once cuda/ builds per object.
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} --threads 0"
CUDA_OK=0
step "make cuda" "$LOGS/build-cuda.log" 330 make -j16 cuda && CUDA_OK=1
if [ "$CUDA_OK" -ne 1 ]; then
  echo "--- make cuda failed; the last lines of $LOGS/build-cuda.log:"
  grep -E "error|warning" "$LOGS/build-cuda.log" | head -40
  tail -15 "$LOGS/build-cuda.log"
fi
warnings=$(grep -c "warning" "$LOGS/build-cuda.log")
[ "$warnings" -gt 0 ] && echo "cuda build: $warnings lines with warnings (see $LOGS/build-cuda.log)"
step "make cpu" "$LOGS/build-cpu.log" 180 make -j16 cpu || tail -15 "$LOGS/build-cpu.log"

# One bun process per test file, so that a crash or a sticky CUDA error stays inside its file.
TEST_LOG="$LOGS/gpu-tests.log"
: > "$TEST_LOG"
# Quick files first, whole models last; any other file in test/gpu runs too.
ORDER=(harness buffers-parity ops-parity gemm-parity quant-parity attention-parity sample-parity model-parity)
FILES=()
for n in "${ORDER[@]}"; do [ -f "test/gpu/$n.test.ts" ] && FILES+=("test/gpu/$n.test.ts"); done
for f in test/gpu/*.test.ts; do [[ " ${FILES[*]} " == *" $f "* ]] || FILES+=("$f"); done
for f in "${FILES[@]}"; do
  name=$(basename "$f" .test.ts)
  if [ "$CUDA_OK" -ne 1 ]; then row "test $name" "not run (make cuda failed)" 0; FAILED=1; continue; fi
  budget=$(left)
  if [ "$budget" -lt 30 ]; then row "test $name" "not run (time budget)" 0; FAILED=1; continue; fi
  [ "$budget" -gt 300 ] && budget=300
  t0=$SECONDS
  echo "== test $name"
  VLLMD_GPU_TESTS=1 timeout --kill-after=10 "$budget" "$BUN" test --timeout 300000 "$f" > "$LOGS/test-$name.log" 2>&1
  rc=$?
  cat "$LOGS/test-$name.log" >> "$TEST_LOG"
  pass=$(grep -oE '^ *[0-9]+ pass$' "$LOGS/test-$name.log" | grep -oE '[0-9]+' | tail -1)
  fail=$(grep -oE '^ *[0-9]+ fail$' "$LOGS/test-$name.log" | grep -oE '[0-9]+' | tail -1)
  skip=$(grep -oE '^ *[0-9]+ skip$' "$LOGS/test-$name.log" | grep -oE '[0-9]+' | tail -1)
  status="${pass:-?} pass, ${fail:-?} fail${skip:+, $skip skip}"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="$status, TIMEOUT"; elif [ -z "$pass" ]; then status="CRASHED rc=$rc"; CRASHED+=("$LOGS/test-$name.log"); fi
  [ "$rc" -ne 0 ] && FAILED=1
  row "test $name" "$status" $((SECONDS - t0))
done

# compute-sanitizer on a few small cases of each kernel family (memcheck is 10-100x slower).
SANITIZER=$(command -v compute-sanitizer || true)
PATTERN='embedding: act bf16, table bf16|rmsnorm: act bf16, weight bf16, 7x64|rope_write_kv: act bf16, T=37 H=8 KVH=2 D=128|silu_mul: act bf16, 33x864|gather_rows: act bf16|cast f32 -> bf16|mixed batch: H=8 KVH=2 D=128 B=16, act bf16|act bf16, weights bf16: m=7 n=67|greedy \(temperature|the draw is|vd_quantize_fp8 from bf16|vd_gemm_fp8, act bf16: m=(3|9) |vd_gemm_int, [48]-bit group 32: m=(5 n=72|3 n=40) |e4m3 KV cache, mixed batch: H=8 KVH=2 D=128, act bf16|e4m3 KV cache, mixed batch: H=4 KVH=4 D=64, act f32|rope_write_kv into an e4m3 cache: act bf16, T=37|W8A8 \(act_quant fp8Row\), act bf16: m=(37|5) '
if [ -z "$SANITIZER" ]; then
  row "compute-sanitizer memcheck" "not found" 0
elif [ "$CUDA_OK" -ne 1 ] || [ "$(left)" -lt 60 ]; then
  row "compute-sanitizer memcheck" "not run ($([ "$CUDA_OK" -ne 1 ] && echo 'no library' || echo 'time budget'))" 0
else
  limit=$(left)
  [ "$limit" -gt 150 ] && limit=150
  echo "== compute-sanitizer memcheck"
  run_step "$LOGS/sanitizer.log" "$limit" env VLLMD_GPU_TESTS=1 "$SANITIZER" --tool memcheck --error-exitcode 9 --print-limit 20 \
    "$BUN" test --timeout 300000 test/gpu/ops-parity.test.ts test/gpu/attention-parity.test.ts test/gpu/gemm-parity.test.ts test/gpu/sample-parity.test.ts test/gpu/quant-parity.test.ts -t "$PATTERN"
  summary=$(grep -E "ERROR SUMMARY" "$LOGS/sanitizer.log" | tail -1 | sed 's/^=* *//')
  ran=$(grep -cE '^\((pass|fail)\)' "$LOGS/sanitizer.log")
  row "compute-sanitizer memcheck" "$STATUS, $ran tests, ${summary:-no summary}" "$ELAPSED"
fi

# What failed, briefly (the whole output is in the logs).
# Each failing test with the error just above it in bun's output, at most 6 per file.
for log in "$LOGS"/test-*.log; do
  [ -f "$log" ] && grep -qE '^\(fail\)' "$log" || continue
  echo "--- failing in $(basename "$log" .log | sed 's/^test-//') (details in $log):"
  awk '/^(error|[A-Za-z]*Error): / { err = substr($0, 1, 180) }
       /^(Expected|Received)/ && err ~ /expect\(/ { err = err " | " substr($0, 1, 80) }
       /^\(fail\)/ { if (++n <= 6) print $0 "\n      " err; err = "" }
       END { if (n > 6) print "  ... and " n - 6 " more" }' "$log"
done
for log in "${CRASHED[@]}"; do
  echo "--- $(basename "$log" .log) crashed; its last lines:"
  tail -8 "$log"
done
if [ -f "$LOGS/sanitizer.log" ] && ! grep -q "ERROR SUMMARY: 0 errors" "$LOGS/sanitizer.log"; then
  echo "--- compute-sanitizer (details in $LOGS/sanitizer.log):"
  grep -E "Invalid|out of bounds|========= (Address|at |by thread)|ERROR SUMMARY|^\(fail\)" "$LOGS/sanitizer.log" | head -30
fi

echo
print_table "gpu-check: $GPU_NAME" 52
export_logs check
echo "logs: $LOGS${OUT:+ (packed into $OUT/check-logs.tar.xz)}"
exit "$FAILED"
