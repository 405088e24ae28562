# Shared by scripts/gpu-check.sh and scripts/gpu-bench.sh (sourced): running one time-limited step
# with its output in a log, and the rows of the table each script prints last.
# The sourcing script sets FAILED=0 and ROWS=() first.

# run_step LOG TIMEOUT CMD...: runs CMD with output to LOG; sets STATUS and ELAPSED; returns CMD's rc.
run_step() {
  local log=$1 limit=$2 t0=$SECONDS rc
  shift 2
  timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
  rc=$?
  ELAPSED=$((SECONDS - t0))
  STATUS="ok"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then STATUS="TIMEOUT (${limit}s)"; elif [ "$rc" -ne 0 ]; then STATUS="FAILED rc=$rc"; fi
  [ "$rc" -ne 0 ] && FAILED=1
  return "$rc"
}

# row NAME STATUS SECONDS: one line of the final table.
row() { ROWS+=("$1|$2|$3"); }

# print_table TITLE STATUS_WIDTH: the "== TITLE" line, one line per row and the total (uses
# ROWS, FAILED and START).
print_table() {
  local fmt="%-34s %-${2}s %6s\n" r n s t
  echo "== $1"
  printf "$fmt" "step" "status" "s"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r n s t <<< "$r"
    printf "$fmt" "$n" "$s" "$t"
  done
  printf "$fmt" "total" "$([ "$FAILED" -eq 0 ] && echo 'all ok' || echo 'SOMETHING FAILED')" $((SECONDS - START))
}

# export_logs NAME [FILE...]: with $OUT set (the device tool's folder, of which only a few files
# come back), the logs folder as one archive $OUT/NAME-logs.tar.xz and each FILE beside it.
export_logs() {
  [ -n "${OUT:-}" ] || return 0
  local name=$1 f
  shift
  mkdir -p "$OUT"
  tar -C "$LOGS" -cJf "$OUT/$name-logs.tar.xz" . 2> /dev/null || echo "export_logs: could not pack $LOGS"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$OUT/"; done
  return 0
}
