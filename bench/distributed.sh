#!/usr/bin/env bash
# Data-parallel scaling on this machine: samples/s of `afm-gpu train` as one process, and under mpirun with 1 and 2
# ranks of one CPU thread each, on synthetic rows of m one-hot fields of 1000 features (labels 1..5), as afm-bench's
# shapes; and the bytes each rank exchanges per step. Figures, not a test.
#
#   bench/distributed.sh [--m 10] [--k 64] [--t 64] [--batch 8192] [--rows 65536] [--epochs 5] [--ranks "1 2"] [--repeat 3]
#
# Needs a Release build (dotnet build -c Release) and Open MPI (apt-get install openmpi-bin libopenmpi-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
m=10 k=64 t=64 batch=8192 rows=65536 epochs=5 ranks="1 2" repeat=3
while [ $# -gt 0 ]; do
    case "$1" in
        --m) m=$2 ;; --k) k=$2 ;; --t) t=$2 ;; --batch) batch=$2 ;; --rows) rows=$2 ;; --epochs) epochs=$2 ;; --ranks) ranks=$2 ;;
        --repeat) repeat=$2 ;;
        *) echo "bench/distributed.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
cli=src/Afm.Cli/bin/Release/net10.0/afm-gpu.dll
[ -f "$cli" ] || { echo "bench/distributed.sh: $cli not found; run dotnet build -c Release first" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "bench/distributed.sh: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v rows="$rows" -v m="$m" 'BEGIN { srand(1); for (r = 0; r < rows; r++) { line = 1 + int(rand() * 5); for (f = 0; f < m; f++) line = line " " (f * 1000 + int(rand() * 1000)) ":1"; print line } }' >"$work/train.libfm"

args=(train --train "$work/train.libfm" --model afm --no-pretrain --lambda 0 -k "$k" -t "$t" --batch "$batch" --epochs "$epochs"
      --validation-fraction 0 --patience 0 -a cpu --threads 1 --no-progress)
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); m=$m k=$k t=$t, global batch $batch, $rows rows, $epochs epochs (the first not counted: JIT warm-up), 1 CPU thread per rank"
# Samples/s of each epoch after the first, as the run printed them.
rate() { awk '/^epoch/ && $2 > 1 { gsub(",", "", $(NF - 1)); printf " %s", $(NF - 1) }'; }
# Each configuration runs --repeat times, in turn with the others, so that all see the same load; of all their epochs
# the best and the median are printed (the machine may be shared: the load average is printed before and after).
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A rates exchange
for i in $(seq "$repeat"); do
    rates[base]+=" $(dotnet "$cli" "${args[@]}" -o "$work/model.afm" 2>/dev/null | rate)"
    # What two cores give right now: two independent one-process runs at once, their rates summed (the ceiling of 2 ranks).
    dotnet "$cli" "${args[@]}" -o "$work/other.afm" 2>/dev/null | rate >"$work/other.rate" &
    mine=$(dotnet "$cli" "${args[@]}" -o "$work/model.afm" 2>/dev/null | rate)
    wait
    rates[pair]+=" $(paste -d' ' <(echo "$mine" | tr ' ' '\n' | grep .) <(tr ' ' '\n' <"$work/other.rate" | grep .) | awk '{ printf " %d", $1 + $2 }')"
    for n in $ranks; do
        out=$(mpirun --allow-run-as-root --oversubscribe ${MPIRUN_ARGS:-} -np "$n" dotnet "$cli" "${args[@]}" -o "$work/model.afm" 2>/dev/null)
        rates[$n]+=" $(echo "$out" | rate)"
        exchange[$n]=$(echo "$out" | grep '^exchanged')
    done
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
stats() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { printf "best %d, median %d samples/s of %d epochs", a[NR], a[int((NR + 1) / 2)], NR }'; }
best() { tr ' ' '\n' | grep . | sort -n | tail -1; }
echo "1 process (no MPI): $(echo "${rates[base]}" | stats)"
echo "2 independent processes at once, summed: $(echo "${rates[pair]}" | stats); best against best: $(awk -v a="$(echo "${rates[pair]}" | best)" -v b="$(echo "${rates[base]}" | best)" 'BEGIN { printf "%.2f", a / b }')x one process"
for n in $ranks; do
    ratio=$(awk -v a="$(echo "${rates[$n]}" | best)" -v b="$(echo "${rates[base]}" | best)" 'BEGIN { printf "%.2f", a / b }')
    echo "mpirun -np $n: $(echo "${rates[$n]}" | stats); best against best: ${ratio}x one process"
    echo "    ${exchange[$n]}"
done
