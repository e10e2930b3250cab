#!/usr/bin/env bash
# GPU check for a lent GPU machine (one H200, ~10 minutes, nothing downloaded): pretraining, SFT, DPO and
# diffusion on built-in data with bf16, under the shipped ddp / fsdp / zero2 Accelerate configs with one
# process each (what one GPU allows), then one table of tokens (images) per second and MFU per run, read from
# each output's lineage.json["efficiency"].
#
#   bash bench/gpu_check.sh [OUT_DIR]        # default runs/gpu_check; PYTHON=... to pick the interpreter
#
# zero2 needs DeepSpeed installed on the machine; without it that row says "skipped". Each run has a time
# limit (RUN_LIMIT_S, default 150 s) so one stuck run cannot eat the budget.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_check}
PY=${PYTHON:-python}
LIMIT=${RUN_LIMIT_S:-150}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
GPU=(--bf16 true --use_cpu false)

run() {  # name accelerate_config recipe config [overrides...]
  local name=$1 accel=$2 recipe=$3 config=$4
  shift 4
  if [[ $accel == *zero2* ]] && ! $PY -c "import deepspeed" 2>/dev/null; then
    echo "$name skipped (deepspeed not installed)" | tee -a "$OUT/summary.txt"
    return
  fi
  local start=$SECONDS
  timeout "$LIMIT" $PY -m accelerate.commands.launch --num_processes 1 --config_file "$accel" \
    "$recipe" --config "$config" --output_dir "$OUT/$name" "$@" >"$OUT/$name.log" 2>&1
  echo "$name rc=$? wall=$((SECONDS - start))s" | tee -a "$OUT/summary.txt"
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/summary.txt"

# Pretraining: the 135M-shaped SmolLM preset from scratch on built-in code+docs, block 512.
for accel in ddp fsdp zero2; do
  run "pretrain_$accel" "accelerate_configs/$accel.yaml" recipes/text/pretrain.py \
    recipes/text/configs/pretrain_tiny.yaml "${GPU[@]}" --model_preset smollm-135m --block_size 512 \
    --per_device_train_batch_size 16 --max_steps 60 --eval_steps 60 --save_steps 60 --logging_steps 10
done
# SFT from the ddp pretraining run, then DPO from the SFT run.
run sft_ddp accelerate_configs/ddp.yaml recipes/text/sft.py recipes/text/configs/sft_chat_tiny.yaml "${GPU[@]}" \
  --model_name_or_path "$OUT/pretrain_ddp" --max_steps 60 --eval_steps 60 --save_steps 60 --forgetting_text ""
run dpo_ddp accelerate_configs/ddp.yaml recipes/text/dpo.py recipes/text/configs/dpo_tiny.yaml "${GPU[@]}" \
  --model_name_or_path "$OUT/sft_ddp" --reward_model_path "" --max_steps 30 --eval_steps 30 --save_steps 30
# Diffusion: class-conditional digits, bf16 autocast.
run diffusion_ddp accelerate_configs/ddp.yaml recipes/image/train_diffusion.py \
  recipes/image/configs/diffusion_digits_tiny.yaml --bf16 true --max_steps 200 --eval_steps 200 \
  --per_device_train_batch_size 128

$PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("| run | unit/s | MFU | train s | peak TFLOP/s | energy Wh |\n|---|---:|---:|---:|---:|---:|")
for lineage in sorted(out.glob("*/lineage.json")):
    eff = json.loads(lineage.read_text()).get("efficiency") or {}
    unit = eff.get("unit", "?")
    rate = eff.get(f"{unit}_per_second")
    print(f"| {lineage.parent.name} | {rate or float('nan'):,.0f} {unit}/s | {eff.get('mfu', float('nan')):.3f} | "
          f"{eff.get('train_seconds', float('nan')):.0f} | {(eff.get('peak_flops_per_second') or 0) / 1e12:.0f} | "
          f"{(eff.get('energy_kwh') or 0) * 1000:.2f} |")
EOF
