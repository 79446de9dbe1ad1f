"""A cheaper SRNet tail: the sub-pixel head that replaces the HR-resolution upsampler.

TecoGAN's SRNet ends in two stride-2 ConvTranspose2d + ReLU (at 2x and 4x resolution) and a 3x3
conv (64 -> 3) at HR resolution: about half of FRNet's MACs at 134x320. The sub-pixel head does
the whole tail at LR resolution: one conv (nf -> 3*s^2, kernel k) followed by PixelShuffle(s), as
EGVSR does. It is initialised to imitate the original tail: a ridge least-squares fit from the
k x k LR neighbourhood of the trunk features to the original tail's HR output, pixel-unshuffled to
3*s^2 values per LR pixel (the exact inverse of the head's PixelShuffle), then healed by
fine-tuning. Registered as the replacement `tecogan.subpixel_head` for the paths
`["srnet.conv_up", "srnet.conv_out"]` (the tail becomes head + identity).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError, InputShapeError

REPLACEMENT_NAME = "tecogan.subpixel_head"
TAIL_PATHS = ("srnet.conv_up", "srnet.conv_out")
KERNELS = (1, 3, 5, 7)


class SubPixelHead(nn.Module):
    """conv(nf -> out_nc*s^2, k x k, 'same' zero padding) + PixelShuffle(s): LR features -> HR image."""

    def __init__(self, nf: int, out_nc: int = 3, scale: int = 4, kernel: int = 3) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ConfigError(f"sub-pixel head: kernel must be one of {KERNELS}, got {kernel}")
        if scale < 1:
            raise ConfigError(f"sub-pixel head: scale must be >= 1, got {scale}")
        self.scale, self.kernel = scale, kernel
        self.conv = nn.Conv2d(nf, out_nc * scale * scale, kernel, 1, kernel // 2)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def tail_shape(conv_up: nn.Module, conv_out: nn.Module) -> tuple[int, int, int]:
    """(nf, out_nc, scale) of an upsampler (a stack of stride-2 ConvTranspose2d + activations) and the
    conv after it; ConfigError when they are not of that form."""
    ups = [m for m in conv_up.modules() if isinstance(m, nn.ConvTranspose2d)] if conv_up is not None else []
    if not ups or any(m.stride != (2, 2) for m in ups):
        raise ConfigError(f"{REPLACEMENT_NAME}: the first module must hold stride-2 ConvTranspose2d layers "
                          f"(SRNet's conv_up), got {type(conv_up).__name__}")
    if not isinstance(conv_out, nn.Conv2d) or conv_out.stride != (1, 1):
        raise ConfigError(f"{REPLACEMENT_NAME}: the second module must be a stride-1 Conv2d (SRNet's conv_out), "
                          f"got {type(conv_out).__name__}")
    return ups[0].in_channels, conv_out.out_channels, 2 ** len(ups)


def _rows(features: torch.Tensor, kernel: int) -> torch.Tensor:
    """(N, C, h, w) -> (N*h*w, C*k*k + 1) float64: each LR pixel's k x k neighbourhood (zero padded,
    channel-major like a Conv2d weight) and a constant 1 for the bias."""
    n, c, h, w = features.shape
    cols = F.unfold(features.double(), kernel, padding=kernel // 2)  # (N, C*k*k, h*w)
    rows = cols.transpose(1, 2).reshape(n * h * w, c * kernel * kernel)
    return torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)


def _targets(target: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, out_nc, s*h, s*w) -> (N*h*w, out_nc*s^2): the values one LR position's conv outputs hold."""
    packed = F.pixel_unshuffle(target.double(), scale)
    return packed.permute(0, 2, 3, 1).reshape(-1, packed.shape[1])


