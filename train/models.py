"""The ConvNets: the paper's CNN-M-2048, torchvision backbones, cross-modality initialisation, multi-task heads.

Every model is a ``TwoStreamNet``: a trunk (input -> feature vector) and one linear head per dataset; its
forward returns a tuple of logits, one (B, classes_k) tensor per head. A single-dataset model has one head.
Weights come only from a local file (``pretrained``); nothing is ever downloaded.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

from train.torchfile import CheckpointError, read_torch_file

# Caffe's LRN as used by CNN-M (Chatfield et al. 2014): 5 channels, alpha 1e-4, beta 0.75, k 2.
_LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)


class TwoStreamNet(nn.Module):
    """A trunk and one linear classifier per dataset (multi-task learning shares the trunk)."""

    def __init__(self, trunk: nn.Module, features: int, num_classes: list[int], dropout: float = 0.0):
        super().__init__()
        self.trunk = trunk
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.heads = nn.ModuleList(nn.Linear(features, n) for n in num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, C, S, S) -> one (B, classes_k) logit tensor per head."""
        f = self.dropout(self.trunk(x))
        return tuple(head(f) for head in self.heads)

    def freeze_trunk(self) -> "TwoStreamNet":
        """Train only the heads: the trunk's weights get no gradient and it stays in eval mode (its batch-norm
        statistics and dropout as they were), as in the paper's "pre-trained + last layer"."""
        self.trunk.requires_grad_(False)
        self.trunk.eval()
        return self

    def train(self, mode: bool = True) -> "TwoStreamNet":
        """nn.Module.train, except that a frozen trunk (no weight that learns) stays in eval mode."""
        super().train(mode)
        if not any(p.requires_grad for p in self.trunk.parameters()):
            self.trunk.eval()
        return self


