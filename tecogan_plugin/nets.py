"""TecoGAN generator (FRNet = FNet + SRNet) and spatio-temporal discriminator.

Module names, registration order, parameter shapes and buffers follow the published
TecoGAN-PyTorch layout, so its generator checkpoints load with `strict=True` (see
docs/guide/tecogan-networks.md). Inference semantics (flow padding, warm-up, uint8 rule,
float feedback) follow the same implementation so outputs match it for the same weights.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunekit.errors import ConfigError, InputShapeError
from prunekit.spec import ModelEntry, ModelSpec, TensorInput, attach, tensor
from tecogan_plugin.ops import backward_warp, get_upsampling_func, pad_flow, space_to_depth

PAD_MODES = ("reflect", "replicate")


def _conv3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=bias)


def _check_scale(scale: int) -> int:
    if scale < 2 or scale & (scale - 1):
        raise ConfigError(f"scale must be a power of two >= 2 (2 or 4 in published models), got {scale}")
    return int(math.log2(scale))


class FNet(nn.Module):
    """Flow estimator at LR resolution: flow (N, 2, 8*floor(h/8), 8*floor(w/8)) in (-24, 24) pixels.

    The flow maps current -> previous: sampling the previous frame at p + flow(p) aligns it to the current.
    """

    def __init__(self, in_nc: int = 3) -> None:
        super().__init__()

        def enc(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                _conv3(cin, cout), nn.LeakyReLU(0.2), _conv3(cout, cout), nn.LeakyReLU(0.2), nn.MaxPool2d(2, 2)
            )

        def dec(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(_conv3(cin, cout), nn.LeakyReLU(0.2), _conv3(cout, cout), nn.LeakyReLU(0.2))

        self.encoder1 = enc(2 * in_nc, 32)
        self.encoder2 = enc(32, 64)
        self.encoder3 = enc(64, 128)
        self.decoder1 = dec(128, 256)
        self.decoder2 = dec(256, 128)
        self.decoder3 = dec(128, 64)
        self.flow = nn.Sequential(_conv3(64, 32), nn.LeakyReLU(0.2), _conv3(32, 2))

    def forward(self, x_curr: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        out = self.encoder3(self.encoder2(self.encoder1(torch.cat([x_curr, x_prev], dim=1))))
        for decoder in (self.decoder1, self.decoder2, self.decoder3):
            out = F.interpolate(decoder(out), scale_factor=2, mode="bilinear", align_corners=False)
        return torch.tanh(self.flow(out)) * 24.0


class ResidualBlock(nn.Module):
    """conv-ReLU-conv plus identity; no BN, no scaling (a removable pruning unit)."""

    def __init__(self, nf: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3(nf, nf), nn.ReLU(), _conv3(nf, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x


class SRNet(nn.Module):
    """Reconstruction net: conv_in(cat[lr, S2D(warped hr_prev)]) -> resblocks -> conv_up -> conv_out, + U(lr)."""

    def __init__(
        self,
        in_nc: int = 3,
        out_nc: int = 3,
        nf: int = 64,
        nb: int = 10,
        scale: int = 4,
        upsample_func: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        n_up = _check_scale(scale)
        if nb < 0:
            raise ConfigError(f"nb (number of residual blocks) must be >= 0, got {nb}")
        self.scale = scale
        self.conv_in = nn.Sequential(_conv3((scale**2 + 1) * in_nc, nf), nn.ReLU())
        self.resblocks = nn.Sequential(*[ResidualBlock(nf) for _ in range(nb)])
        up: list[nn.Module] = []
        for _ in range(n_up):
            up += [nn.ConvTranspose2d(nf, nf, 3, 2, 1, output_padding=1), nn.ReLU()]
        self.conv_up = nn.Sequential(*up)
        self.conv_out = _conv3(nf, out_nc)
        self.upsample_func = upsample_func if upsample_func is not None else get_upsampling_func(scale, "BD")

    def forward(self, lr_curr: torch.Tensor, hr_prev_tran: torch.Tensor) -> torch.Tensor:
        out = self.conv_in(torch.cat([lr_curr, hr_prev_tran], dim=1))
        out = self.conv_out(self.conv_up(self.resblocks(out)))
        return out + self.upsample_func(lr_curr)


class FRNet(nn.Module):
    """Frame-recurrent generator. `forward` is one recurrent step (what analysis/profiling sees)."""

    def __init__(
        self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 10, scale: int = 4, degradation: str = "BD"
    ) -> None:
        super().__init__()
        _check_scale(scale)
        self.scale = scale
        self.degradation = degradation
        # registration order (upsample_func, fnet, srnet) matches the published state_dict
        self.upsample_func = get_upsampling_func(scale, degradation)
        self.fnet = FNet(in_nc)
        self.srnet = SRNet(in_nc, out_nc, nf, nb, scale, self.upsample_func)
        # the model describes itself, so `pk.save` records how to rebuild it however it was made
        attach(self, frnet_spec(in_nc=in_nc, out_nc=out_nc, nf=nf, nb=nb, scale=scale, degradation=degradation))

    def forward(self, lr_curr: torch.Tensor, lr_prev: torch.Tensor, hr_prev: torch.Tensor) -> torch.Tensor:
        return self.step(lr_curr, lr_prev, hr_prev)

    def step(self, lr_curr: torch.Tensor, lr_prev: torch.Tensor, hr_prev: torch.Tensor) -> torch.Tensor:
        """One recurrent step: (N,3,h,w), (N,3,h,w), (N,3,sh,sw) -> (N,3,sh,sw), unclamped."""
        h, w = lr_curr.shape[-2:]
        s = self.scale
        if hr_prev.shape[-2:] != (s * h, s * w):
            raise InputShapeError(
                f"FRNet.step: hr_prev is {tuple(hr_prev.shape[-2:])}, expected {(s * h, s * w)} for LR {h}x{w} at x{s}"
            )
        if h < 8 or w < 8:
            raise InputShapeError(f"FRNet.step: LR frames must be at least 8x8, got {h}x{w}")
        lr_flow = pad_flow(self.fnet(lr_curr, lr_prev), h, w)
        hr_flow = s * self.upsample_func(lr_flow)
        hr_prev_warp = backward_warp(hr_prev, hr_flow)
        return self.srnet(lr_curr, space_to_depth(hr_prev_warp, s))

    def forward_sequence(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training forward over (N, T, C, h, w) with h, w multiples of 8; gradients flow through the recurrence.

        Returns `hr` (N,T,C,sh,sw), `hr_flow` (N,T-1,2,sh,sw), and, flattened over (N, T-1) pairs for the
        warping loss, `lr_flow` (N*(T-1),2,h,w), `lr_prev` and `lr_curr` (N*(T-1),C,h,w).
        """
        if lr.dim() != 5:
            raise InputShapeError(f"FRNet.forward_sequence expects (N, T, C, h, w), got shape {tuple(lr.shape)}")
        n, t, c, h, w = lr.shape
        if h % 8 or w % 8:
            raise InputShapeError(f"FRNet.forward_sequence: LR size {h}x{w} must be a multiple of 8")
        s = self.scale
        lr_prev = lr[:, :-1].reshape(n * (t - 1), c, h, w)
        lr_curr = lr[:, 1:].reshape(n * (t - 1), c, h, w)
        if t > 1:
            lr_flow = self.fnet(lr_curr, lr_prev)
            hr_flow = (s * self.upsample_func(lr_flow)).view(n, t - 1, 2, s * h, s * w)
        else:
            lr_flow = lr.new_zeros(0, 2, h, w)
            hr_flow = lr.new_zeros(n, 0, 2, s * h, s * w)
        hr_prev = self.srnet(lr[:, 0], lr.new_zeros(n, s * s * c, h, w))
        hr = [hr_prev]
        for i in range(1, t):
            hr_prev_warp = backward_warp(hr_prev, hr_flow[:, i - 1])
            hr_prev = self.srnet(lr[:, i], space_to_depth(hr_prev_warp, s))
            hr.append(hr_prev)
        return {"hr": torch.stack(hr, dim=1), "hr_flow": hr_flow, "lr_flow": lr_flow, "lr_prev": lr_prev,
                "lr_curr": lr_curr}

    def infer_sequence(
        self, lr_frames: Iterable[Any], pad_mode: str = "reflect", num_pad_front: int = 5
    ) -> Iterator[np.ndarray]:
        """Stream uint8 HWC frames for an iterable of LR frames; see `infer_sequence`."""
        return infer_sequence(self, lr_frames, pad_mode=pad_mode, num_pad_front=num_pad_front)


