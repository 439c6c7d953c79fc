"""The hand-written line's gradients against autograd, for every loss (micrograd's way)."""
import pytest
import torch

from runner import models


@pytest.mark.parametrize("loss", ["mse", "sse", "half_mse"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 1, 1), (20, 3, 1), (5, 4, 2)])
def test_line_gradients_match_autograd(loss, bias, shape):
    n, k, m = shape
    g = torch.Generator().manual_seed(0)  # fixed: the same numbers in every process
    X = torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.randn(n, m, generator=g, dtype=torch.float64)
    w = torch.randn(k, m, generator=g, dtype=torch.float64)
    b = torch.randn(m, generator=g, dtype=torch.float64) if bias else None
    analytic = models.Line(w, b).gradients(X, y, loss)

    # the reference: the loss written independently, differentiated by autograd
    wa = w.clone().requires_grad_()
    ba = b.clone().requires_grad_() if bias else None
    pred = X @ wa + (ba if bias else 0)
    se = ((pred - y) ** 2)
    ref_loss = {"mse": se.sum() / se.numel(), "sse": se.sum(), "half_mse": se.sum() / se.numel() / 2}[loss]
    ref = torch.autograd.grad(ref_loss, [wa] + ([ba] if bias else []))

    assert len(analytic) == len(ref)
    for a, r in zip(analytic, ref):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    assert models.loss_value(loss, X @ w + (b if bias else 0), y).item() == pytest.approx(
        ref_loss.item(), rel=1e-12)


def test_net_fills_grad_for_torch_models_too():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    X, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    value = models.Net(net).fill_gradients("sse", X, y)
    ref = torch.autograd.grad(((net(X) - y) ** 2).sum(), list(net.parameters()))
    assert value.item() == pytest.approx(((net(X) - y) ** 2).sum().item())
    for p, r in zip(net.parameters(), ref):
        torch.testing.assert_close(p.grad, r)
