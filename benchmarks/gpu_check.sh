#!/usr/bin/env bash
# GPU end to end: the default experiment, a 12-job sweep and the fast tests on a GPU machine, with stage timings.
#   bash benchmarks/gpu_check.sh            # from the repo root, after `make install` (or with .venv present)
# Prints the device each job recorded (result.json `device`) and the per-stage seconds (source, finetune, extract,
# probe, total) of the cold default run, the warm rerun and the sweep. Writes everything under $OUT (or a temp
# dir) with a private cache, so nothing in .cache/ is reused or touched. About 5 minutes on one H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${OUT:-$(mktemp -d)}/gpu_check
mkdir -p "$WORK"
export TRANSFER_CACHE_DIR="$WORK/cache"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

timed() {  # run "$@", then print its wall time (no /usr/bin/time needed)
  local t0=$SECONDS; "$@"; local rc=$?; echo "wall $((SECONDS - t0)) s"; return $rc
}

stages() {  # stage timings of every result.json under $1, one line per job, then the sums
  "$PY" - "$1" <<'PY'
import json, sys
from pathlib import Path
rows = [json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).rglob("result.json"))]
keys = ["source", "finetune", "extract", "probe", "total"]
for r in rows:
    t = r.get("timings_s", {})
    print(f"  {r['status']:6} device={r.get('device')} " + " ".join(f"{k}={t.get(k, 0) or 0:.2f}" for k in keys))
print("  sum    " + " ".join(f"{k}={sum((r.get('timings_s', {}).get(k) or 0) for r in rows):.2f}" for k in keys))
PY
}

echo "== default experiment, cold cache"
timed "$PY" -m src.main hydra.run.dir="$WORK/default_cold"
stages "$WORK/default_cold"
echo "== default experiment, warm cache"
timed "$PY" -m src.main hydra.run.dir="$WORK/default_warm"
stages "$WORK/default_warm"
echo "== 12-job sweep (2 archs x 3 layers x 2 classifiers)"
timed "$PY" -m src.main -m arch=alexnet,vgg layer=conv_last,fc6,fc7 \
  classifier=linear_svm,linear_svm_liblinear hydra.sweep.dir="$WORK/sweep12" > "$WORK/sweep12.log" 2>&1
stages "$WORK/sweep12"
echo "== fine-tuning (last) and retrieval"
"$PY" -m src.main finetune=last hydra.run.dir="$WORK/finetune" > /dev/null 2>&1 && stages "$WORK/finetune"
"$PY" -m src.main target=synth_retrieval hydra.run.dir="$WORK/retrieval" > /dev/null 2>&1 && stages "$WORK/retrieval"
echo "== 6 replicate source nets as one group vs one after another (benchmarks/results/group_replicates_gpu.json)"
"$PY" -m benchmarks.group_replicates --gpu --members 6 --rounds 3 2>&1 | tail -6
if [ "${GPU_CHECK_TESTS:-1}" = 1 ]; then  # GPU_CHECK_TESTS=0: the stages only
  echo "== fast tests"
  timed "$PY" -m pytest -q -m "not slow" -x 2>&1 | tail -5
fi
