#!/usr/bin/env bash
# The GPU check, in one short call on a machine with an NVIDIA GPU and its driver but no .NET. Build first, here:
#   SINGLE_FILE=1 WITH_DATA=1 scripts/publish-gpu.sh      (publish/: about 36 MB with ml-100k-libfm)
# then, on the GPU machine, from the repository root with publish/ beside it:
#   OUT=/some/dir scripts/gpu-check.sh
# It writes under $OUT (default ./gpu-check-out): the devices, the selftest of the CUDA accelerator against the CPU
# accelerator, afm-bench on the GPU with PyTorch on the same GPU,
# and ml-100k trained on the GPU and on the CPU with both test RMSEs. Every step has its own time limit (about 7
# minutes in all); a failing step is recorded and the next one still runs. Exit status: the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-./gpu-check-out}
mkdir -p "$out"
cli=publish/afm-gpu/afm-gpu
bench=publish/afm-bench/afm-bench
data=${AFM_DATA:-publish/data/ml-100k-libfm}
failed=0

step() { # step NAME SECONDS COMMAND...: runs COMMAND with a time limit, output to $out/NAME.txt and to the terminal
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    local rc=$?
    tail -n 40 "$out/$name.txt"
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" = 0 ] || failed=$((failed + 1))
}

[ -x "$cli" ] && [ -x "$bench" ] || { echo "gpu-check: $cli or $bench missing: run scripts/publish-gpu.sh first" >&2; exit 100; }
command -v nvidia-smi >/dev/null && nvidia-smi >"$out/nvidia-smi.txt" 2>&1
step devices 60 "$cli" devices
step selftest 150 "$cli" selftest --accelerator cuda
step bench 210 "$bench" --accelerators cuda:0 --shapes afm-m10-k64-b8192,afm-m10-k16,afm-m39,fm-m10 --quick --compare-torch --json "$out/bench.json"
if [ -f "$data/train.libfm" ]; then
    for acc in cuda cpu; do
        step "ml100k-$acc" 90 "$cli" train --train "$data/train.libfm" --test "$data/test.libfm" --model afm \
            --epochs 10 --accelerator "$acc" --no-progress -o "$out/ml100k-$acc.afm"
    done
    grep -h "^test" "$out"/ml100k-*.txt
else
    echo "gpu-check: no ml-100k-libfm at $data (publish with WITH_DATA=1): training step skipped"
    failed=$((failed + 1))
fi
echo "gpu-check: $failed step(s) failed"
exit "$failed"
