"""TecoGAN-PyTorch loss terms: Charbonnier (eps 1e-6), the LR warping loss, the VGG19 cosine feature
loss (after relu2_2, relu3_4, relu4_4 and relu5_4, on ImageNet-normalised input) and the
spatio-temporal discriminator's BCE-with-logits terms (the weights are the task's options:
`tecogan_plugin.train.TecoGANOptions`)."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from tecogan_plugin.ops import backward_warp

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG_LAYERS = (8, 17, 26, 35)  # relu2_2, relu3_4, relu4_4, relu5_4 of torchvision's vgg19().features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """mean sqrt((a - b)^2 + eps)."""
    return torch.sqrt((a - b) ** 2 + eps).mean()


def warping_loss(lr_prev: torch.Tensor, lr_curr: torch.Tensor, lr_flow: torch.Tensor) -> torch.Tensor:
    """Charbonnier between the previous LR frame warped by the estimated flow and the current one."""
    return charbonnier(backward_warp(lr_prev, lr_flow), lr_curr)


class VGGFeatureLoss(nn.Module):
    """Sum over four VGG19 ReLU outputs of 1 - mean channel-wise cosine similarity; VGG is frozen and
    the target's features are detached. Weights come only from disk (`prunekit.weights.find_weights`)."""

    def __init__(self, weights_path: str | os.PathLike | None = None) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        from prunekit.errors import CheckpointError, MissingWeightsError
        from prunekit.weights import find_weights, load_weights_only

        try:
            file = find_weights(VGG19_FILE, weights_path, what="the VGG19 feature loss (TecoGAN objective)",
                                url=VGG19_URL)
        except MissingWeightsError as exc:
            raise MissingWeightsError(f"{exc} Or switch the loss off with task.options.feature_loss: false.") from None
        features = make_layers(cfgs["E"])  # torchvision's vgg19().features, without the 120M-param classifier
        state = load_weights_only(file, "torchvision VGG19 checkpoint")
        if not isinstance(state, dict):
            raise CheckpointError(f"{file} is not a torchvision VGG19 state_dict: got {type(state).__name__}")
        mine = {k[len("features."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
        try:
            features.load_state_dict(mine)
        except RuntimeError as exc:
            raise CheckpointError(f"{file} is not a torchvision VGG19 state_dict: {exc}") from None
        self.features = features[: max(VGG_LAYERS) + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGGFeatureLoss":
        return super().train(False)  # always eval: VGG is a fixed feature extractor

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_LAYERS:
                out.append(x)
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred/target: (N, 3, H, W) in [0, 1]."""
        with torch.no_grad():
            real = self._feats(target)
        fake = self._feats(pred)
        return sum(1 - F.cosine_similarity(f, r.detach(), dim=1, eps=1e-8).mean() for f, r in zip(fake, real))


def d_distance(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """mean log(sigmoid(D(real)) + 1e-8) - mean log(sigmoid(D(fake)) + 1e-8): how well D separates them."""
    return torch.log(torch.sigmoid(real_logit) + 1e-8).mean() - torch.log(torch.sigmoid(fake_logit) + 1e-8).mean()


def d_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
            + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))


def g_gan_loss(fake_logit: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