def to_uint8(hr: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) or (3,H,W) float in [0,1] -> HWC uint8 as uint8(clip(round(255 x), 0, 255))."""
    img = hr.detach().float().reshape(hr.shape[-3:]).cpu().numpy().transpose(1, 2, 0)
    return np.uint8(np.clip(np.round(img * 255.0), 0, 255))


def frame_to_tensor(frame: Any, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """HWC uint8 numpy (divided by 255) or a (3,h,w)/(1,3,h,w) float tensor in [0,1] -> (1,3,h,w)."""
    if isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.dtype != np.uint8:
            raise InputShapeError(f"expected an HWC uint8 frame, got {frame.dtype} array of shape {frame.shape}")
        x = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).float() / 255.0
    elif isinstance(frame, torch.Tensor):
        if frame.dim() == 4 and frame.shape[0] == 1:
            frame = frame[0]
        if frame.dim() != 3:
            raise InputShapeError(f"expected a (3,h,w) frame tensor, got shape {tuple(frame.shape)}")
        x = frame
    else:
        raise InputShapeError(f"expected a numpy uint8 HWC frame or a (3,h,w) tensor, got {type(frame).__name__}")
    return x.unsqueeze(0).to(device=device, dtype=dtype)


class FrameStepper:
    """Recurrent state for streaming inference: feed LR frames one at a time, get unclamped HR tensors.

    Starts from lr_prev = 0, hr_prev = 0 (frame 0 then equals the training-time zero input); the float
    output, not the uint8 image, is fed back. `model` is any callable with FRNet's step signature and a
    `scale` attribute (an FRNet or a `make_fast` wrapper). Tiling/windowing belongs to the caller.
    """

    def __init__(self, model: Callable[..., torch.Tensor], device: torch.device | str | None = None) -> None:
        self.model = model
        self.scale: int = model.scale  # type: ignore[attr-defined]
        if device is None:
            params = list(model.parameters()) if isinstance(model, nn.Module) else []
            device = params[0].device if params else torch.device("cpu")
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget the recurrent state (start of a new sequence)."""
        self.lr_prev: torch.Tensor | None = None
        self.hr_prev: torch.Tensor | None = None

    def step(self, frame: Any) -> torch.Tensor:
        """Process one LR frame (HWC uint8 array or (3,h,w) float tensor); returns (1,3,sh,sw) float."""
        lr_curr = frame_to_tensor(frame, self.device)
        if self.lr_prev is None or self.lr_prev.shape != lr_curr.shape:
            if self.lr_prev is not None:
                raise InputShapeError(
                    f"frame size changed mid-sequence: {tuple(self.lr_prev.shape[-2:])} -> {tuple(lr_curr.shape[-2:])}"
                )
            n, c, h, w = lr_curr.shape
            self.lr_prev = torch.zeros_like(lr_curr)
            self.hr_prev = lr_curr.new_zeros(n, c, self.scale * h, self.scale * w)
        with torch.inference_mode():
            hr_curr = self.model(lr_curr, self.lr_prev, self.hr_prev)
        self.lr_prev, self.hr_prev = lr_curr, hr_curr
        return hr_curr

    __call__ = step


