"""An exported model (ONNX via onnxruntime, torch.export) gives the eager model's output on the CPU,
for any batch size, height and width."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deeplab_edu.models import build_model
from deeplab_edu.models.export import export_onnx, export_program, load_program, onnx_metadata, run_onnx


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    # tiny_resnet: the same export path as MobileNetV3 (which chapter 11 exports) in half the time
    m = build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=3)
    # a few training steps' worth of running statistics, so evaluation-mode BN is not the identity
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.rand(2, 3, 33, 33))
    return m.eval()


@pytest.mark.slow
def test_onnx_matches_eager_at_other_sizes(model: torch.nn.Module, tmp_path) -> None:
    path = export_onnx(model, tmp_path / "m.onnx", torch.rand(1, 3, 65, 65),
                       metadata=onnx_metadata(["background", "a", "b"], output_stride=16))
    assert path.is_file() and not list(tmp_path.glob("*.tmp"))
    import onnxruntime as ort  # the metadata a deployment reads: what the input needs and what the output means

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == ["background", "a", "b"] and json.loads(meta["output_stride"]) == 16
    assert json.loads(meta["mean"]) == [0.485, 0.456, 0.406] and "(x - mean) / std" in meta["input"]
    for shape in [(1, 65, 65), (3, 65, 65), (1, 47, 71), (3, 47, 71)]:  # dynamic batch, height and width
        x = torch.rand(shape[0], 3, *shape[1:])
        with torch.no_grad():
            ref = model(x)["out"].numpy()
        got = run_onnx(path, x)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert ref.std() > 1e-3  # the comparison is not between two near-constant maps


@pytest.mark.slow
def test_torch_export_matches_eager(model: torch.nn.Module, tmp_path) -> None:
    """On the GPU machine's torch 2.11 (make test-compat) torch.export guards the parity of the height and
    width at the stem's max pooling, so a dynamic-size program is refused with a message that says so, and
    one size exports; the pinned torch exports every size."""
    try:
        program = load_program(export_program(model, tmp_path / "m.pt2"))
    except RuntimeError as err:
        assert torch.__version__ < "2.14" and "cannot keep the height and width dynamic" in str(err), str(err)
        program = load_program(export_program(model, tmp_path / "m.pt2", torch.rand(1, 3, 53, 45), dynamic=False))
        x = torch.rand(1, 3, 53, 45)
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x)["out"])
        return
    for x in (torch.rand(1, 3, 53, 45), torch.rand(3, 3, 53, 45), torch.rand(1, 3, 64, 64)):  # both parities
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x)["out"])
    assert model.training is False


def test_missing_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no ONNX model"):
        run_onnx(tmp_path / "nope.onnx", torch.rand(1, 3, 33, 33))
    with pytest.raises(FileNotFoundError, match="exported program"):
        load_program(tmp_path / "nope.pt2")


def test_atomic_temporaries_keep_the_suffix_and_stale_ones_are_removed(tmp_path) -> None:
    import os

    from deeplab_edu.atomic import atomic_path, remove_stale_temporaries

    with atomic_path(tmp_path / "model.pt2") as tmp:
        assert tmp.suffix == ".pt2" and tmp.name.startswith(".model.tmp")  # writers that check the suffix
        tmp.write_text("x")
    mine = tmp_path / f".a.tmp{os.getpid()}.pt"
    mine.write_text("being written")
    assert remove_stale_temporaries(tmp_path) == [] and mine.exists()  # a running process's file stays
    import subprocess
    import sys

    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    parent = tmp_path / f".b.tmp{running.pid}.pt"  # another running process's: stays too
    parent.write_text("being written")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".c.tmp{int(ended.stdout)}.pt"  # a process that has ended: its file is left over
    stale.write_text("half written")
    impossible = tmp_path / ".d.tmp99999999999999999999.pt"  # no process can have that pid (was an OverflowError)
    impossible.write_text("x")
    try:
        assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, impossible])
        assert mine.exists() and parent.exists()
    finally:
        running.kill()
        running.wait()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_logits_only_unwraps_any_mapping() -> None:
    """A refactor (deeplab_edu.inference.unwrap_out): LogitsOnly unwrapped a dict only; a model returning another
    mapping (a read-only MappingProxyType, say) went through whole."""
    from types import MappingProxyType

    from deeplab_edu.models.export import LogitsOnly

    class Proxied(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> MappingProxyType[str, torch.Tensor]:
            return MappingProxyType({"out": x * 2})

    x = torch.ones(1, 3, 4, 4)
    assert torch.equal(LogitsOnly(Proxied())(x), x * 2)


def test_a_float64_model_exports_without_an_example(tmp_path) -> None:
    """An audit: the default example was a float32 image whatever the model, so a float64 model without
    ``example`` failed with "expected torch.float64 images ... got torch.float32" though no image was given."""
    torch.manual_seed(0)
    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3).double().eval()
    program = load_program(export_program(model, tmp_path / "m.pt2", dynamic=False))
    x = torch.rand(1, 3, 65, 65, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x)["out"])


def test_run_onnx_refuses_integer_pixels_as_the_model_does(model: torch.nn.Module, tmp_path) -> None:
    """An audit of wrong types: uint8 pixels 0-255 went through the ONNX graph and came back as meaningless logits,
    where the PyTorch model refuses them; run_onnx now refuses them with the model's own advice (the same text)."""
    pixels = torch.full((1, 3, 33, 33), 200, dtype=torch.uint8)
    with pytest.raises(TypeError) as eager:
        model(pixels)
    (tmp_path / "m.onnx").write_bytes(b"refused before onnxruntime reads it")
    for given in (pixels, pixels.numpy()):
        with pytest.raises(TypeError, match=r"got uint8; x\.float\(\) / 255 first") as onnx:
            run_onnx(tmp_path / "m.onnx", given)
        assert str(onnx.value) == str(eager.value).replace("torch.uint8", "uint8")
