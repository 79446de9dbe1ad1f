"""Exact inference rewrites of a (dense or pruned) FRNet.

- Every stride-2 `ConvTranspose2d(k=3, p=1, output_padding=1)` can become a sub-pixel convolution:
  zero-pad right/bottom by 1, one 2x2 conv producing 4x the channels, `pixel_shuffle(2)`.
  Derivation (1-D, y = ConvT(x), taps w[0..2]): y[2m] = w[1] x[m] and y[2m+1] = w[2] x[m] + w[0] x[m+1];
  so output phase 0 uses tap w[1] at offset 0, phase 1 uses w[2] at offset 0 and w[0] at offset +1.
  It removes the transposed conv's scatter but multiplies 16 taps where 9 are non-zero (16/9 the MACs).
  It measured slower than the channels_last ConvTranspose2d both on the 2-core CPU (oneDNN) and on an
  H200 (cuDNN), so it is off by default; see docs/results/inference_speed.md.
- ReLU/LeakyReLU in place (no fresh 64-channel HR-sized buffers to allocate and page in), channels_last
  weights/activations, `torch.inference_mode`, optional `torch.compile`.
- On CUDA, each step is captured once per input shape as a CUDA graph and replayed: a frame is one
  launch instead of ~100 kernel launches from Python, which otherwise bound small frames on a fast GPU.
  The replay runs the same kernels on the same inputs, so outputs are unchanged.
- `half=True` (CUDA only): SRNet runs in fp16; FNet, the flow upsampling and the warp stay in fp32 so
  that sampling positions are not quantised. This is not exact: `half_precision_error` measures it.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError
from tecogan_plugin.nets import FrameStepper, FRNet, infer_sequence
from tecogan_plugin.ops import BicubicUpsampler

# output phase -> [(input offset, ConvT tap)] for stride 2, kernel 3, padding 1, output_padding 1
_PHASE_TAPS = {0: [(0, 1)], 1: [(0, 2), (1, 0)]}


class SubPixelConvTranspose2d(nn.Module):
    """A stride-2, k3, p1, op1 ConvTranspose2d rewritten as pad + 2x2 conv (4*out channels) + pixel_shuffle."""

    def __init__(self, convt: nn.ConvTranspose2d) -> None:
        super().__init__()
        if not is_rewritable(convt):
            raise ConfigError(f"cannot rewrite {convt} as a sub-pixel convolution (needs k3, s2, p1, op1, groups 1)")
        w = convt.weight.detach()  # (in, out, 3, 3)
        cin, cout = w.shape[:2]
        kernel = w.new_zeros(cout, 2, 2, cin, 2, 2)  # (out, phase_y, phase_x, in, dy, dx)
        for a, rows in _PHASE_TAPS.items():
            for b, cols in _PHASE_TAPS.items():
                for dy, ky in rows:
                    for dx, kx in cols:
                        kernel[:, a, b, :, dy, dx] = w[:, :, ky, kx].t()
        self.conv = nn.Conv2d(cin, 4 * cout, 2, bias=convt.bias is not None, device=w.device, dtype=w.dtype)
        self.conv.weight.data.copy_(kernel.reshape(4 * cout, cin, 2, 2))
        if convt.bias is not None:
            self.conv.bias.data.copy_(convt.bias.detach().repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(F.pad(x, (0, 1, 0, 1))), 2)


def is_rewritable(m: nn.Module) -> bool:
    """True for the ConvTranspose2d shape TecoGAN's conv_up uses."""
    return (
        isinstance(m, nn.ConvTranspose2d)
        and m.kernel_size == (3, 3) and m.stride == (2, 2) and m.padding == (1, 1)
        and m.output_padding == (1, 1) and m.dilation == (1, 1) and m.groups == 1
    )


