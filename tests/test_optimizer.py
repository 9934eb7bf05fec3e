"""The engine's optimisers: PyTorch's fused kernels where they apply, the same update as the default
implementation, and checkpoints that keep the implementation of the run that loads them."""

from __future__ import annotations

import pytest
import torch

from deeplab_edu.engine.schedule import build_optimizer, load_optimizer_state, param_groups
from test_engine_fixtures import TinyNet


def _train(opt: torch.optim.Optimizer, model: torch.nn.Module, steps: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the head's dropout
    for _ in range(steps):
        x = torch.randn(2, 3, 16, 16, generator=g)
        model(x)["out"].square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_fused_on_cpu_and_the_same_update_as_the_default(name: str, channels_last: bool) -> None:
    torch.manual_seed(0)
    fused_model, plain_model = TinyNet(), TinyNet()
    plain_model.load_state_dict(fused_model.state_dict())
    if channels_last:  # the fused CPU kernels rely on gradients with the parameters' strides
        fused_model.to(memory_format=torch.channels_last)
        plain_model.to(memory_format=torch.channels_last)
    groups = param_groups(fused_model, lr=0.05, weight_decay=1e-4, no_decay_norm=True)
    opt = build_optimizer(name, groups, lr=0.05)
    assert all(g["fused"] for g in opt.param_groups)
    plain_groups = param_groups(plain_model, lr=0.05, weight_decay=1e-4, no_decay_norm=True)
    plain = (torch.optim.SGD(plain_groups, lr=0.05, momentum=0.9, foreach=True) if name == "sgd"
             else torch.optim.AdamW(plain_groups, lr=0.05, betas=(0.9, 0.999), foreach=True))
    asked = build_optimizer(name, param_groups(TinyNet(), lr=0.05, weight_decay=1e-4), lr=0.05,
                            implementation="foreach")  # what benchmarks/optimizer_step.py times against fused
    assert all(g["foreach"] and not g["fused"] for g in asked.param_groups)
    assert {k: v for k, v in asked.defaults.items() if k not in ("fused", "foreach")} == {
        k: v for k, v in opt.defaults.items() if k not in ("fused", "foreach")}
    _train(opt, fused_model, 5)
    _train(plain, plain_model, 5)
    for (k, a), b in zip(fused_model.state_dict().items(), plain_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")


def test_not_fused_where_the_kernels_do_not_apply() -> None:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))]}]
    assert not build_optimizer("sgd", groups, lr=0.1).param_groups[0]["fused"]
    with pytest.raises(ValueError, match="implementation must be 'auto', 'fused' or 'foreach', got 'fast'"):
        build_optimizer("sgd", groups, lr=0.1, implementation="fast")  # type: ignore[arg-type]


def test_a_checkpoint_of_the_default_implementation_resumes_fused() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    old = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)  # as written before the fused kernels
    _train(old, model, 2)
    saved = old.state_dict()
    opt = build_optimizer("adamw", [{"params": list(model.parameters())}], lr=1e-3)
    load_optimizer_state(opt, saved)
    group = opt.param_groups[0]
    assert group["fused"] and not group["foreach"] and group["lr"] == 1e-3
    p = next(iter(model.parameters()))
    assert torch.equal(opt.state[p]["exp_avg"], old.state[p]["exp_avg"])
    assert float(opt.state[p]["step"]) == 2
    _train(opt, model, 1)  # and it steps
    assert float(opt.state[p]["step"]) == 3
    with pytest.raises(ValueError):
        load_optimizer_state(opt, {**saved, "param_groups": saved["param_groups"] * 2})
