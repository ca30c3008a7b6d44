#!/usr/bin/env bash
# GPU check for duet: golden parity on CUDA and TensorRT, then a benchmark against duet on CPU.
#
#   tools/gpu_check.sh [REPORT_FILE] [BENCH_MODEL_DIR]
#
# Run from the repository root on a machine with an NVIDIA GPU and no network. It carries what
# it needs from this checkout:
#   - target/release/{duet,duet-bench,golden-test}   (make gpu-bundle, on any x86-64 machine)
#   - .ort-gpu/lib: onnxruntime-gpu 1.31.1's libraries (make fetch-ort-gpu), or set
#     ORT_GPU_LIB_DIR to a folder holding them; they need CUDA 13 and cuDNN 9 (the nvidia-*-cu13
#     pip wheels work: their lib folders are added below) and TensorRT 10 for tensorrt;
#   - .ort/lib (CPU onnxruntime, make fetch-ort) for the CPU side of the benchmark;
#   - tests/fixtures (the golden models); BENCH_MODEL_DIR: a larger export to time (e.g. the
#     t5-small-architecture model of `make bench`; default: tests/fixtures/t5-tiny).
# A step that cannot run (no TensorRT, say) is reported as skipped with the reason; the report
# says what ran. Budget: under 8 minutes on one GPU.
set -uo pipefail
report=${1:-gpu_report.md}
bench_model=${2:-tests/fixtures/t5-tiny}
gpu_lib=${ORT_GPU_LIB_DIR:-$PWD/.ort-gpu/lib}
cpu_lib=$PWD/.ort/lib/libonnxruntime.so.1.31.1
deadline=$((SECONDS + 470))

nvidia_libs=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "nvidia", "*", "lib"))})))
PY
)
export LD_LIBRARY_PATH="$gpu_lib:${nvidia_libs}:${LD_LIBRARY_PATH:-}"

{
  echo "# duet GPU check — $(date -u +%FT%TZ)"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -3
  echo '```'
} > "$report"

step() { # name, command...
  local name=$1; shift
  if (( SECONDS > deadline )); then echo "- $name: skipped (time budget spent)" >> "$report"; return; fi
  local out rc
  out=$(timeout 240 "$@" 2>&1); rc=$?
  if (( rc == 0 )); then echo "- $name: ok" >> "$report"; else echo "- $name: FAILED (exit $rc)" >> "$report"; fi
  printf '\n```\n%s\n```\n' "$(echo "$out" | tail -25)" >> "$report"
}

echo "## Parity with transformers (token-identical, scores within 1e-4)" >> "$report"
if [[ ! -e "$gpu_lib/libonnxruntime_providers_cuda.so" ]]; then
  echo "- skipped: no onnxruntime-gpu libraries in $gpu_lib" >> "$report"
else
  for p in cuda tensorrt; do
    step "golden cases on $p" env DUET_ORT_LIBRARY="$gpu_lib/libonnxruntime.so.1.31.1" DUET_TEST_PROVIDERS="$p" \
      target/release/golden-test --test-threads 1
  done
fi

echo "## Speed (batch 1, 8, 32; 64 new tokens)" >> "$report"
input_file=$(mktemp)
if [[ -f "$bench_model/../input.txt" ]]; then cp "$bench_model/../input.txt" "$input_file"; else
  echo "The museum will reopen next month after a long renovation of its old galleries." > "$input_file"; fi
for b in 1 8 32; do
  step "cpu batch $b" env DUET_ORT_LIBRARY="$cpu_lib" target/release/duet-bench --model "$bench_model" \
    --input-file "$input_file" --batch "$b" --new-tokens 64 --runs 3
  [[ -e "$gpu_lib/libonnxruntime_providers_cuda.so" ]] || { echo "- gpu batch $b: skipped (no onnxruntime-gpu)" >> "$report"; continue; }
  for p in cuda tensorrt; do
    step "$p batch $b" env DUET_ORT_LIBRARY="$gpu_lib/libonnxruntime.so.1.31.1" target/release/duet-bench \
      --model "$bench_model" --input-file "$input_file" --batch "$b" --new-tokens 64 --runs 3 \
      --option providers="$p" --option strict_providers=true
  done
done
rm -f "$input_file"
echo "Report: $report"