def _warm_up_frames(first: list[Any], pad_mode: str, num_pad_front: int) -> list[Any]:
    if pad_mode == "reflect":
        return [first[i] for i in range(num_pad_front, 0, -1)]
    return [first[0]] * num_pad_front


def infer_sequence(
    model: Callable[..., torch.Tensor], lr_frames: Iterable[Any], pad_mode: str = "reflect", num_pad_front: int = 5
) -> Iterator[np.ndarray]:
    """Yield one HWC uint8 HR frame per LR frame, streaming.

    Temporal warm-up as in TecoGAN-PyTorch: `reflect` prepends frames num_pad_front..1 (5,4,3,2,1,0,1,...),
    `replicate` prepends frame 0 num_pad_front times; the warm-up outputs are dropped. Only the first
    num_pad_front+1 LR frames are buffered (on the host); the device holds the recurrent state only.
    """
    if pad_mode not in PAD_MODES:
        raise ConfigError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    if num_pad_front < 0:
        raise ConfigError(f"num_pad_front must be >= 0, got {num_pad_front}")
    stepper = FrameStepper(model)
    frames = iter(lr_frames)
    need = num_pad_front + 1 if pad_mode == "reflect" else 1
    head: list[Any] = []
    for frame in frames:
        head.append(frame)
        if len(head) == need:
            break
    if not head:
        return
    if len(head) < need:
        raise InputShapeError(
            f"reflect warm-up with num_pad_front={num_pad_front} needs more than {num_pad_front} frames, got {len(head)}"
        )
    for frame in _warm_up_frames(head, pad_mode, num_pad_front):
        stepper.step(frame)
    for frame in head:
        yield to_uint8(stepper.step(frame))
    for frame in frames:
        yield to_uint8(stepper.step(frame))


