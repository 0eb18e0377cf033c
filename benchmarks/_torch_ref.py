"""The optional PyTorch references, written the way the PyTorch score-SDE tutorials write
them: an `nn.Module` MLP, a Python `for` loop over time steps under `torch.no_grad()` for
sampling, and `zero_grad / backward / step` per minibatch for training.

Nothing here imports torch at module level: `status()` says whether it can run, and the
benchmark records "not installed" (or why it was skipped) instead of failing.
"""

import math
import os

import numpy as np
from _common import timing


def status(platform: str) -> dict:
    """Whether the PyTorch reference can run beside JAX on `platform` ("cpu" or "gpu").

    On a busy CPU (1-minute load average above half the cores) this sets
    `OMP_WAIT_POLICY=PASSIVE` before torch is first imported, unless it is already set: with
    OpenMP's default spin-waiting, on 2 cores shared with other processes, one 300-step
    training run took 29-53 s instead of 2 s. On a quiet machine the default (spinning) is
    faster (10-step sampling of 10^4 points: 0.24 s against 0.37 s passive), so it is kept.
    The policy in force is recorded."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if platform == "cpu" and load > 0.5 * (os.cpu_count() or 1):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return {"status": "not installed", "version": None}
    if platform == "gpu" and not torch.cuda.is_available():
        return {"status": "skipped: torch has no CUDA device", "version": torch.__version__}
    if platform not in ("cpu", "gpu"):
        return {"status": f"skipped: no torch backend for {platform}", "version": torch.__version__}
    return {
        "status": "ok",
        "version": torch.__version__,
        "device": "cuda" if platform == "gpu" else "cpu",
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        # PyTorch's float32 matmuls on CUDA use full FP32 unless this is on, while JAX's
        # default precision lets XLA use TF32 tensor cores on Ampere and later: on such a
        # GPU the two loops do not run at the same precision, and the record says so.
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    }


def _torch_mlp(jax_mlp, device):
    """The same network as `scoresde.nn.TimeMLP` (input `(x, t - 1/2, cos 2πt)`, ReLU
    hidden layers), with the JAX weights copied in so both compute the same function."""
    import torch

    class TimeMLP(torch.nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.layers = torch.nn.ModuleList(layers)

        def forward(self, x, t):
            h = torch.cat([x, (t - 0.5)[:, None], torch.cos(2 * math.pi * t)[:, None]], dim=1)
            for layer in self.layers[:-1]:
                h = torch.relu(layer(h))
            return self.layers[-1](h)

    layers = []
    for lin in jax_mlp.mlp.layers:
        w = np.asarray(lin.weight)
        layer = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w.copy()))
            layer.bias.copy_(torch.from_numpy(np.asarray(lin.bias).copy()))
        layers.append(layer)
    return TimeMLP(layers).to(device)


def _sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _median_time(fn, device, repeats):
    return timing(fn, repeats=repeats, wait=lambda _: _sync(device))


def time_sampling(jax_mlp, num, steps, repeats, *, device="cpu", beta_min=0.1, beta_max=20.0):
    """Reverse-SDE Euler–Maruyama from T = 1 to eps = 1e-3, `steps` uniform steps."""
    import torch

    model = _torch_mlp(jax_mlp, device).eval()
    eps = 1e-3

    @torch.no_grad()
    def sampler():
        ts = torch.linspace(1.0, eps, steps + 1, device=device)
        x = torch.randn(num, 2, device=device)
        for i in range(steps):
            t, dt = ts[i], ts[i + 1] - ts[i]
            batch_t = torch.ones(num, device=device) * t
            beta = beta_min + t * (beta_max - beta_min)
            drift = -0.5 * beta * x - beta * model(x, batch_t)
            x = x + drift * dt + torch.sqrt(beta * -dt) * torch.randn_like(x)
        return x

    torch.manual_seed(0)
    return _median_time(sampler, device, repeats)


def time_training(jax_mlp, data, steps, batch_size, repeats, *, device="cpu", lr=1e-3):
    """Denoising score matching on the VP SDE (beta 0.1 to 20, t ~ U[1e-3, 1], the loss
    1/2 |s(t) score + z|^2 summed over dimensions, averaged over the batch), Adam, one
    minibatch from a per-epoch permutation per step: `train_throughput.py`'s plain loop."""
    import torch

    data = torch.from_numpy(np.asarray(data).copy()).to(device)
    beta_min, beta_max, eps = 0.1, 20.0, 1e-3

    def run():
        model = _torch_mlp(jax_mlp, device).train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        per_epoch = data.shape[0] // batch_size
        for i in range(steps):
            if i % per_epoch == 0:
                perm = torch.randperm(data.shape[0], device=device)
            j = i % per_epoch
            x0 = data[perm[j * batch_size : (j + 1) * batch_size]]
            t = torch.rand(batch_size, device=device) * (1 - eps) + eps
            log_mean = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
            mean, std = torch.exp(log_mean), torch.sqrt(1 - torch.exp(2 * log_mean))
            z = torch.randn_like(x0)
            xt = mean[:, None] * x0 + std[:, None] * z
            loss = 0.5 * ((std[:, None] * model(xt, t) + z) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()

    torch.manual_seed(0)
    return _median_time(run, device, repeats)


__all__ = ["status", "time_sampling", "time_training"]
