# Shared by the benchmark scripts (sourced): a free port, timing with peak RSS, medians.
# `measure` writes the command's stderr to $WORK/err.

freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# Run a command, print "seconds peak_rss_kib" (peak RSS of that process itself, sampled from
# /proc while it runs: VmHWM only grows, so the last sample is the peak).
measure() {
  local start end pid hwm=0 v
  start=$(now)
  "$@" >/dev/null 2>"$WORK/err" & pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$v" ] && hwm=$v
    sleep 0.05
  done
  if ! wait "$pid"; then echo "command failed: $*" >&2; cat "$WORK/err" >&2; exit 1; fi
  end=$(now)
  echo "$(python3 -c "print(round($end - $start, 3))") $hwm"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
