#!/usr/bin/env bash
# Runs the CUDA accelerator's tests against .ci/fake-cuda.c, a stand-in driver and NVRTC that validate every call
# (memory ranges, pinned sources of async copies, a current context, launch geometry and kernel arguments against
# the kernel signatures) and perform async copies late, as a real stream may. Kernels do not run, so only the tests
# that check plumbing rather than values are selected. No GPU, CUDA SDK or driver needed: gcc and dotnet.
# Usage: .ci/check-cuda-plumbing.sh
set -euo pipefail  # the test run's status is the script's

root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

gcc -shared -fPIC -O1 -Wall -Wextra -Werror -Wno-unused-parameter -o "$out/libcuda.so.1" "$root/.ci/fake-cuda.c"
cp "$out/libcuda.so.1" "$out/libnvrtc.so.13"

tests=(UploadsMayReuseTheHostArrayAtOnce TheSecondAcceleratorLoadsTheKernelsFromTheCache TrainingAndPredictionRunEndToEnd
       AutoPrefersCudaAndOtherwiseSaysWhyNot EnumerationNotesWhyThereIsNoCudaDevice)
filter=$(printf 'FullyQualifiedName~CudaAcceleratorTests.%s|' "${tests[@]}")
LD_LIBRARY_PATH="$out" AFM_NVRTC_PATH="$out/libnvrtc.so.13" AFM_GPU_CACHE_DIR="$out/cache" AFM_REQUIRE_CUDA=1 \
  dotnet test "$root/tests/Afm.Gpu.Tests.csproj" --filter "${filter%|}" --logger "console;verbosity=normal" 2>&1 |
  grep -E '^\s*(Passed|Failed)[ !]|fake-cuda|Error Message' -A1
