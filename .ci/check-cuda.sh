#!/usr/bin/env bash
# Compile check of the single-source GPU kernels without a GPU or CUDA SDK:
#   - as CUDA C to PTX with clang (src/Afm.Gpu/Kernels/Gpu/cuda_prelude.h stands in for the CUDA headers),
#   - as OpenCL C 1.2 with clang -fsyntax-only,
# each for a representative set of shapes (AFM and FM, fixed and ragged, one and several pair tiles).
# Usage: .ci/check-cuda.sh [-v]       (CLANG=clang-14 by default; ARCH=sm_80 by default)
# Exits non-zero on any compiler error or warning, or when an expected kernel entry is missing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/src/Afm.Gpu/Kernels/Gpu
src=$dir/afm_kernels.cu.cl
clang=${CLANG:-clang-14}
arch=${ARCH:-sm_80}
verbose=${1:-}
kernels="afm_forward afm_forward_backward afm_reduce_dense afm_update_sparse afm_update_dense"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

command -v "$clang" >/dev/null || { echo "check-cuda: $clang not found (apt-get install -y clang-14)" >&2; exit 2; }

# name             fm   k   t   m   wg  tile  rows/group  [dense accumulator in global memory]  (as GpuKernelSource.Configure would pick)
shapes=(
  "afm-m10-k16-t16   0   16  16  10  128  45    8"
  "afm-m12-k8-t5     0    8   5  12   64  20    1"
  "afm-m39-k16-t16   0   16  16  39  128  255   16"
  "afm-m3-k64-t64    0   64  64   3  256   3    8"
  "afm-m2-k1-t1      0    1   1   2   32   1    3"
  "fm-m12-k16        1   16   0  12  128   1    8"
  "fm-m1-k300        1  300   0   1  128   1    2"
  "afm-m3-k256-t256  0  256 256   3  128   3    8     1"
)

# Backward tiles of whole pair columns for a row of m slots (the kernel's recurrence).
tiles() {
  local m=$1 tile=$2 fm=$3 n=0 j0=1 j1 pb
  if [ "$fm" = 1 ]; then echo 0; return; fi
  while [ "$j0" -lt "$m" ]; do
    pb=$(( j0 * (j0 - 1) / 2 )); j1=$(( j0 + 1 ))
    while [ "$j1" -lt "$m" ] && [ $(( (j1 + 1) * j1 / 2 - pb )) -le "$tile" ]; do j1=$(( j1 + 1 )); done
    n=$(( n + 1 )); j0=$j1
  done
  echo $n
}

status=0
for spec in "${shapes[@]}"; do
  read -r name fm k t m wg tile rpg acc <<<"$spec"
  pairs=$(( m * (m - 1) / 2 ))
  dense=$(( t * k + 2 * t + k + 1 ))
  defs=(-DAFM_K=$k -DAFM_T=$t -DAFM_M=$m -DAFM_P=$pairs -DAFM_DENSE=$dense -DAFM_WG=$wg -DAFM_TILE=$tile
        -DAFM_NTILES="$(tiles "$m" "$tile" "$fm")" -DAFM_RPG=$rpg -DAFM_FM=$fm -DAFM_ACC_GLOBAL="${acc:-0}")
  ptx=$out/$name.ptx
  if ! "$clang" -x cuda --cuda-gpu-arch="$arch" --cuda-device-only -nocudainc -nocudalib -O2 -S \
      -Wall -Wextra -Werror -Wno-unused-parameter -include "$dir/cuda_prelude.h" -I "$dir" "${defs[@]}" -o "$ptx" "$src"; then
    echo "FAIL cuda   $name" >&2; status=1; continue
  fi
  for kname in $kernels; do
    if ! grep -q "^\.visible \.entry $kname(" "$ptx"; then
      echo "FAIL cuda   $name: no unmangled entry $kname in the PTX" >&2; status=1
    fi
  done
  if ! "$clang" -x cl -cl-std=CL1.2 -Xclang -finclude-default-header -fsyntax-only \
      -Wall -Wextra -Werror -Wno-unused-parameter -I "$dir" "${defs[@]}" "$src"; then
    echo "FAIL opencl $name" >&2; status=1; continue
  fi
  # static shared memory of the fused kernel: CUDA allows 48 KiB per block without opt-in
  shared=$(awk '/^[ \t]*\.shared .*_ZZ20afm_forward_backward/ {
      if (match($0, /\[[0-9]+\]/)) n += substr($0, RSTART + 1, RLENGTH - 2); else n += 4 } END { print n + 0 }' "$ptx")
  if [ "$shared" -gt 49152 ]; then
    echo "FAIL cuda   $name: afm_forward_backward needs $shared bytes of shared memory (> 48 KiB)" >&2; status=1
  fi
  echo "ok   $name ($(grep -c '^\.visible \.entry' "$ptx") entries, $(wc -l <"$ptx") PTX lines, fused kernel shared memory $shared bytes)"
  [ "$verbose" = -v ] && grep -E '^\s*\.shared' "$ptx" | sed 's/^/       /'
done
exit $status
