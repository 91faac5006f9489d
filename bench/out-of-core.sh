#!/usr/bin/env bash
# The data cache and out-of-core training, demonstrated: generates a libFM file several times larger than a managed
# heap cap (DOTNET_GCHeapHardLimit), converts it into a cache and trains an FM from it under that cap; then trains
# the same FM on a copy one eighth the size, from its cache under the cap and in memory without it, so that the two
# paths are compared on the same rows; prints each run's figures (docs/data-cache.md).
# Needs about 2.5 x the file's size free under the work directory, which is removed at the end.
#   AFM_OOC_ROWS   rows of the large file (default 10000000: about 1.14 GB of text at 16 fields per row)
#   AFM_OOC_CAP    the heap cap in bytes, hex (default 0x10000000 = 256 MiB)
#   AFM_OOC_DIR    work directory (default a new one under /tmp)
#   AFM_OOC_EPOCHS epochs of each training run (default 2)
# The capped runs also set DOTNET_GCConserveMemory=7 (the runtime compacts its large-object heap when fragmented),
# which keeps the process's resident set, not only the managed heap, under the cap; AFM_OOC_CONSERVE=0 leaves it off.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${AFM_OOC_ROWS:-10000000}
cap=${AFM_OOC_CAP:-0x10000000}
epochs=${AFM_OOC_EPOCHS:-2}
conserve=${AFM_OOC_CONSERVE:-7}
work=${AFM_OOC_DIR:-$(mktemp -d /tmp/afm-ooc.XXXXXX)}
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

dotnet build bench -c Release -v quiet -nologo >/dev/null
bench=(dotnet bench/bin/Release/net10.0/afm-bench.dll out-of-core)
"${bench[@]}" generate -o "$work/big.libfm" --rows "$rows" --seed 1
"${bench[@]}" generate -o "$work/test.libfm" --rows 200000 --seed 2
head -n $((rows / 8)) "$work/big.libfm" >"$work/small.libfm"

echo "== out of core: convert and train from the cache, under the cap"
DOTNET_GCHeapHardLimit=$cap DOTNET_GCConserveMemory=$conserve "${bench[@]}" run --train "$work/big.libfm" --test "$work/test.libfm" \
    --cache "$work/big.afmbin" --shuffle-buffer 131072 --epochs "$epochs"
rm -f "$work/big.afmbin"
echo "== out of core: the first eighth of the rows, under the cap"
DOTNET_GCHeapHardLimit=$cap DOTNET_GCConserveMemory=$conserve "${bench[@]}" run --train "$work/small.libfm" --test "$work/test.libfm" \
    --cache "$work/small.afmbin" --shuffle-buffer 131072 --epochs "$epochs"
rm -f "$work/small.afmbin"
echo "== in memory: the first eighth of the rows, no cap"
"${bench[@]}" run --train "$work/small.libfm" --test "$work/test.libfm" --in-memory --epochs "$epochs"