@torch.no_grad()
def fit_head(head: SubPixelHead, features: Iterable[torch.Tensor], targets: Iterable[torch.Tensor],
             ridge: float = 1e-2, chunk: int = 4096) -> dict[str, float]:
    """Set `head`'s weights to the ridge least-squares map from trunk features to the original tail's
    output. `features[i]` is (N, nf, h, w) (what the old upsampler received), `targets[i]` is
    (N, out_nc, s*h, s*w) (what the old tail returned). `ridge` is relative to the mean feature energy
    (the bias is not penalised). Returns the fit's statistics (rows used, training-set PSNR of the
    tail output assuming a unit range, relative residual)."""
    k, s = head.kernel, head.scale
    dim = head.conv.in_channels * k * k + 1
    out_dim = head.conv.out_channels
    gram = torch.zeros(dim, dim, dtype=torch.float64)
    cross = torch.zeros(dim, out_dim, dtype=torch.float64)
    energy = torch.zeros(out_dim, dtype=torch.float64)
    n_rows = 0
    for feat, target in zip(features, targets, strict=True):
        if feat.dim() != 4 or feat.shape[1] != head.conv.in_channels:
            raise InputShapeError(f"fit_head: features must be (N, {head.conv.in_channels}, h, w), "
                                  f"got {tuple(feat.shape)}")
        expected = (feat.shape[0], head.conv.out_channels // (s * s), s * feat.shape[2], s * feat.shape[3])
        if tuple(target.shape) != expected:
            raise InputShapeError(f"fit_head: target must be {expected} for features {tuple(feat.shape)}, "
                                  f"got {tuple(target.shape)}")
        x_all, y_all = _rows(feat.cpu(), k), _targets(target.cpu(), s)
        for start in range(0, x_all.shape[0], chunk):
            x, y = x_all[start:start + chunk], y_all[start:start + chunk]
            gram += x.T @ x
            cross += x.T @ y
            energy += (y * y).sum(0)
        n_rows += x_all.shape[0]
    if n_rows == 0:
        raise ConfigError("fit_head: no calibration features were given")
    diag = gram.diagonal()[:-1]
    penalty = torch.zeros(dim, dtype=torch.float64)
    penalty[:-1] = ridge * max(float(diag.mean()), 1e-12)
    solution = torch.linalg.solve(gram + torch.diag(penalty), cross)  # (dim, out_dim)
    weight = solution[:-1].T.reshape(head.conv.weight.shape)
    head.conv.weight.copy_(weight.to(head.conv.weight))
    head.conv.bias.copy_(solution[-1].to(head.conv.bias))
    # residual sum of squares from the normal equations: |Y|^2 - 2 tr(W'X'Y) + tr(W'X'XW)
    rss = float(energy.sum() - 2 * (solution * cross).sum() + (solution * (gram @ solution)).sum())
    mse = max(rss, 0.0) / (n_rows * out_dim)
    return {"rows": n_rows, "unknowns": dim, "train_psnr": 10 * math.log10(1.0 / max(mse, 1e-20)),
            "relative_residual": math.sqrt(max(rss, 0.0) / max(float(energy.sum()), 1e-20))}


def subpixel_tail(conv_up: nn.Module, conv_out: nn.Module, kernel: int = 3) -> SubPixelHead:
    """An (unfitted) head with the shape of the tail it replaces, on the tail's device and dtype."""
    nf, out_nc, scale = tail_shape(conv_up, conv_out)
    head = SubPixelHead(nf, out_nc, scale, kernel)
    return head.to(device=conv_out.weight.device, dtype=conv_out.weight.dtype)


def subpixel_head_replacement(modules: list[nn.Module], calib=None, kernel: int = 3,
                              ridge: float = 1e-2) -> list[nn.Module]:
    """The `tecogan.subpixel_head` replacement: [conv_up, conv_out] -> [SubPixelHead, Identity].

    With `calib` (a prunekit ReplacementCalibration of both paths), the head is fitted to what the
    tail produced; without it (replay on load) only the architecture is built."""
    if len(modules) != 2:
        raise ConfigError(f"{REPLACEMENT_NAME} replaces two modules jointly ({', '.join(TAIL_PATHS)}), "
                          f"got {len(modules)}")
    head = subpixel_tail(modules[0], modules[1], kernel)
    if calib is not None:
        up_path, out_path = calib.paths
        features = [args[0] for args in calib.inputs[up_path]]
        fit_head(head, features, calib.outputs[out_path], ridge=ridge)
    return [head, nn.Identity()]


def calibration_tail(model: nn.Module, inputs: Iterable[tuple[torch.Tensor, ...]]
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(features, tail outputs) of an FRNet's SRNet on each call `model(*x)` for x in `inputs`."""
    features: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    srnet = model.srnet
    hooks = [srnet.conv_up.register_forward_hook(lambda m, a, o: features.append(a[0].detach().cpu())),
             srnet.conv_out.register_forward_hook(lambda m, a, o: targets.append(o.detach().cpu()))]
    try:
        with torch.no_grad():
            for x in inputs:
                model(*x)
    finally:
        for h in hooks:
            h.remove()
    return features, targets


def replace_tail(model: nn.Module, kernel: int = 3, calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
                 ridge: float = 1e-2) -> dict[str, float]:
    """Swap an FRNet's SRNet tail for a sub-pixel head in place (without the core's plan machinery),
    fitted on `calibration` (FRNet step inputs) when given; returns the fit statistics."""
    stats: dict[str, float] = {}
    head = subpixel_tail(model.srnet.conv_up, model.srnet.conv_out, kernel)
    if calibration is not None:
        was_training = model.training
        model.eval()
        features, targets = calibration_tail(model, calibration)
        model.train(was_training)
        stats = fit_head(head, features, targets, ridge=ridge)
    model.srnet.conv_up, model.srnet.conv_out = head, nn.Identity()
    return stats


def has_subpixel_head(model: nn.Module) -> bool:
    """True when an FRNet's SRNet tail is a SubPixelHead."""
    return isinstance(getattr(getattr(model, "srnet", None), "conv_up", None), SubPixelHead)


def register(registries) -> None:
    """The replacement `tecogan.subpixel_head` (when the core has a replacement registry)."""
    replacements = getattr(registries, "replacements", None)
    if replacements is not None:
        replacements.register(REPLACEMENT_NAME, subpixel_head_replacement)
