#!/usr/bin/env bash
# GPU check for a lent GPU machine (one H100/H200, ~10 minutes, nothing downloaded), and its CPU rehearsal.
#
#   bash bench/gpu_check.sh [--device cuda|cpu] [OUT_DIR]     # default cuda, runs/gpu_check
#
# 1. Pretraining of the 135M-shaped SmolLM preset under the shipped ddp / fsdp / zero2 Accelerate configs (one
#    process each: what one GPU allows), then SFT -> DPO -> GRPO from it.
# 2. Every model family users fine-tune (tiny random Llama-3, Qwen2.5, Qwen3, Gemma-3, Phi-3 and Mistral
#    checkpoints with their real chat templates, hfrecipes.text.families; wider on a GPU): SFT, then DPO and GRPO
#    from the SFT output. GRPO generates with vLLM (colocated) when vLLM is installed.
# 3. Diffusion (class-conditional digits, bf16; GPU only).
# Then one table: tokens (images) per second, MFU and peak memory of every run, read from each output's
# lineage.json["efficiency"] (peak memory: torch.cuda.max_memory_allocated on a GPU, max RSS on CPU).
#
# `--device cpu` runs the same stages end to end on CPU with tiny sizes and 2 steps each (fp32, cpu.yaml), so the
# script is known to work before a GPU is ever lent. FAMILIES="llama3 qwen3" limits the families; PRESET=0 skips
# the 135M preset and diffusion. zero2 needs DeepSpeed; without it that row says "skipped". Each run has a time
# limit (RUN_LIMIT_S, default 150 s) so one stuck run cannot eat the budget. PYTHON=... picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
if [[ ${1:-} == --device ]]; then
  DEVICE=$2
  shift 2
fi
OUT=${1:-runs/gpu_check}
PY=${PYTHON:-python}
LIMIT=${RUN_LIMIT_S:-150}
FAMILIES=${FAMILIES:-llama3 qwen2.5 qwen3 gemma3 phi3 mistral}
PRESET=${PRESET:-1}
mkdir -p "$OUT"
: >"$OUT/summary.txt"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [[ $DEVICE == cuda ]]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/summary.txt"
  ACCEL=accelerate_configs/ddp.yaml
  PRECISION=(--bf16 true --use_cpu false)
  PRETRAIN=(--model_preset smollm-135m --block_size 512 --per_device_train_batch_size 16 --max_steps 60)
  POST_STEPS=(--max_steps 30 --eval_steps 30 --save_steps 30)
  SFT_DATA=() DPO_DATA=() GRPO_DATA=()
  FAMILY_SHAPE='{"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 64}'
  PRETRAIN_ACCELS="ddp fsdp zero2"
else
  ACCEL=accelerate_configs/cpu.yaml
  PRECISION=(--use_cpu true)
  PRETRAIN=(--model_preset tiny --max_documents 200 --per_device_train_batch_size 4 --max_steps 2)
  POST_STEPS=(--max_steps 2 --eval_steps 2 --save_steps 2 --per_device_train_batch_size 4)
  FAMILY_SHAPE='{}'
  SFT_DATA=(--dataset_name "builtin:chat-mix?arithmetic_rows=60&safety_rows=20&digits=1&seed=0")
  DPO_DATA=(--dataset_name "builtin:preferences?n=60&digits=1&seed=1&ops=add,sub")
  GRPO_DATA=(--dataset_name "builtin:chat-mix?arithmetic_rows=40&safety_rows=10&digits=1&seed=7&ops=add,sub")
  PRETRAIN_ACCELS="cpu"
fi
SHORT_EVAL=(--eval_max_samples 8 --eval_max_new_tokens 8)
VLLM=()
if [[ $DEVICE == cuda ]] && $PY -c "import vllm" 2>/dev/null; then
  VLLM=(--use_vllm true --vllm_mode colocate)
fi

