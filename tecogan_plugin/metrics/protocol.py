"""The official TecoGAN evaluation protocol's shared rules: which frames count, the border crop,
the size alignment of output and target, PNG-equivalent quantisation and the Y channel.

Every metric module builds on these, so a rule lives in exactly one place. This module and the other
CPU metric modules that worker processes load (psnr, ssim, tof, frame_jobs) must not import torch,
directly or through `prunekit` (whose package init imports it): each spawned worker would then need
seconds to start instead of about one. Errors are therefore imported where they are raised."""

from __future__ import annotations

import numpy as np

CUT_FRAMES = 2
"""Frames skipped at each end of a sequence by the official script."""

Y_WEIGHTS = (0.256788235294118, 0.504129411764706, 0.097905882352941)
"""BT.601 studio-swing luma weights on the 0-255 scale (the constants of the official script)."""
Y_OFFSET = 16


def crop_8x8_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(h, w, y, x) of the official centred crop: a multiple of 32 that leaves at least 8 px
    (16 px in total) of border per axis. Raises DataError when nothing would be left."""

    def side(n: int) -> int:
        k = (n // 32) * 32
        while k > n - 16:
            k -= 32
        return k

    h, w = side(height), side(width)
    if h <= 0 or w <= 0:
        from prunekit.errors import DataError

        raise DataError(
            f"frame size {width}x{height} is too small for the official border crop "
            f"(needs at least 48 px per side, got crop {max(w, 0)}x{max(h, 0)})"
        )
    return h, w, (height - h) // 2, (width - w) // 2


def crop_8x8(img: np.ndarray) -> np.ndarray:
    """Apply the official border crop to an (H,W,...) array (an image or a flow field)."""
    h, w, y, x = crop_8x8_box(img.shape[0], img.shape[1])
    return img[y : y + h, x : x + w]


def crop_8x8_nchw(frames):
    """The same crop on the last two axes of an (N,C,H,W) tensor or array."""
    h, w, y, x = crop_8x8_box(frames.shape[-2], frames.shape[-1])
    return frames[..., y : y + h, x : x + w]


def evaluated_frames(n_frames: int, cut_frames: int = CUT_FRAMES) -> range:
    """Indices i in [cut, N - cut): the frames the spatial metrics score. Temporal metrics score
    the same frames except the first of them (they need the previous evaluated frame)."""
    return range(cut_frames, n_frames - cut_frames)


def check_length(name: str, n_frames: int, cut_frames: int = CUT_FRAMES) -> None:
    """A sequence must keep at least one frame after cutting `cut_frames` from each end."""
    if n_frames <= 2 * cut_frames:
        from prunekit.errors import DataError

        raise DataError(
            f"sequence {name!r} has {n_frames} frame(s); the protocol skips {cut_frames} at each end, "
            f"so at least {2 * cut_frames + 1} are needed for PSNR/SSIM/LPIPS and "
            f"{2 * cut_frames + 2} for tOF/tLP"
        )


def common_size(name: str, pred_hw: tuple[int, int], gt_hw: tuple[int, int], max_crop: int) -> tuple[int, int]:
    """The size both sequences are cropped to (top-left): the smaller of each side.

    The official script crops a larger output to the target (super-resolving a target whose side is
    not a multiple of the scale gives a slightly larger output); TecoGAN-PyTorch's copy also crops a
    larger target to the output. Both are done here. A difference of more than `max_crop` pixels on a
    side is refused: it means the wrong folders (e.g. LR frames) were paired, not a rounding remainder.
    """
    (ph, pw), (gh, gw) = pred_hw, gt_hw
    if abs(ph - gh) > max_crop or abs(pw - gw) > max_crop:
        from prunekit.errors import DataError

        raise DataError(
            f"sequence {name!r}: output frames are {pw}x{ph} but target frames are {gw}x{gh}; "
            f"sizes may differ by at most {max_crop} px per side (top-left crop), got "
            f"{abs(pw - gw)} x {abs(ph - gh)}"
        )
    return min(ph, gh), min(pw, gw)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) RGB on the 0-255 scale -> float64 (H,W) BT.601 luma, not rounded."""
    flat = rgb.reshape(-1, 3).astype(np.float32)
    y = np.dot(flat, np.asarray(Y_WEIGHTS, dtype=np.float64)) + Y_OFFSET
    return y.reshape(rgb.shape[:2])
