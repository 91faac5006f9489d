#!/usr/bin/env bash
# Self-contained, trimmed linux-x64 builds for GPU machines that have the NVIDIA driver (and NVRTC) but no .NET:
#   publish/afm-gpu/afm-gpu       the CLI (afm-gpu devices, afm-gpu selftest, afm-gpu train --accelerator cuda ...)
#   publish/afm-bench/afm-bench   the benchmarks
# Copy a folder over whole and run the executable in it. Any trim or build warning fails the script.
# Usage: scripts/publish-gpu.sh        (RID=linux-x64 by default)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rid=${RID:-linux-x64}
args=(-c Release -r "$rid" --self-contained -p:PublishTrimmed=true
      "-p:CustomAfterMicrosoftCommonTargets=$root/scripts/publish-trim.targets")

rm -rf publish/afm-gpu publish/afm-bench
dotnet publish src/Afm.Cli "${args[@]}" -o publish/afm-gpu
dotnet publish bench "${args[@]}" -o publish/afm-bench

# The published CLI must start (trimming breaks reflection-based code at run time, not at publish time).
publish/afm-gpu/afm-gpu devices >/dev/null
publish/afm-bench/afm-bench --help >/dev/null
du -sh publish/afm-gpu publish/afm-bench