class CNNM2048(nn.Module):
    """CNN-M-2048 trunk as in figure 1 of Simonyan & Zisserman (2014), up to and including full7.

    conv1 7x7x96 stride 2, norm, pool 2x2; conv2 5x5x256 stride 2, norm (spatial net only), pool 2x2;
    conv3, conv4, conv5 3x3x512 stride 1, pool 2x2 after conv5; full6 4096 + dropout; full7 2048 (+ the
    TwoStreamNet's dropout before the softmax layer). ReLU after every layer.
    """

    def __init__(self, in_channels: int, input_size: int, second_norm: bool, dropout: float):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, 7, stride=2), nn.ReLU(inplace=True), nn.LocalResponseNorm(**_LRN),
            nn.MaxPool2d(2),
            nn.Conv2d(96, 256, 5, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.LocalResponseNorm(**_LRN) if second_norm else nn.Identity(),
            nn.MaxPool2d(2),
            nn.Conv2d(256, 512, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        with torch.no_grad():
            try:
                n = self.features(torch.zeros(1, in_channels, input_size, input_size)).numel()
            except RuntimeError as e:
                raise ValueError(f"cnn_m_2048 needs a crop of at least 64 pixels, got {input_size}") from e
        self.full = nn.Sequential(
            nn.Flatten(), nn.Linear(n, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 2048), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, 2048) full7 activations."""
        return self.full(self.features(x))


class TinyNet(nn.Module):
    """A three-layer ConvNet without batch-norm for tests and the CPU demo (a few thousand weights)."""

    def __init__(self, in_channels: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_features = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, 4 * width)."""
        return self.features(x)


def _torchvision_trunk(name: str) -> Callable[[], tuple[nn.Module, int, str, str]]:
    """Builder of a torchvision backbone: (model with its ImageNet head, feature size, first conv, head path)."""
    def build() -> tuple[nn.Module, int, str, str]:
        import torchvision  # heavy: loaded only when a torchvision arch is asked for
        m = getattr(torchvision.models, name)(weights=None)
        if name.startswith("resnet"):
            return m, m.fc.in_features, "conv1", "fc"
        return m, m.classifier[-1].in_features, "features.0", "classifier.6"  # vgg
    return build


# arch -> builder; an unknown name lists these
TORCHVISION_ARCHS = {name: _torchvision_trunk(name) for name in ("resnet18", "resnet50", "vgg16")}
ARCHS = ("cnn_m_2048", "tiny", *TORCHVISION_ARCHS)


def _get(module: nn.Module, path: str) -> nn.Module:
    return module.get_submodule(path)


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, name, value)


def cross_modality_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of an RGB conv taking ``in_channels`` inputs: weights averaged over colour, replicated per channel.

    This is the cross-modality initialisation of temporal networks (Wang et al., TSN): the flow planes all start
    from the RGB filters' mean, so the pre-trained responses keep their scale per input plane.
    """
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)  # (out, 1, k, k)
        new.weight.copy_(mean.expand(-1, in_channels, -1, -1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a local file: a plain state dict, or a checkpoint holding one under 'model'/'state_dict'."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: weights file not found; give a local .pth file (nothing is downloaded)")
    again = ("give a complete copy of the weights file (--pretrained takes a state dict, e.g. ImageNet weights; a "
             "checkpoint of `train fit` goes to --init-from)")
    obj = read_torch_file(path, again, weights_only=True, legacy=True)  # CRCs checked: a flipped bit trained
    for k in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict (names -> tensors) but a {type(obj).__name__}; {again}")
    if obj and all(isinstance(k, str) and k.startswith(_WRAPPED) for k in obj):
        obj = {k[len(_WRAPPED):]: v for k, v in obj.items()}  # saved through DDP (refused before, as another arch)
    return obj


_WRAPPED = "module."  # what (Distributed)DataParallel puts before every name of the net it wraps


def _load_backbone(model: nn.Module, state: dict, head: str, path: str) -> None:
    """Load weights into a model, allowing only the classifier ``head`` to be missing or of another size."""
    own = model.state_dict()
    keep = {k: v for k, v in state.items()
            if not (k.startswith(head + ".") and (k not in own or own[k].shape != v.shape))}
    missing = [k for k in own if k not in keep and not k.startswith(head + ".")]
    unexpected = [k for k in keep if k not in own]
    bad = [k for k in keep if k in own and own[k].shape != keep[k].shape]
    if missing or unexpected or bad:
        raise ValueError(f"{path}: weights do not fit this architecture (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}, wrong shape {bad[:3]}); check --arch")
    model.load_state_dict(keep, strict=False)


def weights_arch(state: dict[str, torch.Tensor]) -> str | None:
    """The torchvision arch of ``TORCHVISION_ARCHS`` whose trunk (all but its ImageNet head) the state dict
    fits exactly, or None. Built on the meta device: no memory, no weights."""
    for name, build in TORCHVISION_ARCHS.items():
        with torch.device("meta"):
            model, _, _, head = build()
        own = {k: v.shape for k, v in model.state_dict().items() if not k.startswith(head + ".")}
        theirs = {k: v.shape for k, v in state.items() if not k.startswith(head + ".")}
        if own == theirs:
            return name
    return None


def build_model(arch: str, num_classes: list[int], in_channels: int, input_size: int = 224,
                dropout: float = 0.5, temporal: bool = False, pretrained: str | None = None) -> TwoStreamNet:
    """Build a two-stream ConvNet.

    Args:
        arch: one of ``ARCHS``.
        num_classes: classes of each dataset (one head each).
        in_channels: 3 (RGB) or 2L (flow stack).
        input_size: the crop size (CNN-M sizes full6 from it).
        dropout: dropout ratio before each fully connected layer (the paper: 0.5 or 0.9).
        temporal: the temporal net (CNN-M drops its second normalisation layer).
        pretrained: local weights of the same arch for RGB input; a temporal net gets the cross-modality init.
    Raises:
        ValueError: unknown arch, or weights that do not fit.
    """
    if arch == "cnn_m_2048":
        trunk = CNNM2048(3 if pretrained else in_channels, input_size, second_norm=not temporal, dropout=dropout)
        features, first, head = 2048, "features.0", None
    elif arch == "tiny":
        trunk = TinyNet(3 if pretrained else in_channels)
        features, first, head = trunk.out_features, "features.0", None
    elif arch in TORCHVISION_ARCHS:
        if arch.startswith("vgg") and input_size < 32:  # five 2x poolings: a torch error in the first batch
            raise ValueError(f"{arch} needs a crop of at least 32 pixels, got {input_size}")
        trunk, features, first, head = TORCHVISION_ARCHS[arch]()
        if arch.startswith("vgg"):  # fc6's dropout stays in the trunk; fc7's is the head's (below): a frozen
            trunk.classifier[2].p = dropout  # trunk is in eval mode, and the last layer had trained without any
            trunk.classifier[5] = nn.Identity()
    else:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if pretrained:
        state = load_state(pretrained)
        try:
            if head is None:  # our own trunks: a TwoStreamNet checkpoint or a bare trunk
                state = {k[len("trunk."):]: v for k, v in state.items() if k.startswith("trunk.")} or state
                _load_backbone(trunk, state, "__none__", str(pretrained))
            else:
                _load_backbone(trunk, state, head, str(pretrained))
        except ValueError as e:
            guess = weights_arch(state)
            if guess is not None and guess != arch:
                raise ValueError(f"{pretrained}: these are {guess} weights, not {arch}: add --arch {guess}") from e
            raise
    if head is not None:
        _set(trunk, head, nn.Identity())  # the ImageNet classifier becomes our per-dataset heads
    conv = _get(trunk, first)
    if conv.in_channels != in_channels:
        _set(trunk, first, cross_modality_conv(conv, in_channels) if pretrained else
             nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       bias=conv.bias is not None))
    return TwoStreamNet(trunk, features, list(num_classes), dropout)  # the paper's ratio before the last layer
