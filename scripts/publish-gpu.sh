#!/usr/bin/env bash
# Self-contained, trimmed linux-x64 builds for GPU machines that have the NVIDIA driver but no .NET:
#   publish/afm-gpu/afm-gpu       the CLI (afm-gpu devices, afm-gpu selftest, afm-gpu train --accelerator cuda ...)
#   publish/afm-bench/afm-bench   the benchmarks
# Copy a folder over whole and run the executable in it. Any trim or build warning fails the script.
# Usage: scripts/publish-gpu.sh        (RID=linux-x64 by default)
#        SINGLE_FILE=1 scripts/publish-gpu.sh   each program as one compressed file (about half the size), for
#                                               carrying both to a machine with a size limit
#        WITH_ONNX=1 ...                        keep ONNX Runtime's native library for afm-bench --onnx (29 MB)
#        WITH_DATA=1 ...                        also copy ml-100k-libfm (from ../shared/data or $AFM_DATA) into
#                                               publish/data, for scripts/gpu-check.sh (publish/ is not tracked)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rid=${RID:-linux-x64}
args=(-c Release -r "$rid" --self-contained -p:PublishTrimmed=true
      "-p:CustomAfterMicrosoftCommonTargets=$root/scripts/publish-trim.targets")
if [ "${SINGLE_FILE:-0}" = 1 ]; then
    args+=(-p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true)
fi

rm -rf publish/afm-gpu publish/afm-bench
dotnet publish src/Afm.Cli "${args[@]}" -o publish/afm-gpu
dotnet publish bench "${args[@]}" -o publish/afm-bench
# ONNX Runtime's native library (29 MB, and its Windows files, which its package copies for every RID) serves only
# afm-bench --onnx, a CPU comparison; it stays out unless asked for, which keeps the bundle at about 36 MB with the data.
rm -f publish/afm-bench/onnxruntime*.dll
if [ "${WITH_ONNX:-0}" != 1 ]; then
    rm -f publish/afm-bench/libonnxruntime*.so
fi

if [ "${WITH_DATA:-0}" = 1 ]; then
    data=${AFM_DATA:-$root/../shared/data}/ml-100k-libfm
    [ -f "$data/train.libfm" ] || { echo "publish-gpu: no ml-100k-libfm at $data" >&2; exit 1; }
    mkdir -p publish/data && rm -rf publish/data/ml-100k-libfm && cp -r "$data" publish/data/
fi

# The published CLI must start (trimming breaks reflection-based code at run time, not at publish time).
publish/afm-gpu/afm-gpu devices >/dev/null
publish/afm-bench/afm-bench --help >/dev/null
du -sh publish/*
