#!/usr/bin/env bash
# One GPU session for issue 11, prepared on a machine without a GPU. Stages 1-4 ran on one H200
# (2026-11-30, commit 3cb8773: 5.5 minutes; benchmarks/README.md, "On one GPU"). Run it from the
# repository root on a CUDA machine, one call per line below: each call's timeouts fit a 10-minute
# device call (stages 1 and 2: 480 s; 3 and 4: 540 s; 6: 200 s; 5: 420 s; 7: 230 s; 8: 420 s); stages run in the order given.
#
#     bash benchmarks/gpu_session.sh 1 2        # the model benchmark, the pipeline, the optimiser step
#     bash benchmarks/gpu_session.sh 3 4        # torch.compile, a short gpu-profile training run
#     bash benchmarks/gpu_session.sh 6          # the next step: GIL or CPU load ...
#     bash benchmarks/gpu_session.sh 5          # ... then CUDA graphs
#     bash benchmarks/gpu_session.sh 7          # the loader CUDA graphs left as the limit: bytes or the interpreter lock
#     bash benchmarks/gpu_session.sh 8          # the next step: gpu-profile training with CUDA graphs and uint8 batches
#
# Stages 6 and 5 ran on one H200 on 2026-12-04 (commit e317d9a), then stage 5 with 14 workers; stage 7 was
# written after them and ran in the same session (commit cf907fd). Stage 8 was written after stage 7 and has
# not run on a GPU. Since commit 80c8775 uint8 items are augmented as uint8 (one CPU worker x1.44 instead of
# x1.13 faster than float items): the next session runs stage 8, then stage 7 again, whose uint8 feeds
# then measure the new form (copy its records under new names, e.g. *_uint8_aug.json, beside the old ones).
# Every step is bounded by `timeout` and writes a record (deeplab_edu.records: command, commit,
# hardware); a step that fails or times out is reported and the next one runs. Records and a log of
# the whole call go to $OUT when it is set (a lent device machine sends back what is written there),
# else to benchmarks/results. Afterwards: copy the records into benchmarks/results, commit them, show
# them in benchmarks/README.md (python -c "from deeplab_edu.engine.bench import format_results; ...")
# and in chapter 11.
#
# On a GPU machine without this repository's .venv and without a package registry (e.g. one whose
# python3 already holds PyTorch, torchvision, timm and huggingface_hub) the script uses python3,
# installs the wheels in .whl/ that benchmarks/gpu_wheels.sh fetched beforehand on an online machine
# (segmentation_models_pytorch), and imports deeplab_edu from this checkout (.whl/ is git-ignored:
# a device call must carry it):
#     bash benchmarks/gpu_wheels.sh          # online, in the checkout you will copy
#     bash benchmarks/gpu_session.sh 1 2     # on the GPU machine, with .whl/ copied along
# A copy of the checkout made for another machine may have no .git, or an older one than its files
# (a lent H200's copy had the .git of the session's start): name the commit, from a clean tree, as
#     DEEPLAB_EDU_CODE_COMMIT=<git rev-parse HEAD here> bash benchmarks/gpu_session.sh 6
# Unset, the script takes git's HEAD only when git sees no change, untracked files included.
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
"$PY" -c "import deeplab_edu, segmentation_models_pytorch, scipy, threadpoolctl" \
    || { echo "deeplab_edu, segmentation_models_pytorch, scipy or threadpoolctl does not import with $PY: see the" \
              "comment above (without scipy every interval would be missing; without threadpoolctl every loader" \
              "worker fails)"; exit 1; }
if [ -z "${DEEPLAB_EDU_CODE_COMMIT:-}" ]; then
    if head=$(git rev-parse HEAD 2>/dev/null) && [ -z "$(git status --porcelain 2>/dev/null)" ]; then
        export DEEPLAB_EDU_CODE_COMMIT=$head
    else
        echo "DEEPLAB_EDU_CODE_COMMIT is unset and git here names no clean commit (no .git, or changed files): the" \
             "records could not say which code they measured; set it (see the comment at the top)"
        exit 1
    fi
fi
RES=${OUT:-benchmarks/results}
mkdir -p "$RES"
STAGES=${*:-1 2}
LOG="$RES/gpu_session_$(echo "$STAGES" | tr ' ' '_').log"
exec > >(tee -a "$LOG") 2>&1  # the whole call, also what a step printed before it was stopped
echo "gpu_session.sh stages $STAGES, commit $DEEPLAB_EDU_CODE_COMMIT, records to $RES, $(date -u +%FT%TZ)"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU: run this on a GPU machine')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

stage() {  # stage N SECONDS WHAT COMMAND...: bounded; a failure or time-out is reported, not fatal
    local n=$1 limit=$2 what=$3
    shift 3
    echo "== stage $n: $what (at most $limit s)"
    # -k: a SIGTERM lets training finish its step and save, which a first compile can hold up; 30 s later, SIGKILL
    timeout -k 30 "$limit" "$@" || echo "stage $n ($what) failed or timed out (exit $?): not measured"
}

