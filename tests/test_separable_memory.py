"""The separable conv recomputes its depthwise half in the backward pass: same numbers, less memory."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from deeplab_edu.complexity import saved_for_backward_bytes
from deeplab_edu.engine.distributed import CPUSyncBatchNorm
from deeplab_edu.models.aspp import ASPPConv, SeparableConv2d


def _plain(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that always takes the plain path (every intermediate kept by autograd)."""
    plain = copy.deepcopy(module)
    plain.recompute_depthwise = False
    return plain


def _step(module: nn.Module, x: torch.Tensor, amp: bool) -> tuple[Any, ...]:
    xx = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = module(xx)
    out.float().square().sum().backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    buffers = {n: b.clone() for n, b in module.named_buffers()}
    return out.detach(), xx.grad, grads, buffers


def _random(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-1, 1)
    return module.train()


@pytest.mark.parametrize("rate,size", [(1, (9, 12)), (2, (9, 12)), (12, (8, 8))])  # rate 12 on 8 x 8: a multiplication
@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_recomputed_depthwise_gives_the_plain_layers_numbers(rate: int, size: tuple[int, int], amp: bool,
                                                              channels_last: bool) -> None:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    module = _random(SeparableConv2d(16, 8, rate=rate)).to(memory_format=fmt)
    x = torch.randn(2, 16, *size).contiguous(memory_format=fmt)
    plain = _plain(module)
    (o1, g1, p1, b1), (o2, g2, p2, b2) = _step(module, x, amp), _step(plain, x, amp)
    tol = {"rtol": 1e-2, "atol": 1e-2} if amp else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(o1, o2, rtol=0, atol=0)  # the forward pass runs the same kernels
    torch.testing.assert_close(g1, g2, **tol)
    for name in p2:
        torch.testing.assert_close(p1[name], p2[name], **tol, msg=lambda m, n=name: f"{n}: {m}")
    for name in b2:  # running statistics updated once, as by the plain layers
        torch.testing.assert_close(b1[name], b2[name], rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_momentum_none_and_no_running_statistics_behave_like_batch_norm() -> None:
    torch.manual_seed(1)
    x = torch.randn(3, 8, 6, 6)
    untracked = nn.BatchNorm2d(8)
    untracked.num_batches_tracked = None  # as in some old checkpoints: momentum is used
    for bn in (nn.BatchNorm2d(8, momentum=None), nn.BatchNorm2d(8, track_running_stats=False), untracked):
        module = _random(SeparableConv2d(8, 4))
        module[1] = bn
        assert module._recompute_depthwise(x.clone().requires_grad_())
        twin = _plain(module)
        for _ in range(2):  # the cumulative average needs two steps to differ from momentum 1
            fast, plain = _step(module, x, False), _step(twin, x, False)
        torch.testing.assert_close(fast[0], plain[0], rtol=0, atol=0)
        for name in plain[3]:
            torch.testing.assert_close(fast[3][name], plain[3][name], rtol=0, atol=0)


def test_it_keeps_less_for_the_backward_pass() -> None:
    """The batch norm's input and the ReLU's output (each the size of x) are not kept."""
    torch.manual_seed(0)
    module = SeparableConv2d(64, 32).train()
    x = torch.randn(2, 64, 16, 16)
    activation = x.numel() * x.element_size()
    kept, plain_kept = saved_for_backward_bytes(module, x), saved_for_backward_bytes(_plain(module), x)
    assert plain_kept - kept >= 2 * activation, (kept, plain_kept)
    out_map = activation // 2  # 32 output channels: the pointwise conv's output and its ReLU's, kept either way
    assert kept < 2 * out_map + 4096 and plain_kept >= 2 * activation + 2 * out_map
    branch = ASPPConv(64, 32, rate=12, separable=True).train()  # the ASPP's separable branches too
    assert saved_for_backward_bytes(_plain(branch), x) - saved_for_backward_bytes(branch, x) >= 2 * activation


def test_plain_path_when_it_must_be() -> None:
    """Evaluation, no gradients, hooks and other batch norms (SyncBatchNorm) take the plain layers."""
    module = SeparableConv2d(8, 4).train()
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    assert module._recompute_depthwise(x)
    assert not module.eval()._recompute_depthwise(x)
    module.train()
    with torch.no_grad():
        assert not module._recompute_depthwise(x)
    frozen = SeparableConv2d(8, 4).train().requires_grad_(False)
    assert not frozen._recompute_depthwise(x.detach()) and frozen._recompute_depthwise(x)
    seen = []
    handle = module[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    module(x)
    assert seen == [torch.Size([2, 8, 6, 6])]  # the hook ran: the plain path
    handle.remove()
    synced = SeparableConv2d(8, 4).train()
    synced[1] = CPUSyncBatchNorm(8)
    assert not synced._recompute_depthwise(x)
    biased = SeparableConv2d(8, 4).train()
    biased[0] = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=True)  # its bias would get no gradient
    assert not biased._recompute_depthwise(x)

    class Standardised(nn.Conv2d):  # a subclass computes its own forward: not recomputed by us
        pass

    sub = SeparableConv2d(8, 4).train()
    sub[0] = Standardised(8, 8, 3, padding=1, groups=8, bias=False)
    assert not sub._recompute_depthwise(x)
    parametrized = SeparableConv2d(8, 4).train()
    nn.utils.parametrizations.spectral_norm(parametrized[0])
    assert not parametrized._recompute_depthwise(x)
    handle = nn.modules.module.register_module_full_backward_hook(lambda *args: None)
    try:
        assert not module._recompute_depthwise(x)
    finally:
        handle.remove()
    assert module._recompute_depthwise(x) and not module._recompute_depthwise(x[:0])  # empty batch: plain
    module.recompute_depthwise = False
    assert not module._recompute_depthwise(x)


# forward-mode AD loads torch's own jvp decompositions with torch.jit.script, which torch deprecates
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # FutureWarning; 2.11: DeprecationWarning
def test_fx_tracing_and_forward_mode_take_the_plain_path() -> None:
    module = SeparableConv2d(8, 4).train()
    traced = torch.fx.symbolic_trace(module)  # a Proxy is not a tensor
    assert len(list(traced.graph.nodes)) > 3
    import torch.autograd.forward_ad as fwAD

    x = torch.randn(2, 8, 5, 5)
    with fwAD.dual_level():
        out = module(fwAD.make_dual(x, torch.ones_like(x)))
        assert fwAD.unpack_dual(out).tangent is not None


def test_differentiating_twice_needs_the_plain_path() -> None:
    torch.manual_seed(0)
    module = SeparableConv2d(8, 4).train()
    x = torch.randn(2, 8, 5, 5, requires_grad=True)

    def gradient_penalty() -> None:
        (grad,) = torch.autograd.grad(module(x).square().sum(), x, create_graph=True)
        grad.square().sum().backward()

    with pytest.raises(RuntimeError, match="once_differentiable|differentiate"):
        gradient_penalty()
    module.recompute_depthwise = False
    gradient_penalty()


def test_one_value_per_channel_is_the_usual_error() -> None:
    module = SeparableConv2d(4, 4).train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        module(torch.randn(1, 4, 1, 1, requires_grad=True))


def test_the_trainer_follows_recompute_depthwise() -> None:
    from deeplab_edu.engine.config import load_config
    from deeplab_edu.engine.trainer import Trainer
    from deeplab_edu.models.aspp import _AtrousSequential, set_recompute_depthwise

    for value in (False, True):
        cfg = load_config("smoke", {"model": "deeplabv3plus", "recompute_depthwise": value, "out_dir": "unused"})
        trainer = Trainer(cfg)
        flags = {m.recompute_depthwise for m in trainer.model.modules() if isinstance(m, _AtrousSequential)}
        assert flags == {value}
    assert set_recompute_depthwise(trainer.model, False) == len(
        [m for m in trainer.model.modules() if isinstance(m, _AtrousSequential)]) > 0


@pytest.mark.parametrize("side", [6, 7])  # rate 6: the depthwise conv's centre-tap path at 6x6, the full conv at 7x7
def test_autocast_leaves_a_double_separable_conv_in_float64(side: int) -> None:
    """An audit: the centre-tap path cast float64 inputs to the autocast dtype, which autocast itself never does
    (it casts float32 and the other floating types, not float64): "mixed dtype (CPU)" at 6x6, float64 at 7x7."""
    torch.manual_seed(0)
    module = SeparableConv2d(4, 4, rate=6).double().eval()
    x = torch.randn(1, 4, side, side, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, module(x), rtol=0, atol=0)
