"""LPIPS (AlexNet, linear calibration v0.1) through the `lpips` package, batched on a device.

The linear-layer weights ship inside the lpips wheel; the AlexNet backbone is torchvision's ImageNet
file, which cannot be downloaded here. The package is therefore built with a random trunk (no
download is attempted) and the trunk is loaded from `prunekit.weights.find_weights`.

Each frame's normalised AlexNet features are computed once and reused for LPIPS(target, output) and
for both tLP terms, which is where most of the speed-up over the per-pair official loop comes from;
the distances are the package's own operations in its own order."""

from __future__ import annotations

import os
import warnings

import lpips
import torch
import torchvision

from prunekit.errors import CheckpointError
from prunekit.weights import find_weights, load_weights_only

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
WHAT = "LPIPS/tLP (torchvision ImageNet AlexNet backbone)"

Features = list[torch.Tensor]


def find_alexnet(path: str | os.PathLike | None = None):
    """The backbone file (explicit path or torch hub cache); MissingWeightsError if absent."""
    return find_weights(ALEXNET_FILE, path, what=WHAT, url=ALEXNET_URL)


def _load_trunk(model: lpips.LPIPS, file) -> None:
    state = load_weights_only(file, "torchvision AlexNet checkpoint")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    reference = torchvision.models.alexnet(weights=None)
    try:
        reference.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{file}: not a torchvision AlexNet state_dict ({exc})") from None
    # lpips splits alexnet.features into slice1..slice5, keeping the original child indices.
    for slice_ in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for index, child in slice_.named_children():
            child.load_state_dict(reference.features[int(index)].state_dict())


class LpipsScorer:
    """LPIPS on uint8 frames: `features` once per frame, then cheap `distance` between any pairs."""

    def __init__(self, backbone_file, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        with warnings.catch_warnings():
            # lpips builds its random trunk with torchvision's deprecated `pretrained=False`.
            warnings.filterwarnings("ignore", message=".*(pretrained|weight enum)", category=UserWarning)
            model = lpips.LPIPS(pretrained=True, net="alex", version="0.1", pnet_rand=True, verbose=False)
        _load_trunk(model, backbone_file)
        # channels_last runs AlexNet ~25% faster on CPU; LPIPS values move by ~1e-7 relative.
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        # uint8 -> [-1, 1] exactly as x / 127.5 - 1 computed in float64 and stored as float32.
        lut = torch.arange(256, dtype=torch.float64) / 127.5 - 1
        self._lut = lut.to(torch.float32).to(self.device)

    def to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) uint8 -> float32 in [-1, 1] on the scorer's device."""
        return self._lut[frames.to(self.device).long()]

    @torch.no_grad()
    def features(self, frames: torch.Tensor) -> Features:
        """Unit-normalised AlexNet features (5 layers) of (N,3,H,W) uint8 frames."""
        x = self.model.scaling_layer(self.to_input(frames)).contiguous(memory_format=torch.channels_last)
        # cuDNN would otherwise use TF32 on recent GPUs (about 1e-3 relative error in the features).
        cudnn = torch.backends.cudnn
        with cudnn.flags(cudnn.enabled, cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False):
            return [lpips.normalize_tensor(f) for f in self.model.net(x)]

    @torch.no_grad()
    def distance(self, a: Features, b: Features) -> torch.Tensor:
        """LPIPS between the frames of `a` and `b` pairwise, float32 (N,)."""
        val = 0
        for kk, lin in enumerate(self.model.lins):
            val = val + lpips.spatial_average(lin((a[kk] - b[kk]) ** 2), keepdim=True)
        return val.flatten()


def lpips_from_distance(d: torch.Tensor) -> torch.Tensor:
    """LPIPS is the distance d(target, output) itself."""
    return d


def tlp_from_distances(d_target: torch.Tensor, d_output: torch.Tensor) -> torch.Tensor:
    """tLP100: 100 |d(previous target, target) - d(previous output, output)|."""
    return (d_target - d_output).abs() * 100.0
