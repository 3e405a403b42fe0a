"""Optimiser updates inside the backward pass: the same weights and optimiser state to the bit, less memory."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from dagan.data.synth import write_dataset
from dagan.pipelines.step_in_backward import stepping_in_backward
from dagan.pipelines.train import Trainer, TrainOptions

from .conftest import REPO


class SharedTwice(nn.Module):
    """A network that uses one block twice in a step (as the keypoint detector is used on three frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x)) + self.head(self.block(x.flip(-1)))


def _train(model: nn.Module, in_backward: bool, steps: int = 4) -> tuple[nn.Module, torch.optim.Optimizer]:
    # Two groups with their own rates, and a schedule, as the trainer's optimisers have.
    optimizer = torch.optim.Adam(
        [{"params": model.block.parameters()}, {"params": model.head.parameters(), "lr": 3e-3}],
        lr=1e-3,
        betas=(0.5, 0.999),
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [2], gamma=0.1)
    data = torch.Generator().manual_seed(7)
    for _ in range(steps):
        loss = model(torch.randn(2, 3, 16, 16, generator=data)).square().mean()
        if in_backward:
            with stepping_in_backward([optimizer]):
                loss.backward()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    return model, optimizer


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_same(a[key], b[key])
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_updates_in_backward_give_the_same_weights_and_optimiser_state_to_the_bit():
    torch.manual_seed(0)
    start = SharedTwice()
    with warnings.catch_warnings():
        # A scheduler stepped before any optimizer.step() warns: the in-backward path must count as one.
        warnings.simplefilter("error")
        after, optimizer_after = _train(copy.deepcopy(start), in_backward=True)
    plain, optimizer_plain = _train(copy.deepcopy(start), in_backward=False)
    assert not torch.equal(after.head.weight, start.head.weight)  # it trained
    _assert_same(after.state_dict(), plain.state_dict())
    _assert_same(optimizer_after.state_dict(), optimizer_plain.state_dict())


def test_each_gradient_is_dropped_once_applied_and_the_hooks_are_removed():
    torch.manual_seed(0)
    model = SharedTwice()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with stepping_in_backward([optimizer]):
        model(torch.randn(2, 3, 8, 8)).square().mean().backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(len(optimizer.state[p]) == 3 for p in model.parameters())  # step, exp_avg, exp_avg_sq
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(2, 3, 8, 8)).square().mean().backward()  # outside: gradients stay, nothing steps
    assert all(p.grad is not None for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_a_parameter_still_needed_by_backward_is_never_updated_under_it():
    # Were an update to run before the last use of its parameter in backward, autograd's version
    # check would raise here; a block reused after itself is the case that would show it.
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    optimizer = torch.optim.Adam(conv.parameters(), lr=1e-2)
    reference = copy.deepcopy(conv)
    reference_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    x = torch.randn(1, 3, 8, 8)
    with stepping_in_backward([optimizer]):
        conv(conv(conv(x))).mean().backward()
    reference(reference(reference(x))).mean().backward()
    reference_optimizer.step()
    assert torch.equal(conv.weight, reference.weight)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_files):
    root = tmp_path_factory.mktemp("step_in_backward")
    write_dataset(root / "data", identities=3, clips_per_identity=1, frames=8, size=64, seed=5, quiet=True)
    return root, tiny_files["depth"]


@pytest.mark.parametrize("low_memory", [False, True], ids=["plain", "low-memory"])
def test_trainer_steps_in_backward_match_steps_after_it(tiny_run, low_memory):
    root, depth = tiny_run

    def run(in_backward: bool) -> Trainer:
        options = TrainOptions(
            data=root / "data",
            out=root / f"run_{in_backward}_{low_memory}",
            depth_weights=depth,
            config=REPO / "configs" / "tiny-64.yaml",
            workers=0,
            quiet=True,
            low_memory=low_memory,
        )
        trainer = Trainer(options)
        assert trainer.steps_in_backward  # one process, fp32
        trainer.steps_in_backward = in_backward
        trainer.start_training()
        batch = next(iter(trainer.loader()))
        for _ in range(2):
            trainer.train_step(batch["source"], batch["driving"])
            trainer.step += 1
        return trainer

    fused, plain = run(True), run(False)
    for name in ("generator", "kp_detector", "discriminator"):
        _assert_same(getattr(fused, name).state_dict(), getattr(plain, name).state_dict())
        _assert_same(getattr(fused, f"optimizer_{name}").state_dict(), getattr(plain, f"optimizer_{name}").state_dict())
