"""Deterministic random initialisation with real signal, for tests and benchmarks (no pretrained weights here)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def randomise_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """He-scaled weights, non-trivial batch-norm statistics and converged spectral-norm vectors.

    PyTorch's default initialisation shrinks activations through deep untrained networks;
    these weights keep outputs dependent on inputs, which tests need to be able to fail.
    """
    state = module.state_dict()
    for name, tensor in state.items():
        if not tensor.is_floating_point() or name.endswith(("down.weight", "weight_u", "weight_v")):
            continue
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("running_var"):
            tensor.copy_(torch.exp(0.2 * noise))
        elif name.endswith(("running_mean", "bias")):
            tensor.copy_(0.05 * noise)
        elif name.endswith("AttnModule.gamma"):
            tensor.fill_(0.5)
        elif tensor.dim() >= 2:
            scale = (2.0 / tensor[0].numel()) ** 0.5
            tensor.copy_(noise * scale * (0.01 if "jacobian" in name else 1.0))
        else:
            tensor.copy_(1.0 + 0.1 * noise)
    for name in [k for k in state if k.endswith("weight_orig")]:
        stem = name[: -len("weight_orig")]
        u, _, vh = torch.linalg.svd(state[name].reshape(state[name].shape[0], -1), full_matrices=False)
        state[stem + "weight_u"].copy_(u[:, 0])
        state[stem + "weight_v"].copy_(vh[0])
    for sub in module.modules():
        jacobian = getattr(sub, "jacobian", None)
        if isinstance(jacobian, nn.Conv2d):
            jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(jacobian.bias.numel() // 4))
    return module
