"""dagan's Adam against torch.optim.Adam: the same updates and state layout, without torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dagan.pipelines.optim import Adam

from .test_train import TINY_CONFIG, depth_dir, synth_data  # noqa: F401 (fixtures)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))


def _groups(model: torch.nn.Module) -> list[dict]:
    first, second = model[0], model[2]
    return [
        {"params": list(first.parameters()), "lr": 3e-3},
        {"params": list(second.parameters()), "weight_decay": 0.1},
    ]


def _train(model, optimizer, steps: int, seed: int) -> None:
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [2], gamma=0.1)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        optimizer.zero_grad()
        loss = model(torch.rand(2, 3, 9, 9, generator=generator)).square().mean()
        loss.backward()
        if step == 1:
            model[2].bias.grad = None  # a parameter without a gradient is left alone
        optimizer.step()
        schedule.step()


def test_updates_and_state_are_torchs_to_the_bit():
    ours_model, torch_model = _model(0), _model(0)
    ours = Adam(_groups(ours_model), lr=2e-4, betas=(0.5, 0.999))
    theirs = torch.optim.Adam(_groups(torch_model), lr=2e-4, betas=(0.5, 0.999))
    _train(ours_model, ours, 4, seed=1)
    _train(torch_model, theirs, 4, seed=1)
    for a, b in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        assert torch.equal(a, b)
    ours_state, torch_state = ours.state_dict(), theirs.state_dict()
    assert ours_state["param_groups"] == torch_state["param_groups"]
    assert ours_state["state"].keys() == torch_state["state"].keys()
    for index, values in torch_state["state"].items():
        assert values.keys() == ours_state["state"][index].keys()
        for key, value in values.items():
            mine = ours_state["state"][index][key]
            assert torch.equal(value, mine) and value.dtype == mine.dtype


@pytest.mark.parametrize("direction", ["torch to ours", "ours to torch"])
def test_state_dicts_move_between_the_two_and_training_goes_on_the_same(direction):
    first_model, second_model, reference_model = _model(2), _model(2), _model(2)
    first_kind, second_kind = (torch.optim.Adam, Adam) if direction == "torch to ours" else (Adam, torch.optim.Adam)
    first, reference = first_kind(first_model.parameters(), lr=1e-3), first_kind(reference_model.parameters(), lr=1e-3)
    _train(first_model, first, 2, seed=3)
    _train(reference_model, reference, 2, seed=3)
    second_model.load_state_dict(first_model.state_dict())
    second = second_kind(second_model.parameters(), lr=1e-3)
    second.load_state_dict(first.state_dict())
    _train(second_model, second, 2, seed=4)
    _train(reference_model, reference, 2, seed=4)
    for a, b in zip(second_model.parameters(), reference_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_old_step_counts_load_and_unsupported_options_are_refused():
    model = _model(5)
    optimizer = Adam(model.parameters())
    _train(model, optimizer, 1, seed=6)
    state = optimizer.state_dict()
    for values in state["state"].values():
        values["step"] = 1  # as torch before 1.12 wrote it
    for group in state["param_groups"]:
        del group["decoupled_weight_decay"]  # as torch before 2.6 wrote it
    optimizer.load_state_dict(state)
    assert all(torch.is_tensor(values["step"]) for values in optimizer.state.values())
    assert optimizer.param_groups[0]["decoupled_weight_decay"] is False
    state["param_groups"][0]["amsgrad"] = True
    with pytest.raises(ValueError, match="amsgrad"):
        Adam(model.parameters()).load_state_dict(state)
    with pytest.raises(ValueError, match="betas"):
        Adam(model.parameters(), betas=(0.5, 1.0))


def test_a_training_run_never_imports_torch_dynamo_or_torchvision(synth_data, depth_dir, tmp_path):  # noqa: F811
    """Each costs resident memory at the step's peak (about 150 MB together); see dagan.pipelines.optim."""
    script = (
        "import sys\n"
        "from dagan.cli import main\n"
        f"code = main(['train', '--data', {str(synth_data)!r}, '--out', {str(tmp_path / 'run')!r}, '--config',"
        f" {str(TINY_CONFIG)!r}, '--depth-weights', {str(depth_dir)!r}, '--max-steps', '2', '--workers', '0',"
        " '--low-memory', '--quiet'])\n"
        "print(code, 'torch._dynamo' in sys.modules, 'torchvision' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.split()[-3:] == ["0", "False", "False"], result.stdout + result.stderr[-2000:]