run() { # name accelerate_config recipe config [overrides...]
  local name=$1 accel=$2 recipe=$3 config=$4
  shift 4
  if [[ $accel == *zero* ]] && ! $PY -c "import deepspeed" 2>/dev/null; then
    echo "$name skipped (deepspeed not installed)" | tee -a "$OUT/summary.txt"
    return
  fi
  local start=$SECONDS
  timeout "$LIMIT" $PY -m accelerate.commands.launch --num_processes 1 --config_file "$accel" \
    "$recipe" --config "$config" --output_dir "$OUT/$name" "$@" >"$OUT/$name.log" 2>&1
  echo "$name rc=$? wall=$((SECONDS - start))s" | tee -a "$OUT/summary.txt"
}

post_training() { # prefix start_model: SFT from it, then DPO and GRPO from the SFT output
  local prefix=$1 start=$2
  run "${prefix}_sft" "$ACCEL" recipes/text/sft.py recipes/text/configs/sft_chat_tiny.yaml "${PRECISION[@]}" \
    --model_name_or_path "$start" --chat_template_path "" --assistant_only_loss false --forgetting_text "" \
    "${SFT_DATA[@]}" "${POST_STEPS[@]}" "${SHORT_EVAL[@]}"
  run "${prefix}_dpo" "$ACCEL" recipes/text/dpo.py recipes/text/configs/dpo_tiny.yaml "${PRECISION[@]}" \
    --model_name_or_path "$OUT/${prefix}_sft" --reward_model_path "" "${DPO_DATA[@]}" "${POST_STEPS[@]}" "${SHORT_EVAL[@]}"
  run "${prefix}_grpo" "$ACCEL" recipes/text/grpo.py recipes/text/configs/grpo_tiny.yaml "${PRECISION[@]}" \
    --model_name_or_path "$OUT/${prefix}_sft" --num_generations 4 --max_completion_length 16 \
    "${GRPO_DATA[@]}" "${VLLM[@]}" "${POST_STEPS[@]}" "${SHORT_EVAL[@]}"
}

if [[ $PRESET == 1 ]]; then
  for accel in $PRETRAIN_ACCELS; do
    run "pretrain_$accel" "accelerate_configs/$accel.yaml" recipes/text/pretrain.py \
      recipes/text/configs/pretrain_tiny.yaml "${PRECISION[@]}" "${PRETRAIN[@]}" --eval_steps 60 --save_steps 60 \
      --logging_steps 10
  done
  first=${PRETRAIN_ACCELS%% *}
  post_training preset "$OUT/pretrain_$first"
fi

for family in $FAMILIES; do
  $PY -c "import json, sys; from hfrecipes.text.families import build_family; \
build_family(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))" "$family" "$OUT/fixtures/$family" "$FAMILY_SHAPE"
  post_training "$family" "$OUT/fixtures/$family"
done

if [[ $PRESET == 1 && $DEVICE == cuda ]]; then # on CPU its evaluation alone takes minutes (tests cover it)
  run diffusion "$ACCEL" recipes/image/train_diffusion.py recipes/image/configs/diffusion_digits_tiny.yaml \
    --max_steps 200 --eval_steps 200 --per_device_train_batch_size 128 --bf16 true
fi

$PY - "$OUT" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
nan = float("nan")
print("| run | unit/s | MFU | peak memory MB | train s |\n|---|---:|---:|---:|---:|")
for lineage in sorted(out.glob("*/lineage.json")):
    eff = json.loads(lineage.read_text()).get("efficiency") or {}
    unit = eff.get("unit", "?")
    rate = eff.get(f"{unit}_per_second") or nan
    mfu = eff.get("mfu")
    print(f"| {lineage.parent.name} | {rate:,.0f} {unit}/s | {nan if mfu is None else mfu:.3f} | "
          f"{eff.get('peak_memory_mb') or nan:,.0f} ({eff.get('peak_memory_method', '?')}) | "
          f"{eff.get('train_seconds') or nan:.1f} |")
EOF
failed=$(grep -c "rc=[1-9]" "$OUT/summary.txt")
echo "gpu_check runs_failed=$failed"
[[ $failed == 0 ]]
