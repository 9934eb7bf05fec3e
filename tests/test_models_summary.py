"""The complexity table: meta-device counts equal real counts; published figures sit on the right rows."""

from __future__ import annotations

import pytest
import torch

from deeplab_edu.complexity import count_macs, count_parameters
from deeplab_edu.models import build_model
from deeplab_edu.models.summary import ModelConfig, complexity_table, model_cost
from deeplab_edu.viz.tables import markdown_text


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_meta_device_count_equals_real_count() -> None:
    cfg = ModelConfig("deeplabv3plus", "mobilenet_v3_large", 16)
    params, macs = model_cost(cfg, size=(49, 57), num_classes=3)
    real = build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=3).eval()
    assert params == count_parameters(real)
    assert macs == count_macs(real, torch.rand(1, 3, 49, 57))


def test_table_rows_and_published_figures() -> None:
    rows = complexity_table(
        [ModelConfig("deeplabv3", "resnet101", 16), ModelConfig("deeplabv3plus", "resnet101", 16)], size=513
    )
    assert rows[0]["published GMACs"] == 81.02 and rows[0]["source"] == "DeepLabv3+ Table 3"
    assert rows[1]["published GMACs"] is None  # separable v3+ is not the configuration of Table 3
    # output stride 8 costs more than 16, which costs more than 32 (same parameters)
    costs = complexity_table([ModelConfig("deeplabv3", "resnet50", s) for s in (32, 16, 8)], size=129)
    assert costs[0]["GMACs"] < costs[1]["GMACs"] < costs[2]["GMACs"]
    assert len({r["params (M)"] for r in costs}) == 1
    md = markdown_text(rows)
    assert md.count("\n") == 3 and "–" in md
    # NaN (the IoU of a class absent from the scenes) as the metrics' tables write it, not "nan"
    assert markdown_text([{"class": "boat", "IoU (%)": float("nan"), "n": 2}]).splitlines()[-1] == "| boat | n/a | 2 |"


def test_trace_stages_follows_the_forward_pass() -> None:
    from deeplab_edu.models.summary import trace_stages

    torch.manual_seed(0)
    model = build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=3).eval()
    stages = dict(trace_stages(model, torch.rand(1, 3, 65, 65)))
    assert stages["low-level reduced (1x1 conv)"] == (1, 48, 17, 17)
    assert stages["ASPP upsampled + concatenated"] == (1, 304, 17, 17)
    assert stages["logits"] == (1, 3, 17, 17) and stages["logits upsampled to the input"] == (1, 3, 65, 65)
    v3 = dict(trace_stages(build_model("deeplabv3", backbone="mobilenet_v3_large", num_classes=3).eval(), torch.rand(1, 3, 65, 65)))
    assert v3["ASPP"] == (1, 256, 5, 5) and v3["logits"] == (1, 3, 5, 5)
    training = build_model("deeplabv3", backbone="mobilenet_v3_large", num_classes=3).train()
    before = {k: v.clone() for k, v in training.state_dict().items()}
    trace_stages(training, torch.rand(2, 3, 65, 65))
    assert training.training and all(torch.equal(v, before[k]) for k, v in training.state_dict().items())  # BN untouched
    with pytest.raises(TypeError, match="DeepLabv3 and v3\\+"):
        trace_stages(build_model("deeplabv2", backbone="tiny_resnet", num_classes=3), torch.rand(1, 3, 65, 65))


def test_count_parameters_counts_a_shared_parameter_once() -> None:
    import torch.nn as nn

    layer = nn.Linear(4, 5)  # 4 * 5 + 5 = 25
    model = nn.Sequential(layer, nn.ReLU(), layer, nn.Linear(5, 1))  # used twice, plus 5 + 1 = 6
    model.register_parameter("alias", layer.bias)  # one parameter under a second name
    assert count_parameters(model) == 31
    model[3].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 26
