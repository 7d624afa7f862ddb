"""The ConvNets: CNN-M-2048 against the paper's figure 1, cross-modality init, local weights, multi-task heads."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from train.engine import multitask_loss
from train.models import build_model, cross_modality_conv


def _layers(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("temporal, norms", [(False, 2), (True, 1)])
def test_cnn_m_2048_matches_the_papers_figure(temporal, norms):
    m = build_model("cnn_m_2048", [101], 20 if temporal else 3, 224, dropout=0.9, temporal=temporal)
    convs = _layers(m, nn.Conv2d)
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (20 if temporal else 3, 96, 7, 2), (96, 256, 5, 2), (256, 512, 3, 1), (512, 512, 3, 1), (512, 512, 3, 1)]
    assert len(_layers(m, nn.LocalResponseNorm)) == norms  # the temporal net drops the second normalisation
    assert [p.kernel_size for p in _layers(m, nn.MaxPool2d)] == [2, 2, 2]
    assert [fc.out_features for fc in _layers(m, nn.Linear)] == [4096, 2048, 101]  # full6, full7, softmax
    assert [d.p for d in _layers(m, nn.Dropout)] == [0.9, 0.9]
    with torch.no_grad():
        assert m(torch.zeros(2, 20 if temporal else 3, 224, 224))[0].shape == (2, 101)


def test_cross_modality_init_averages_rgb_weights(tmp_path):
    torch.manual_seed(0)
    rgb = build_model("resnet18", [1000], 3)
    src = {k.replace("trunk.", ""): v for k, v in rgb.state_dict().items() if k.startswith("trunk.")}
    src["fc.weight"], src["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)  # an ImageNet-style file
    path = tmp_path / "resnet18.pth"
    torch.save(src, path)
    flow = build_model("resnet18", [101], 20, pretrained=str(path), temporal=True)
    w = flow.trunk.conv1.weight
    assert w.shape == (64, 20, 7, 7)
    expected = src["conv1.weight"].mean(dim=1, keepdim=True).expand(-1, 20, -1, -1)
    torch.testing.assert_close(w, expected, rtol=0, atol=0)
    torch.testing.assert_close(flow.trunk.layer4[1].conv2.weight, src["layer4.1.conv2.weight"], rtol=0, atol=0)
    assert flow.heads[0].out_features == 101
    # spatial fine-tuning keeps the RGB filters unchanged
    torch.testing.assert_close(build_model("resnet18", [101], 3, pretrained=str(path)).trunk.conv1.weight,
                               src["conv1.weight"], rtol=0, atol=0)
    torch.save({f"module.{k}": v for k, v in src.items()}, path)  # saved through DistributedDataParallel
    torch.testing.assert_close(build_model("resnet18", [101], 3, pretrained=str(path)).trunk.conv1.weight,
                               src["conv1.weight"], rtol=0, atol=0)  # it was refused: "check --arch"
    conv = nn.Conv2d(3, 4, 3, bias=True)
    new = cross_modality_conv(conv, 6)
    torch.testing.assert_close(new.weight[:, 5], conv.weight.mean(1))
    torch.testing.assert_close(new.bias, conv.bias)


def test_weights_only_from_a_local_file_that_fits(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_model("resnet18", [10], 3, pretrained=str(tmp_path / "missing.pth"))
    torch.save(build_model("tiny", [5], 3).state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match="--arch"):
        build_model("resnet18", [10], 3, pretrained=str(tmp_path / "tiny.pth"))
    with pytest.raises(ValueError, match="choose one of"):
        build_model("alexnet", [10], 3)


def test_imagenet_weights_for_another_arch_name_the_flag_to_add(tmp_path):
    """`--pretrained resnet18.pth` with the default arch (cnn_m_2048) says which --arch the file needs."""
    import torchvision

    from train.models import weights_arch
    state = torchvision.models.resnet18(weights=None).state_dict()  # as torchvision's resnet18-f37072fd.pth
    torch.save(state, tmp_path / "resnet18.pth")
    assert weights_arch(state) == "resnet18"
    assert weights_arch({k: v for k, v in state.items() if not k.startswith("layer4.1.")}) is None
    for arch in ("cnn_m_2048", "resnet50"):
        with pytest.raises(ValueError, match="these are resnet18 weights, not " + arch + ": add --arch resnet18"):
            build_model(arch, [10], 20, pretrained=str(tmp_path / "resnet18.pth"), temporal=True)


def test_multitask_each_sample_uses_only_its_own_head():
    torch.manual_seed(0)
    m = build_model("tiny", [4, 3], 6, dropout=0.0)
    x, y = torch.randn(5, 6, 32, 32), torch.tensor([0, 1, 2, 3, 0])
    task = torch.zeros(5, dtype=torch.long)
    out = m(x)
    assert [o.shape for o in out] == [(5, 4), (5, 3)]
    multitask_loss(out, y, task).backward()
    assert m.heads[1].weight.grad is None or m.heads[1].weight.grad.abs().sum() == 0
    assert m.heads[0].weight.grad.abs().sum() > 0
    # two tasks in one batch: the sum of each head's mean loss over its own samples (2 and 3 of them here)
    task = torch.tensor([0, 0, 1, 1, 1])
    y = torch.tensor([3, 1, 2, 0, 1])
    out = m(x)
    want = (nn.functional.cross_entropy(out[0][:2], y[:2]) + nn.functional.cross_entropy(out[1][2:], y[2:]))
    torch.testing.assert_close(multitask_loss(out, y, task), want)


def test_a_frozen_vgg_trunk_leaves_the_last_layer_its_dropout():
    """--arch vgg16 --pretrained (the last layer trains, Table 1a's setting): fc7's dropout sat in the trunk, which
    a frozen trunk keeps in eval mode, and the head had none: the last layer trained without dropout."""
    model = build_model("vgg16", [4], 3, 32, dropout=0.5).freeze_trunk().train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    a = model(x)[0]
    b = model(x)[0]
    assert not torch.equal(a, b)  # the head's dropout draws again
    assert torch.equal(model.trunk(x), model.trunk(x))  # the frozen trunk does not
