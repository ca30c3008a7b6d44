#!/usr/bin/env bash
# GPU check for duet: golden parity and half-precision agreement on CUDA and TensorRT, the KV cache
# kept on the device, then a benchmark against duet on the CPU. Writes a report.
#
#   tools/gpu_check.sh [REPORT_FILE]
#
# Run from the repository root on a machine with an NVIDIA GPU and no network. It carries what
# it needs from this checkout (`make gpu-bundle` on any x86-64 machine makes it):
#   - target/release/{duet,golden-test,precision-test};
#   - .ort-gpu/lib: onnxruntime-gpu 1.31.1's libraries (make fetch-ort-gpu), or ORT_GPU_LIB_DIR
#     naming a folder that holds them; they need CUDA 13 and cuDNN 9 (the nvidia-*-cu13 pip
#     wheels work: their lib folders are added below) and TensorRT 10 for tensorrt;
#   - .ort/lib (CPU onnxruntime, make fetch-ort) for the CPU side of the benchmark;
#   - tests/fixtures (golden models, their fp16/bf16 exports);
#   - target/gpu-bundle/input.txt and t5-small-{fp32,fp16}: the benchmark's input and its t5-small-architecture exports
#     without their weights (tools/weightless_graphs.py); noise of the right scale is filled in
#     here (python3 with numpy), so they time like the real ones and their outputs mean nothing.
# A step that cannot run (no TensorRT, say) is reported as skipped with the reason; the report
# says what ran. Budget: under 8 minutes on one GPU (each step is capped; later steps are skipped
# once 7m50s are spent).
set -uo pipefail
report=${1:-gpu_report.md}
gpu_lib=${ORT_GPU_LIB_DIR:-$PWD/.ort-gpu/lib}
gpu_ort=$gpu_lib/libonnxruntime.so.1.31.1
cpu_lib=$PWD/.ort/lib/libonnxruntime.so.1.31.1
bundle=target/gpu-bundle
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

step() { # name, limit seconds, command...
  local name=$1 limit=$2; shift 2
  if (( SECONDS > deadline )); then echo "- $name: skipped (time budget spent)" >> "$report"; return; fi
  local out rc
  out=$(timeout "$limit" "$@" 2>&1); rc=$?
  if (( rc == 0 )); then echo "- $name: ok" >> "$report"; else echo "- $name: FAILED (exit $rc)" >> "$report"; fi
  printf '\n```\n%s\n```\n' "$(echo "$out" | tail -25)" >> "$report"
}

have_gpu_ort=1
[[ -e "$gpu_lib/libonnxruntime_providers_cuda.so" ]] || have_gpu_ort=0

echo "## Parity with transformers on the GPU (token-identical, scores within 1e-4; KV cache on the device)" >> "$report"
if (( ! have_gpu_ort )); then
  echo "- skipped: no onnxruntime-gpu libraries in $gpu_lib" >> "$report"
else
  step "model info on cuda (io_binding, kv_cache_device)" 60 env DUET_ORT_LIBRARY="$gpu_ort" target/release/duet info \
    --model tests/fixtures/t5-tiny --option providers=cuda --option strict_providers=true
  for p in cuda tensorrt; do
    step "golden cases on $p" 150 env DUET_ORT_LIBRARY="$gpu_ort" DUET_TEST_PROVIDERS="$p" \
      target/release/golden-test --test-threads 1
  done
fi

echo "## fp16 / bf16 exports against fp32 (teacher-forced and greedy agreement)" >> "$report"
if (( have_gpu_ort )); then
  step "fp16 and bf16 fixtures on cuda" 120 env DUET_ORT_LIBRARY="$gpu_ort" DUET_TEST_PROVIDERS=cuda \
    target/release/precision-test --test-threads 1 --nocapture
else
  echo "- skipped: no onnxruntime-gpu libraries" >> "$report"
fi

echo "## Speed: t5-small architecture, 128 input tokens, 64 new tokens (tokens/s, ms per step)" >> "$report"
input_file=$bundle/input.txt  # make bench's input: 128 tokens with EOS for its tokenizer
bench() { # label, model dir, batch, extra args...
  local label=$1 model=$2 b=$3; shift 3
  step "$label batch $b" 100 target/release/duet bench --model "$model" --input-file "$input_file" \
    --batch "$b" --new-tokens 64 --runs 3 "$@"
}
for variant in fp32 fp16; do
  model=$bundle/t5-small-$variant
  if [[ ! -f $model/weights.json ]]; then echo "- $variant: skipped (no $model: make gpu-bundle after make bench)" >> "$report"; continue; fi
  python3 tools/weightless_graphs.py --fill "$model" >> "$report" 2>&1 || { echo "- $variant: weights could not be filled (numpy?)" >> "$report"; continue; }
  for b in 1 8 32; do
    [[ $variant == fp32 ]] && DUET_ORT_LIBRARY="$cpu_lib" bench "cpu $variant" "$model" "$b"
    (( have_gpu_ort )) || { echo "- gpu $variant batch $b: skipped (no onnxruntime-gpu)" >> "$report"; continue; }
    DUET_ORT_LIBRARY="$gpu_ort" bench "cuda $variant" "$model" "$b" --option providers=cuda --option strict_providers=true
    DUET_ORT_LIBRARY="$gpu_ort" bench "tensorrt $variant" "$model" "$b" --option providers=tensorrt \
      --option strict_providers=true --option trt_engine_cache=true --option trt_engine_cache_path=/tmp/duet-trt \
      --option trt_max_batch=32 --option trt_max_input_tokens=256 --option trt_max_new_tokens=128
  done
done
echo "Report: $report"
