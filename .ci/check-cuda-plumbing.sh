#!/usr/bin/env bash
# Runs the CUDA accelerator's tests against .ci/fake-cuda.c, a stand-in driver and NVRTC that validate every call
# (memory ranges, pinned sources of async copies, a current context, launch geometry and kernel arguments against
# the kernel signatures) and perform async copies late, as a real stream may. Kernels do not run, so only the tests
# that check plumbing rather than values are selected. No GPU, CUDA SDK or driver needed: gcc and dotnet. It runs
# twice: with the stand-in NVRTC, and with the real one where installed (then on real PTX).
# Usage: .ci/check-cuda-plumbing.sh
set -euo pipefail  # the test run's status is the script's

root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

gcc -shared -fPIC -O1 -Wall -Wextra -Werror -Wno-unused-parameter -o "$out/libcuda.so.1" "$root/.ci/fake-cuda.c"
mkdir -p "$out/nvrtc"
cp "$out/libcuda.so.1" "$out/nvrtc/libnvrtc.so.13"

tests=(UploadsMayReuseTheHostArrayAtOnce TheSecondAcceleratorLoadsTheKernelsFromTheCache TrainingAndPredictionRunEndToEnd
       AutoPrefersCudaAndOtherwiseSaysWhyNot EnumerationNotesWhyThereIsNoCudaDevice TheTrainingGridIsOneWaveOfResidentBlocks)
filter=$(printf 'FullyQualifiedName~CudaAcceleratorTests.%s|' "${tests[@]}")

run() { # $1: label, then environment assignments
  local label=$1; shift
  echo "check-cuda-plumbing: $label"
  env LD_LIBRARY_PATH="$out" AFM_GPU_CACHE_DIR="$out/cache-$label" AFM_REQUIRE_CUDA=1 "$@" \
    dotnet test "$root/tests/Afm.Gpu.Tests.csproj" --filter "${filter%|}" --logger "console;verbosity=normal" 2>&1 |
    grep -E '^\s*(Passed|Failed)[ !]|fake-cuda|Error Message' -A1
}

# 1. the stand-in NVRTC, whose images carry the kernel source: arguments checked against the source's signatures
run fake-nvrtc AFM_NVRTC_PATH="$out/nvrtc/libnvrtc.so.13"

# 2. the real NVRTC where installed (Debian: libnvrtc11.2), compiling the real source to PTX for a device newer
#    than it knows: arguments, block size and shared memory checked against the compiled entries
# (awk reads to the end: leaving early would kill ldconfig with SIGPIPE, which pipefail makes this script's status)
real=$(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so/ && !/builtins/ && !found { print $NF; found = 1 }')
if [ -n "$real" ]; then
  run real-nvrtc AFM_NVRTC_PATH="$real" FAKE_CUDA_CC=100
elif [ "${AFM_REQUIRE_NVRTC:-0}" = 1 ]; then
  echo "check-cuda-plumbing: AFM_REQUIRE_NVRTC=1 but no libnvrtc.so is installed" >&2; exit 1
else
  echo "check-cuda-plumbing: no real NVRTC installed; skipped the run that compiles real PTX"
fi