for n in $STAGES; do
    case $n in
    1)  # Ours vs torchvision (DeepLabv3-ResNet-50, OS 8) and vs segmentation_models_pytorch (DeepLabv3+-ResNet-50,
        # OS 16): 512 px, batch 16, fp32 / channels_last / bf16 + channels_last, 10 interleaved rounds.
        stage 1 240 "ours vs torchvision and smp" "$PY" -m deeplab_edu bench --device cuda --size 512 --batch 16 \
            --repeats 10 --out "$RES/bench_cuda.json" ;;
    2)  # The pipeline: gpu preset (DeepLabv3+-ResNet-50, 256 px, batch 16, bf16, channels_last) through the
        # engine's loader vs the step alone on a synthetic batch, 6 windows each (the fewest that give an
        # interval: engine.bench.timing.min_rounds); target ratio >= 0.9. Then the optimiser step alone,
        # fused kernels vs foreach (seconds).
        stage 2 180 "pipeline" "$PY" -m deeplab_edu bench --mode pipeline --preset gpu --device cuda --iterations 60 \
            --repeats 6 --out "$RES/pipeline_cuda.json"
        stage 2 60 "optimiser step" "$PY" benchmarks/optimizer_step.py --device cuda --out "$RES/optimizer_cuda.json" ;;
    3)  # torch.compile on the GPU (eager vs inductor; time and largest logit difference) at the gpu preset's size.
        stage 3 240 "torch.compile" "$PY" -m deeplab_edu bench --mode compile --device cuda --backbone resnet50 \
            --size 256 --batch 16 --repeats 10 --out "$RES/compile_cuda.json" ;;
    4)  # A short gpu-profile training run with its curve (the full preset is 6000 iterations; 1000 fit here),
        # in a fresh folder each call (train refuses one that holds checkpoints; checkpoints stay off $OUT).
        stage 4 300 "gpu-profile training" "$PY" -m deeplab_edu train --preset gpu --iterations 1000 --eval-every 250 \
            --ckpt-every 500 --out-dir "runs/gpu_issue11_$(date +%s)" --no-progress --record "$RES/train_gpu_preset.json" ;;
    5)  # Issue 11's next step: at the gpu preset the step is bound by the CPU thread launching its kernels
        # (results/pipeline_diagnosis_cuda.json). Does torch.compile with CUDA graphs (mode reduce-overhead)
        # lift the step and bring the loader-fed step to >= 0.9 of it? (the first compile takes minutes)
        stage 5 420 "CUDA graphs" "$PY" benchmarks/pipeline_diagnosis.py --device cuda --num-workers 6 \
            --compile-mode reduce-overhead --out "$RES/pipeline_diagnosis_cuda_graphs.json" ;;
    6)  # The two explanations the first diagnosis left open, apart (eager, with the profile): the step on a
        # synthetic batch while another process loads the CPU as the loader does (step+load, against the
        # in-process step+busy), and the loader without pinned memory, so without its pin-memory thread (unpinned).
        stage 6 200 "seven feeds" "$PY" benchmarks/pipeline_diagnosis.py --device cuda --num-workers 6 --profile \
            --out "$RES/pipeline_diagnosis_cuda_feeds.json" ;;
    7)  # With CUDA graphs the step ran 2-3x faster and the loader became its limit (x0.37 with 6 workers, x0.56 with
        # 14; pipeline_diagnosis_cuda_graphs*.json). Its cost inside this process: the bytes (uint8_batches sends 5x
        # fewer) or the interpreter lock (a shorter switch interval)? Eager with 12 workers, then CUDA graphs with 14.
        feeds=step,loader,loader-uint8,loader+switch,loader-uint8+switch
        stage 7 75 "uint8 batches and the switch interval, eager" "$PY" benchmarks/pipeline_diagnosis.py --device cuda \
            --num-workers 12 --feeds $feeds --out "$RES/pipeline_diagnosis_cuda_uint8.json"
        stage 7 155 "uint8 batches and the switch interval, CUDA graphs" "$PY" benchmarks/pipeline_diagnosis.py \
            --device cuda --num-workers 14 --compile-mode reduce-overhead --feeds $feeds \
            --out "$RES/pipeline_diagnosis_cuda_graphs_uint8.json" ;;
    8)  # What stage 7 points to, as training runs: the gpu preset for 1000 iterations as it is, then with CUDA graphs
        # (the Trainer's compile_mode: reduce-overhead), uint8 batches and 14 workers; each run's record holds its
        # median images/s over the logged windows after the first (images_per_s_median: the wall time, "seconds",
        # holds the compile and the validations) and its validation mIoU (one seed: a check that the faster run
        # still learns, not a finding).
        stage 8 150 "gpu-profile training, the preset" "$PY" -m deeplab_edu train --preset gpu --iterations 1000 \
            --eval-every 250 --ckpt-every 1000 --out-dir "runs/gpu_stage8_eager_$(date +%s)" --no-progress \
            --record "$RES/train_gpu_preset_eager.json"
        stage 8 270 "gpu-profile training, CUDA graphs and uint8 batches" "$PY" -m deeplab_edu train --preset gpu \
            --iterations 1000 --eval-every 250 --ckpt-every 1000 --compile --compile-mode reduce-overhead \
            --uint8-batches --num-workers 14 --out-dir "runs/gpu_stage8_graphs_$(date +%s)" --no-progress \
            --record "$RES/train_gpu_preset_graphs.json" ;;
    *)  echo "no stage $n (stages are 1-8)" ;;
    esac
done

echo "done (stages $STAGES):"; ls -l "$RES"/*_cuda*.json "$RES"/train_gpu_preset*.json 2>/dev/null || true
