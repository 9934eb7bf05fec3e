#!/usr/bin/env bash
# The wheels benchmarks/gpu_session.sh needs on a GPU machine that has PyTorch but cannot reach a
# package registry (e.g. an image whose python3 holds torch 2.11, torchvision 0.26, timm,
# huggingface_hub and safetensors but not segmentation_models_pytorch, the peer of the v3plus pair).
# Run it online; it puts the wheel, at the version constraints.txt pins, in .whl/ (ignored by git).
# Copy .whl/ along with the checkout and gpu_session.sh installs it there before it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=$(sed -n 's/^segmentation_models_pytorch==//p' constraints.txt)
[ -n "$VERSION" ] || { echo "constraints.txt pins no segmentation_models_pytorch" >&2; exit 1; }
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 -d .whl "segmentation_models_pytorch==$VERSION"
ls -l .whl
