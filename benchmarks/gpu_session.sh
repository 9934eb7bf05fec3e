#!/usr/bin/env bash
# One GPU session for issue 11, prepared on a machine without a GPU. It ran once, whole, on one H200
# (2026-11-30, commit 3cb8773: 5.5 minutes; benchmarks/README.md, "On one GPU"). Run it from the
# repository root on a CUDA machine (the timeouts add up to 19.8 minutes), all at once or one stage
# per call (a device call may last 10 minutes):
#
#     bash benchmarks/gpu_session.sh            # stages 1-4 (their records exist since 2026-11-30)
#     bash benchmarks/gpu_session.sh 1 2        # only the model benchmark and the pipeline
#     bash benchmarks/gpu_session.sh 6 5        # the next step: GIL or CPU load, then CUDA graphs
#
# Every step is bounded by `timeout` and writes a record (deeplab_edu.records: command, commit,
# hardware). Afterwards: commit benchmarks/results/*_cuda.json, show them in benchmarks/README.md
# (python -c "from deeplab_edu.engine.bench import format_results; ...") and in chapter 11.
#
# On a GPU machine without this repository's .venv and without a package registry (e.g. one whose
# python3 already holds PyTorch, torchvision, timm and huggingface_hub) the script uses python3,
# installs the wheels in .whl/ that benchmarks/gpu_wheels.sh fetched beforehand on an online machine
# (segmentation_models_pytorch), and imports deeplab_edu from this checkout:
#     bash benchmarks/gpu_wheels.sh          # online, in the checkout you will copy
#     bash benchmarks/gpu_session.sh         # on the GPU machine, with .whl/ copied along
# A copy of the checkout made for another machine may have no .git, or an older one than its files
# (a lent H200's copy had the .git of the session's start): always name the commit, from a clean tree, as
#     DEEPLAB_EDU_CODE_COMMIT=<git rev-parse HEAD here> bash benchmarks/gpu_session.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import deeplab_edu, segmentation_models_pytorch" \
    || { echo "deeplab_edu or segmentation_models_pytorch does not import with $PY: see the comment above"; exit 1; }
if [ -z "${DEEPLAB_EDU_CODE_COMMIT:-}" ]; then
    echo "warning: DEEPLAB_EDU_CODE_COMMIT is unset: the records name what git says here, which on a copy may be" \
         "no commit or an older one"
fi
OUT=benchmarks/results
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU: run this on a GPU machine')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
STAGES=${*:-1 2 3 4}
run() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# 1. Ours vs torchvision (DeepLabv3-ResNet-50, OS 8) and vs segmentation_models_pytorch (DeepLabv3+-ResNet-50,
#    OS 16): 512 px, batch 16, fp32 / channels_last / bf16 + channels_last, 10 interleaved rounds.
run 1 && timeout 240 "$PY" -m deeplab_edu bench --device cuda --size 512 --batch 16 --repeats 10 --out "$OUT/bench_cuda.json"

# 2. The pipeline: gpu preset (DeepLabv3+-ResNet-50, 256 px, batch 16, bf16, channels_last) through the
#    engine's loader vs the step alone on a synthetic batch; target ratio >= 0.9.
run 2 && timeout 150 "$PY" -m deeplab_edu bench --mode pipeline --preset gpu --device cuda --iterations 60 --repeats 3 \
    --out "$OUT/pipeline_cuda.json"

#    And the optimiser step alone, fused kernels vs foreach (seconds).
run 2 && { timeout 60 "$PY" benchmarks/optimizer_step.py --device cuda --out "$OUT/optimizer_cuda.json" \
    || echo "optimizer benchmark failed or timed out: recorded as not measured"; }

# 3. torch.compile on the GPU (eager vs inductor; time and largest logit difference) at the gpu preset's size.
run 3 && { timeout 240 "$PY" -m deeplab_edu bench --mode compile --device cuda --backbone resnet50 --size 256 --batch 16 --repeats 10 \
    --out "$OUT/compile_cuda.json" || echo "compile benchmark failed or timed out: recorded as not measured"; }

# 4. A short gpu-profile training run with its curve (the full preset is 6000 iterations; 1000 fit here).
run 4 && timeout 300 "$PY" -m deeplab_edu train --preset gpu --iterations 1000 --eval-every 250 --ckpt-every 500 \
    --out-dir runs/gpu_issue11 --no-progress --record "$OUT/train_gpu_preset.json"

# 5. Issue 11's next step: at the gpu preset the step is bound by the CPU thread launching its kernels
#    (results/pipeline_diagnosis_cuda.json). Does torch.compile with CUDA graphs (mode reduce-overhead)
#    lift the step and bring the loader-fed step to >= 0.9 of it? (the first compile takes minutes)
run 5 && { timeout 420 "$PY" benchmarks/pipeline_diagnosis.py --device cuda --num-workers 6 --compile-mode reduce-overhead \
    --out "$OUT/pipeline_diagnosis_cuda_graphs.json" || echo "the CUDA-graphs diagnosis failed or timed out: not measured"; }

# 6. The two explanations the first diagnosis left open, apart (eager, with the profile): the step on a
#    synthetic batch while another process loads the CPU as the loader does (step+load, against the
#    in-process step+busy), and the loader without pinned memory, so without its pin-memory thread (unpinned).
run 6 && { timeout 200 "$PY" benchmarks/pipeline_diagnosis.py --device cuda --num-workers 6 --profile \
    --out "$OUT/pipeline_diagnosis_cuda_feeds.json" || echo "the diagnosis with seven feeds failed or timed out: not measured"; }

echo "done (stages $STAGES):"; ls -l "$OUT"/*_cuda.json "$OUT"/train_gpu_preset.json 2>/dev/null || true
