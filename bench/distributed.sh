#!/usr/bin/env bash
# Data-parallel scaling on this machine: samples/s of `afm-gpu train` as one process, and under mpirun with 1 and 2
# ranks of one CPU thread each, on synthetic rows of m one-hot fields of 1000 features (labels 1..5), as afm-bench's
# shapes; and the bytes each rank exchanges per step. Figures, not a test.
#
#   bench/distributed.sh [--m 10] [--k 64] [--t 64] [--batch 8192] [--rows 65536] [--epochs 3] [--ranks "1 2"]
#
# Needs a Release build (dotnet build -c Release) and Open MPI (apt-get install openmpi-bin libopenmpi-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
m=10 k=64 t=64 batch=8192 rows=65536 epochs=3 ranks="1 2"
while [ $# -gt 0 ]; do
    case "$1" in
        --m) m=$2 ;; --k) k=$2 ;; --t) t=$2 ;; --batch) batch=$2 ;; --rows) rows=$2 ;; --epochs) epochs=$2 ;; --ranks) ranks=$2 ;;
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
      --validation-fraction 0 --patience 0 -a cpu --threads 1 --no-progress -o "$work/model.afm")
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); m=$m k=$k t=$t, global batch $batch, $rows rows, $epochs epochs (the first not counted: JIT warm-up), 1 CPU thread per rank"
# Samples/s of the epochs after the first: their rows over their summed seconds.
rate() { awk '/^epoch/ && $2 > 1 { for (i = 1; i <= NF; i++) if ($i == "s") s += $(i - 1); n += rows } END { printf "%.0f", n / s }' rows="$rows"; }
base=$(dotnet "$cli" "${args[@]}" 2>/dev/null | rate)
echo "1 process (no MPI):  $base samples/s"
for n in $ranks; do
    out=$(mpirun --allow-run-as-root --oversubscribe ${MPIRUN_ARGS:-} -np "$n" dotnet "$cli" "${args[@]}" 2>/dev/null)
    r=$(echo "$out" | rate)
    echo "mpirun -np $n:          $r samples/s ($(awk -v a="$r" -v b="$base" 'BEGIN { printf "%.2f", a / b }')x one process)"
    echo "$out" | grep '^exchanged' | sed 's/^/    /'
done
