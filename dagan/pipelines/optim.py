"""Adam as ``torch.optim.Adam`` computes it by default, without importing ``torch._dynamo``.

Every ``torch.optim`` optimiser imports ``torch._dynamo`` on its first call (``add_param_group``,
``zero_grad``, ``state_dict`` and ``load_state_dict`` are wrapped in a lazy ``dynamo.disable``,
and ``step`` calls ``torch._dynamo.graph_break``). That import brings sympy and triton with it:
about 150 MB resident and 2 s of start-up in a training process that never compiles, on top
of a step's peak (docs/performance.md).

This ``Adam`` is a ``torch.optim.Optimizer`` (the learning-rate schedulers and ``GradScaler``
take it), runs the base class's own bookkeeping without the wrappers, and keeps
``torch.optim.Adam``'s parameter-group keys and state layout, so checkpoints move between the
two either way. Its update is the per-parameter arithmetic of torch's default (neither fused nor
capturable) Adam, operation for operation, so weights and state are the same to the bit
(tests/test_optim.py). It supports what DaGAN training uses: L2 weight decay, no AMSGrad, no
maximisation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

#: torch.optim.Adam's group options that this Adam holds fixed, at the values it computes with.
FIXED_OPTIONS = {
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": None,
    "decoupled_weight_decay": False,
}
#: Of those, the ones whose other values would change the update.
_UPDATE_OPTIONS = ("amsgrad", "maximize", "capturable", "differentiable", "fused", "decoupled_weight_decay")


def _unwrapped(method: Callable) -> Callable:
    # The base class's method as written, without torch's lazy dynamo.disable around it (which
    # only matters while dynamo traces, and nothing here is traced).
    return getattr(method, "__wrapped__", method)


class Adam(Optimizer):
    """``torch.optim.Adam(params, lr, betas, eps, weight_decay)``, the same to the bit, without ``torch._dynamo``."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if not (isinstance(lr, float | int) and lr >= 0):
            raise ValueError(f"Adam: the learning rate must be a number >= 0, not {lr!r}")
        if not all(isinstance(beta, float | int) and 0 <= beta < 1 for beta in betas) or len(betas) != 2:
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), not {betas!r}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"Adam: eps and weight_decay must be >= 0, not {eps!r} and {weight_decay!r}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, **FIXED_OPTIONS}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``Optimizer.add_param_group``."""
        _unwrapped(Optimizer.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``Optimizer.zero_grad``."""
        _unwrapped(Optimizer.zero_grad)(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """``Optimizer.state_dict``: the layout of ``torch.optim.Adam``'s."""
        return _unwrapped(Optimizer.state_dict)(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``Optimizer.load_state_dict``; takes ``torch.optim.Adam``'s, older ones included."""
        _unwrapped(Optimizer.load_state_dict)(self, state_dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in FIXED_OPTIONS.items():
                group.setdefault(key, value)
            changed = [key for key in _UPDATE_OPTIONS if group[key] not in (False, None)]
            if changed:
                raise ValueError(f"Adam: optimiser state with {', '.join(changed)} set is not supported")
            for parameter in group["params"]:
                state_of = self.state.get(parameter, {})
                # torch before 1.12 kept the step count as a Python number.
                if state_of and not torch.is_tensor(state_of["step"]):
                    state_of["step"] = torch.tensor(float(state_of["step"]), dtype=torch.float32)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                if parameter.grad.is_sparse:
                    raise RuntimeError("Adam does not take sparse gradients")
                state = self.state[parameter]
                if not state:
                    # As torch.optim.Adam: the count on the CPU, the moments like the parameter.
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                _update(parameter, parameter.grad, state, group)
        return loss


def _update(parameter: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], group: dict) -> None:
    # The order of torch's single-tensor Adam: any change of order changes the last bits.
    beta1, beta2 = group["betas"]
    lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    state["step"] += 1
    if weight_decay != 0:
        grad = grad.add(parameter, alpha=weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step = state["step"].item()
    step_size = lr / (1 - beta1**step)
    denominator = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
    parameter.addcdiv_(exp_avg, denominator, value=-step_size)
