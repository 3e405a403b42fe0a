"""dagan's ResNet against torchvision's: same keys, same seeded weights, same outputs, and no torchvision import."""

import json
import subprocess
import sys

import pytest
import torch
import torchvision

from dagan.nn.resnet import RESNET_LAYOUTS, ResNet

TORCHVISION = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}


@pytest.mark.parametrize("depth", sorted(TORCHVISION))
def test_seeded_build_draws_torchvisions_weights(depth):
    torch.manual_seed(depth)
    ours = ResNet(depth).state_dict()
    torch.manual_seed(depth)
    theirs = TORCHVISION[depth](weights=None).state_dict()
    assert list(ours) == list(theirs)
    for key, tensor in theirs.items():
        assert torch.equal(ours[key], tensor), key


@pytest.mark.parametrize("depth", [18, 50])
def test_outputs_match_torchvision_in_training_and_eval(depth):
    torch.manual_seed(1)
    theirs = TORCHVISION[depth](weights=None)
    ours = ResNet(depth)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for mode in (True, False):
        ours.train(mode), theirs.train(mode)
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_deep_layouts_match_torchvision_keys():
    for depth, build in ((101, torchvision.models.resnet101), (152, torchvision.models.resnet152)):
        ours, theirs = ResNet(depth).state_dict(), build(weights=None).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert sorted(RESNET_LAYOUTS) == [18, 34, 50, 101, 152]
    with pytest.raises(ValueError, match="unsupported ResNet depth 20"):
        ResNet(20)


def test_animation_imports_neither_torchvision_nor_scipy():
    # Each costs start-up time and resident memory in every animation: 2.3 s and 160 MB, 20 MB.
    code = "import json, sys, dagan.pipelines.animate; print(json.dumps(list({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(json.loads(out.stdout))
    assert "torch" in imported and not imported & {"torchvision", "scipy"}