def rewrite_conv_transpose(model: nn.Module) -> int:
    """Replace every rewritable ConvTranspose2d in place; returns how many were replaced."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_rewritable(child):
                setattr(parent, name, SubPixelConvTranspose2d(child))
                count += 1
    return count


def _cast_inputs(dtype: torch.dtype) -> Callable:
    def hook(module: nn.Module, args: tuple) -> tuple:
        return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)

    return hook


def _output_to_float(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def inplace_activations(model: nn.Module) -> None:
    """Make ReLU/LeakyReLU in place: in FRNet each one only consumes a conv output nobody else reads."""
    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
            m.inplace = True


class CudaGraphStep:
    """Runs `step(*tensors)` by replaying a CUDA graph captured for each new set of input shapes.

    Inputs are copied into the graph's static buffers and the output is cloned out, so callers may
    keep or feed back results freely. Each captured shape keeps its own memory pool on the device."""

    def __init__(self, step: Callable[..., torch.Tensor], warmup: int = 2) -> None:
        self.step = step
        self.warmup = warmup
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        key = tuple((a.shape, a.dtype, a.stride(), a.device) for a in args)
        if key not in self.graphs:
            self.graphs[key] = self._capture(args)
        graph, inputs, output = self.graphs[key]
        for static, new in zip(inputs, args):
            static.copy_(new)
        graph.replay()
        return output.clone()

    def _capture(self, args: tuple[torch.Tensor, ...]):
        inputs = [a.clone() for a in args]
        side = torch.cuda.Stream(args[0].device)
        side.wait_stream(torch.cuda.current_stream(args[0].device))
        with torch.cuda.stream(side):  # cuDNN picks its algorithms and the allocator settles outside the capture
            for _ in range(self.warmup):
                self.step(*inputs)
        torch.cuda.current_stream(args[0].device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self.step(*inputs)
        return graph, inputs, output


class FastFRNet(nn.Module):
    """Inference-only wrapper: same call signature and `scale` as FRNet, plus streaming helpers."""

    def __init__(self, model: nn.Module, *, channels_last: bool, compile: bool, cuda_graph: bool) -> None:
        super().__init__()
        self.model = model
        self.scale: int = model.scale
        self.channels_last = channels_last
        self._run: Callable[..., torch.Tensor] = torch.compile(model) if compile else model
        self._graphed = CudaGraphStep(self._run) if cuda_graph else None

    def forward(self, *args: Any) -> torch.Tensor:
        args = self._formatted(args)
        with torch.inference_mode():
            if self._graphed is not None and args[0].is_cuda:
                return self._graphed(*args)
            return self._run(*args)

    def eager(self, *args: Any) -> torch.Tensor:
        """One step without graph replay (what a memory probe should measure: no graph is captured)."""
        with torch.inference_mode():
            return self._run(*self._formatted(args))

    def _formatted(self, args: tuple) -> tuple:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return tuple(a.contiguous(memory_format=fmt) if isinstance(a, torch.Tensor) and a.dim() == 4 else a
                     for a in args)

    def infer_sequence(self, lr_frames: Iterable[Any], pad_mode: str = "reflect",
                       num_pad_front: int = 5) -> Iterator[np.ndarray]:
        """Stream uint8 frames exactly like `FRNet.infer_sequence`."""
        return infer_sequence(self, lr_frames, pad_mode=pad_mode, num_pad_front=num_pad_front)


def make_fast(
    model: nn.Module, *, channels_last: bool = True, compile: bool = False, half: bool = False,
    subpixel: bool = False, cuda_graph: bool | None = None,
) -> FastFRNet:
    """An inference copy of `model` (FRNet, dense or pruned) with the exact rewrites; `model` is untouched.

    `cuda_graph=None` replays CUDA graphs when the model is on CUDA and not compiled.
    fp32 results equal the plain model's within float rounding (tested <= 1e-4).
    """
    fast = copy.deepcopy(model).eval().requires_grad_(False)
    params = list(fast.parameters())
    on_cuda = bool(params) and params[0].device.type == "cuda"
    if cuda_graph is None:
        cuda_graph = on_cuda and not compile
    if cuda_graph and not on_cuda:
        raise ConfigError("cuda_graph=True needs the model on a CUDA device")
    if subpixel:
        rewrite_conv_transpose(fast)
    inplace_activations(fast)
    if half:
        if not isinstance(fast, FRNet):
            raise ConfigError(f"half=True is defined for FRNet (fp16 SRNet), got {type(model).__name__}")
        if not on_cuda:
            raise ConfigError("half=True needs the model on a CUDA device (fp16 convolutions on CPU are slow and inexact)")
        fast.srnet.half()
        if isinstance(fast.upsample_func, BicubicUpsampler):  # shared with FRNet's flow upsampling: keep fp32 taps
            fast.upsample_func.float()
        fast.srnet.register_forward_pre_hook(_cast_inputs(torch.float16))
        fast.srnet.register_forward_hook(_output_to_float)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return FastFRNet(fast, channels_last=channels_last, compile=compile, cuda_graph=cuda_graph)


def half_precision_error(model: FRNet, lr_frames: torch.Tensor) -> dict[str, float]:
    """Max and mean |fp16 fast - fp32 plain| over a recurrent run on (T, 3, h, w) frames in [0, 1].

    The recurrence feeds each output back, so the error is measured over the whole run, not one step.
    """
    device = next(model.parameters()).device
    plain, fast = FrameStepper(model.eval()), FrameStepper(make_fast(model, half=True), device=device)
    max_err, total = 0.0, 0.0
    for frame in lr_frames:
        diff = (plain.step(frame) - fast.step(frame)).abs()
        max_err, total = max(max_err, diff.max().item()), total + diff.mean().item()
    return {"max_abs": max_err, "mean_abs": total / max(len(lr_frames), 1)}


def fast_runner(model: nn.Module) -> Callable[[Any], torch.Tensor]:
    """The `tecogan.fast` latency runner: one recurrent step of `make_fast(model)` (channels_last,
    in-place activations, CUDA graph replay on CUDA), i.e. how `prunekit upscale` runs the model."""
    fast = make_fast(model)

    def step(inputs: Any) -> torch.Tensor:
        return fast(*inputs) if isinstance(inputs, (tuple, list)) else fast(inputs)

    return step


fast_runner.memory_format = torch.channels_last  # type: ignore[attr-defined]  # single layers are timed so too


def register(registries) -> None:
    """The latency runner `tecogan.fast` (when the core has a runner registry)."""
    runners = getattr(registries, "runners", None)
    if runners is not None:
        runners.register("tecogan.fast", fast_runner)