class DiscriminatorBlocks(nn.Module):
    """Four stride-2 4x4 conv + BN + LReLU blocks; returns the last output and all four."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))

        self.block1 = block(64, 64)
        self.block2 = block(64, 64)
        self.block3 = block(64, 128)
        self.block4 = block(128, 256)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for blk in (self.block1, self.block2, self.block3, self.block4):
            x = blk(x)
            feats.append(x)
        return x, feats


class SpatioTemporalDiscriminator(nn.Module):
    """TecoGAN-PyTorch's spatio-temporal D: 27-channel 3-frame clips -> one logit per clip.

    Use `clip_inputs` to build the clips from HR frames, LR frames and generator flows, then call it.
    """

    def __init__(
        self, in_nc: int = 3, spatial_size: int = 128, tempo_range: int = 3, scale: int = 4, degradation: str = "BD"
    ) -> None:
        super().__init__()
        _check_scale(scale)
        if spatial_size % 16:
            raise ConfigError(f"spatial_size must be a multiple of 16, got {spatial_size}")
        if tempo_range != 3:
            raise ConfigError(f"only tempo_range=3 clips are supported (as published), got {tempo_range}")
        self.spatial_size = spatial_size
        self.tempo_range = tempo_range
        self.scale = scale
        self.conv_in = nn.Sequential(_conv3(in_nc * tempo_range * 3, 64), nn.LeakyReLU(0.2))
        self.discriminator_block = DiscriminatorBlocks()
        self.dense = nn.Linear(256 * (spatial_size // 16) ** 2, 1)
        self.upsample_func = get_upsampling_func(scale, degradation)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(n_clip, 27, S, S) -> (logit (n_clip, 1), [4 block outputs])."""
        out, feats = self.discriminator_block(self.conv_in(clips))
        return self.dense(out.flatten(1)), feats

    def clip_inputs(
        self,
        hr: torch.Tensor,
        lr: torch.Tensor,
        hr_flow: torch.Tensor,
        *,
        fnet: FNet | None = None,
        pingpong: bool = True,
        crop_border_ratio: float = 0.75,
        bi: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Build (N*floor(T/3), 27, S, S) clips from hr (N,T,C,S,S) (generated or ground truth) and lr (N,T,C,S/s,S/s).

        Channels: [3 frames, 3 frames warped to the middle one, 3 frames of U(lr)], each triplet
        channel-major (c*3 + frame). Backward flows (middle -> previous) come from `hr_flow`
        (N,T-1,2,S,S) as returned by `FRNet.forward_sequence`; forward flows (middle -> next) come,
        with `pingpong`, from the mirrored half of that sequence, otherwise from `fnet(lr_t, lr_{t+1})`.
        Flows are detached. Warped frames keep only the central `int(S*crop_border_ratio)` square.
        """
        if hr.dim() != 5 or lr.dim() != 5:
            raise InputShapeError(
                f"clip_inputs expects hr and lr of shape (N,T,C,H,W), got {tuple(hr.shape)}, {tuple(lr.shape)}"
            )
        n, t_all, c, hh, ww = hr.shape
        s = self.scale
        if (hh, ww) != (self.spatial_size, self.spatial_size) or lr.shape[-2:] != (hh // s, ww // s):
            raise InputShapeError(
                f"clip_inputs: hr {hh}x{ww} must be {self.spatial_size}x{self.spatial_size} and lr its 1/{s}, "
                f"got lr {tuple(lr.shape[-2:])}"
            )
        t = t_all // 3 * 3
        if t == 0:
            raise InputShapeError(f"clip_inputs needs at least 3 frames, got {t_all}")
        hr, lr = hr[:, :t], lr[:, :t]
        if bi is None:
            bi = self.upsample_func(lr.reshape(n * t, c, hh // s, ww // s)).view(n, t, c, hh, ww)
        else:
            bi = bi[:, :t]
        hr_flow = hr_flow.detach()
        flow_bw = hr_flow[:, 0:t:3]
        if pingpong:
            flow_fw = hr_flow.flip(1)[:, 1:t:3]
        else:
            if fnet is None:
                raise ConfigError("clip_inputs with pingpong=False needs the generator's fnet")
            with torch.no_grad():
                lr_mid = lr[:, 1::3].reshape(-1, c, hh // s, ww // s)
                lr_next = lr[:, 2::3].reshape(-1, c, hh // s, ww // s)
                flow_fw = (s * self.upsample_func(fnet(lr_mid, lr_next))).view(n, t // 3, 2, hh, ww)
        n_clip = t // 3
        if flow_bw.shape[1] != n_clip or flow_fw.shape[1] != n_clip:
            raise InputShapeError(f"clip_inputs: hr_flow of shape {tuple(hr_flow.shape)} does not fit {t_all} frames")
        flows = torch.stack([flow_bw, torch.zeros_like(flow_bw), flow_fw], dim=2).reshape(n * t, 2, hh, ww)
        warped = backward_warp(hr.reshape(n * t, c, hh, ww), flows)
        size = int(self.spatial_size * crop_border_ratio)
        pad = (self.spatial_size - size) // 2
        warped = F.pad(warped[..., pad:pad + size, pad:pad + size], (pad, pad, pad, pad))

        def channel_major(x: torch.Tensor) -> torch.Tensor:
            x = x.reshape(n * n_clip, 3, c, hh, ww)
            return x.permute(0, 2, 1, 3, 4).reshape(n * n_clip, 3 * c, hh, ww)

        return torch.cat([channel_major(hr), channel_major(warped), channel_major(bi)], dim=1)

    def forward_sequence(
        self, hr: torch.Tensor, lr: torch.Tensor, hr_flow: torch.Tensor, **kwargs: Any
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`self(self.clip_inputs(hr, lr, hr_flow, **kwargs))`."""
        return self(self.clip_inputs(hr, lr, hr_flow, **kwargs))


class FRNetOptions(BaseModel):
    """FRNet's keyword options with bounds, checked before a model is built from a spec or checkpoint
    (published models: nf 64, nb 10-16, scale 4). Generous for research, small enough that a tampered
    file cannot ask for gigabytes."""

    model_config = ConfigDict(extra="forbid")

    in_nc: int = Field(3, ge=1, le=64)
    out_nc: int = Field(3, ge=1, le=64)
    nf: int = Field(64, ge=1, le=1024)
    nb: int = Field(10, ge=0, le=256)
    scale: Literal[2, 4, 8] = 4
    degradation: Literal["BD", "BI"] = "BD"


def _frnet_factory(**kwargs: Any) -> FRNet:
    return FRNet(**kwargs)


def frnet_inputs(lr_size: tuple[int, int] = (32, 32), batch: int = 1, scale: int = 4, in_nc: int = 3) -> list[TensorInput]:
    """The inputs of one recurrent step: lr_curr, lr_prev (N,C,h,w) and hr_prev (N,C,sh,sw), in [0, 1)."""
    h, w = lr_size
    return [tensor("lr_curr", (batch, in_nc, h, w)), tensor("lr_prev", (batch, in_nc, h, w)),
            tensor("hr_prev", (batch, in_nc, scale * h, scale * w))]


def frnet_example_inputs(
    lr_size: tuple[int, int] = (32, 32), batch: int = 1, scale: int = 4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lr_curr, lr_prev, hr_prev) for one recurrent step, seeded so analyses are reproducible."""
    return ModelSpec(build="tecogan.frnet", inputs=frnet_inputs(lr_size, batch, scale)).example_inputs()


def frnet_spec(**options: Any) -> ModelSpec:
    """The spec of `FRNet(**options)` (what `build_model("tecogan.frnet", **options)` records)."""
    return ModelSpec(build="tecogan.frnet", kwargs=options, inputs=frnet_inputs(**{k: v for k, v in options.items()
                                                                                    if k in ("scale", "in_nc")}),
                     layout="tecogan.frnet")


def frnet_export(model: nn.Module, spec: ModelSpec) -> Any:
    """ONNX signature of one recurrent step with dynamic frame size.

    The trace is taken at an LR size that is not a multiple of 8 so FNet's flow padding is recorded
    (at multiples of 8 it is skipped, and the graph would then refuse other sizes); parity is then
    checked at the spec's own size and at a third size."""
    from prunekit.export import Signature

    scale = model.scale
    lr = next(i for i in spec.inputs if i.name == "lr_curr") if spec.inputs else None
    n, c, h, w = lr.shape if lr is not None else (1, 3, 32, 32)

    def at(hh: int, ww: int, seed: int) -> tuple[torch.Tensor, ...]:
        return ModelSpec(build=spec.build, inputs=frnet_inputs((hh, ww), n, scale, c), seed=seed).example_inputs()

    lr_axes, hr_axes = {2: "lr_height", 3: "lr_width"}, {2: "hr_height", 3: "hr_width"}
    return Signature(
        module=model,
        inputs=at(h // 8 * 8 + 4, w // 8 * 8 + 4, 0),
        input_names=["lr_curr", "lr_prev", "hr_prev"],
        output_names=["hr_curr"],
        dynamic_axes={"lr_curr": lr_axes, "lr_prev": lr_axes, "hr_prev": hr_axes, "hr_curr": hr_axes},
        checks=[at(h, w, 1), at(h + 11, w + 21, 2)],
        metadata={"prunekit.kind": "tecogan.frnet.step", "scale": str(scale)},
    )


def _srnet_factory(
    in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 10, scale: int = 4, degradation: str = "BD"
) -> SRNet:
    return SRNet(in_nc, out_nc, nf, nb, scale, get_upsampling_func(scale, degradation))


def _fnet_factory(in_nc: int = 3) -> FNet:
    return FNet(in_nc)


def _discriminator_factory(**kwargs: Any) -> SpatioTemporalDiscriminator:
    return SpatioTemporalDiscriminator(**kwargs)


def register(registries) -> None:
    """Models: tecogan.frnet (a ModelEntry: inputs, layout, option bounds, ONNX step), tecogan.srnet,
    tecogan.fnet, tecogan.discriminator."""
    registries.models.register("tecogan.frnet", ModelEntry(
        factory=_frnet_factory, inputs=frnet_inputs, layout="tecogan.frnet", options=FRNetOptions,
        export=frnet_export))
    registries.models.register("tecogan.srnet", _srnet_factory)
    registries.models.register("tecogan.fnet", _fnet_factory)
    registries.models.register("tecogan.discriminator", _discriminator_factory)
