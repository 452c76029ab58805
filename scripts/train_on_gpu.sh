#!/usr/bin/env bash
# Train the demo model on a GPU machine with a time budget, one or more variants at once.
#
#   scripts/train_on_gpu.sh BUDGET_SECONDS OUT_DIR NAME[:KEY=JSON[,KEY=JSON...]] ...
#   e.g. scripts/train_on_gpu.sh 380 out/gpu main strong-adv:confusion_weight=3,p_uncond=0.15
#
# The synthetic data set of models/diffae-synth32/train_config.json is generated once on the
# machine (deterministic: the same bytes as anywhere); each variant trains in its own process
# on the same GPU (a 32x32 model leaves it mostly idle), stops with a checkpoint when the
# budget is spent, and OUT_DIR receives NAME.tar (the exported model) and NAME.log.
# The model card records the step count; since the learning rate is constant after warm-up,
# `veil train --config <card folder>/train_config.json --until-step N` reproduces a run anywhere.
# Wheels in .whl/ (diffusers, where the machine's image lacks it) are installed first.
set -euo pipefail
budget=$1
out=$2
shift 2
mkdir -p "$out"
export PYTHONPATH="$PWD"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'cuda', torch.cuda.is_available())"
config=models/diffae-synth32/train_config.json
data=/tmp/synth-faces
read -r identities per seed < <(python3 -c "import json; c=json.load(open('$config')); print(c['synth_identities'], c['synth_per_identity'], c['synth_seed'])")
start=$(date +%s)
[ -f "$data/list_attr_celeba.txt" ] || python3 -m veil data synth --out "$data" --identities "$identities" --per-identity "$per" --seed "$seed"
echo "data ready in $(( $(date +%s) - start )) s"
pids=()
for variant in "$@"; do
    name=${variant%%:*}
    sets=()
    if [[ $variant == *:* ]]; then
        IFS=, read -ra pairs <<< "${variant#*:}"
        for pair in "${pairs[@]}"; do sets+=(--set "$pair"); done
    fi
    python3 -m veil train --config "$config" --set data_dir="$data" "${sets[@]}" --run-dir "/tmp/veil-run/$name" \
        --time-budget "$budget" --export "/tmp/veil-model/$name" --model-version "diffae-synth32-$name" \
        > "$out/$name.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for variant in "$@"; do
    name=${variant%%:*}
    grep -E '"event"' "$out/$name.log" || tail -n 30 "$out/$name.log"
    tail -n 2 "/tmp/veil-run/$name/train_log.jsonl" || true
    [ -d "/tmp/veil-model/$name" ] && tar -C /tmp/veil-model -cf "$out/$name.tar" "$name"
done
ls -la "$out"
exit $status
