"""Degradations that turn HR video into LR input: BD (Gaussian blur + decimation, the TecoGAN
reference) and BI (MATLAB imresize bicubic). Both work on float tensors in [0, 1] shaped (N,C,H,W)
or (N,T,C,H,W), on whatever device the tensor lives, so training can degrade on the GPU."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from prunekit.errors import DataError, InputShapeError

__all__ = [
    "gaussian_kernel",
    "bd_border",
    "bd_downsample",
    "bd_train_pair",
    "bi_downsample",
    "bicubic_weights",
]


def gaussian_kernel(sigma: float = 1.5, size: int | None = None) -> torch.Tensor:
    """The reference BD kernel: outer product of exp(-n^2 / (2 sigma^2)), normalised to sum 1.

    `size` defaults to 1 + 2*int(3*sigma) (9 for sigma 1.5). Returned as float64 (size, size)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if size is None:
        size = 1 + 2 * int(3 * sigma)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    n = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(n**2) / (2 * sigma**2))
    k = torch.outer(w, w)
    return k / k.sum()


def bd_border(sigma: float = 1.5) -> int:
    """Pixels of GT lost on each side by the unpadded (training) BD path: kernel size // 2."""
    return (1 + 2 * int(3 * sigma)) // 2


def _as_4d(x: torch.Tensor, what: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Flatten (N,T,C,H,W) to (N*T,C,H,W); remember the leading dims to restore them."""
    if x.dim() == 4:
        return x, x.shape[:1]
    if x.dim() == 5:
        return x.reshape(-1, *x.shape[2:]), x.shape[:2]
    raise InputShapeError(f"{what}: expected (N,C,H,W) or (N,T,C,H,W), got shape {tuple(x.shape)}")


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 frames become [0, 1] floats; float input is used as is."""
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise InputShapeError(f"expected a float tensor in [0, 1] or uint8, got dtype {x.dtype}")
    return x


def bd_downsample(hr: torch.Tensor, scale: int = 4, sigma: float = 1.5, pad: bool = True) -> torch.Tensor:
    """Blur each channel with `gaussian_kernel(sigma)` and keep every `scale`-th pixel.

    LR pixel i is the blur centred on HR pixel scale*i. With `pad` (test path) the input is
    reflect-padded by size//2 so the output is ceil(H/scale); without it (training path) the
    output is (H - size)//scale + 1, e.g. 136 -> 32 at x4."""
    x = _to_float(hr)
    x4, lead = _as_4d(x, "bd_downsample")
    k2 = gaussian_kernel(sigma)
    size = k2.shape[0]
    if pad:
        b = size // 2
        if min(x4.shape[-2:]) <= b:
            raise InputShapeError(f"bd_downsample: frame {tuple(x4.shape[-2:])} too small for reflect padding by {b}")
        x4 = F.pad(x4, (b, b, b, b), mode="reflect")
    elif min(x4.shape[-2:]) < size:
        raise InputShapeError(f"bd_downsample: frame {tuple(x4.shape[-2:])} smaller than the {size}x{size} kernel")
    # the kernel is an outer product, so blurring rows then columns equals the reference's 2-D
    # conv (up to rounding) at a ninth of the cost
    k1 = k2.sum(dim=0).to(device=x4.device, dtype=x4.dtype)
    n, c, h, w = x4.shape
    y = x4.reshape(n * c, 1, h, w)
    y = F.conv2d(y, k1.view(1, 1, size, 1), stride=(scale, 1))
    y = F.conv2d(y, k1.view(1, 1, 1, size), stride=(1, scale))
    return y.reshape(*lead, c, *y.shape[-2:])


def bd_train_pair(gt_clip: torch.Tensor, scale: int = 4, sigma: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-path BD: (LR, GT centre). A 136 px GT crop gives a 32 px LR (64 at x2) and the
    GT cropped by the kernel border to 128 px, aligned so LR pixel i sits on GT pixel scale*i.

    Accepts uint8 (as returned by TrainingClips) or float in [0, 1]; returns floats."""
    gt = _to_float(gt_clip)
    lr = bd_downsample(gt, scale=scale, sigma=sigma, pad=False)
    b = bd_border(sigma)
    gt_c = gt[..., b : gt.shape[-2] - b, b : gt.shape[-1] - b]
    return lr, gt_c


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys cubic convolution kernel (a = -0.5, MATLAB's choice)."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (a + 2) * ax3 - (a + 3) * ax2 + 1
    far = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return np.where(ax <= 1, near, np.where(ax < 2, far, 0.0))


def bicubic_weights(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The (out_len, in_len) matrix MATLAB's imresize applies along one axis (bicubic, antialias).

    Output pixel j (1-based) samples u = j/scale + 0.5*(1 - 1/scale); when downscaling the kernel
    is stretched by 1/scale (h(x) = scale*cubic(scale*x), width 4/scale). Taps falling outside
    the image are mirrored back (symmetric padding), weights are normalised per output pixel."""
    kernel_width = 4.0 / scale if scale < 1 else 4.0
    j = np.arange(1, out_len + 1, dtype=np.float64)
    u = j / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # symmetric boundary: position p (1-based) mirrors as ... 2 1 | 1 2 ... n | n n-1 ...
    period = 2 * in_len
    p = np.mod(idx - 1, period)
    p = np.where(p < in_len, p, period - 1 - p).astype(np.int64)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), taps)
    np.add.at(mat, (rows, p.ravel()), w.ravel())
    return mat


def bi_downsample(hr: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """MATLAB `imresize(img, 1/scale, 'bicubic')` with antialiasing, after a modcrop to a multiple
    of `scale` (as the reference's generate_lr_bi.m). Output is H//scale x W//scale, float, not
    clamped or rounded (round(255*x) and clip to match PNGs written by MATLAB)."""
    if scale < 1:
        raise DataError(f"bi_downsample: scale must be >= 1, got {scale}")
    x = _to_float(hr)
    x4, lead = _as_4d(x, "bi_downsample")
    h, w = (x4.shape[-2] // scale) * scale, (x4.shape[-1] // scale) * scale
    if h == 0 or w == 0:
        raise InputShapeError(f"bi_downsample: frame {tuple(x4.shape[-2:])} smaller than scale {scale}")
    x4 = x4[..., :h, :w]
    wh = torch.from_numpy(bicubic_weights(h, h // scale, 1.0 / scale)).to(x4.device, x4.dtype)
    ww = torch.from_numpy(bicubic_weights(w, w // scale, 1.0 / scale)).to(x4.device, x4.dtype)
    out = torch.einsum("ih,nchw,jw->ncij", wh, x4, ww)
    return out.reshape(*lead, *out.shape[1:])
