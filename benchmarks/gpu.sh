#!/usr/bin/env bash
# What a GPU machine tells about the paper's budget, in one call of at most 8 minutes on one H100:
#   1. the GPU and the software (nvidia-smi, torch, CUDA);
#   2. the smoke fit on the GPU (the whole pipeline, both phases, the captured update by default);
#   3. the update at paper sizes, eager against captured as a CUDA graph (JSON lines, both phases);
#   4. 5 minutes of `fit --config conf/cheetah_vel.yaml --config conf/paper_budget.yaml` on the GPU,
#      whose evaluation lines give updates per second: the paper run's wall time projected.
# Needs the Cheetah dataset in data/ (carry it: the device tool's carry of data/cheetah_vel-*), made
# here by `python -m smac_lightning data make --config conf/cheetah_vel.yaml`; without it step 4 is
# skipped. Usage, from the repository root:  bash benchmarks/gpu.sh [OUT_DIR]
set -uo pipefail
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv && .venv/bin/pip install --quiet --upgrade pip && .venv/bin/pip install --quiet torch==2.13.0 \
    && .venv/bin/pip install --quiet -e '.[test]'
fi
py=.venv/bin/python
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} 2>&1 | tee "$out/device.txt"

echo "== smoke fit on the GPU" | tee "$out/smoke.log"
timeout 120 $py -m smac_lightning fit --config conf/point_robot.yaml --config conf/smoke.yaml \
  --trainer.accelerator gpu --trainer.default_root_dir "$out/smoke" --data.dataset_dir "$out/smoke_data" >> "$out/smoke.log" 2>&1
echo "exit $?" | tee -a "$out/smoke.log"

echo "== update at paper sizes, eager against captured" | tee "$out/update_step.jsonl.log"
for phase in offline self-supervised; do
  batch=$([ $phase = offline ] && echo 128 || echo 256)
  timeout 150 $py benchmarks/update_step.py --device cuda --compile --updates 300 --phase $phase --batch $batch \
    2>>"$out/update_step.jsonl.log" | tee -a "$out/update_step.jsonl.log" | tail -1 >> "$out/update_step.jsonl"
done

if ls -d data/cheetah_vel-rl1200-enc400-seed0-pearl-it50-first >/dev/null 2>&1; then
  echo "== 5 minutes of the paper budget on Cheetah Velocity" | tee "$out/paper_budget.log"
  timeout 300 $py -m smac_lightning fit --config conf/cheetah_vel.yaml --config conf/paper_budget.yaml \
    --trainer.accelerator gpu --trainer.enable_progress_bar false --trainer.default_root_dir "$out/paper" \
    >> "$out/paper_budget.log" 2>&1
  grep -a "^update " "$out/paper_budget.log" | tee "$out/paper_budget_progress.txt"
else
  echo "no Cheetah dataset in data/: the paper-budget projection is skipped" | tee "$out/paper_budget.log"
fi
