"""The FRVSR and TecoGAN training objectives as a prunekit schedule task (`tecogan.frvsr`, `tecogan.gan`).

FRVSR: Charbonnier pixel loss + LR warping loss on `tempo_extent`-frame clips. TecoGAN adds ping-pong
sequences (0..T-1, T-2..0) with the ping-pong loss, the VGG19 cosine feature loss and the
spatio-temporal discriminator, updated only while its real/fake log-distance is below the threshold
(the task owns D and D's Adam; both are in its `state_dict`, so run checkpoints hold them). Loss
weights default to TecoGAN-PyTorch's configs: pixel 1, warping 1, ping-pong 0.5, VGG feature 0.2,
GAN 0.01, D updated while its distance is below 0.4, D's Adam at lr 5e-5."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, PositiveInt, field_validator
from torch import nn

from prunekit.config import StrictModel, validate_config
from prunekit.errors import ConfigError
from prunekit.schedule.task import StepContext
from prunekit.strategies import Calibration
from tecogan_plugin.convert import load_published_generator
from tecogan_plugin.losses import VGGFeatureLoss, charbonnier, d_distance, d_loss, g_gan_loss, warping_loss
from tecogan_plugin.nets import FRNet, SpatioTemporalDiscriminator

if TYPE_CHECKING:
    from tecogan_plugin.metrics.report import MetricsReport
    from tecogan_plugin.metrics.video_metrics import VideoMetrics


class TecoGANOptions(StrictModel):
    """`task.options` of the TecoGAN tasks (defaults: the reference's; see configs/ for presets)."""

    objective: Literal["frvsr", "gan"] = "frvsr"
    nf: PositiveInt = 64
    nb: PositiveInt = 10
    scale: Literal[2, 4] = 4
    degradation: Literal["BD", "BI"] = "BD"
    # training data: a registered dataset name (builtin, reds, vid4, folder, ...) + its root
    train_data: str = "builtin"
    train_root: str | None = None
    train_sequences: list[str] | None = None
    # train_data "unlabeled" (your own footage, no GT): "lr" = the frames are inputs to upscale, healed by
    # distillation from the dense teacher only; "hr" = high-resolution frames, BD-degraded to give GT too
    unlabeled_role: Literal["lr", "hr"] = "lr"
    unlabeled_max_frames: PositiveInt = 300
    gt_crop: PositiveInt = 128
    tempo_extent: int = Field(10, ge=2)
    moving_first_frame: bool = True
    moving_factor: float = Field(0.7, ge=0, le=1)
    # evaluation
    eval_data: str = "builtin"
    eval_root: str | None = None
    eval_sequences: list[str] | None = None
    eval_max_frames: PositiveInt | None = None
    eval_metrics: list[str] = Field(default_factory=lambda: ["psnr", "ssim"])  # registered metric names
    lpips_weights: str | None = None
    # losses
    pixel_weight: NonNegativeFloat = 1.0
    warp_weight: NonNegativeFloat = 1.0
    pingpong: bool | None = None  # default: on for gan
    pingpong_weight: NonNegativeFloat = 0.5
    feature_loss: bool = True  # gan only
    feature_weight: NonNegativeFloat = 0.2
    vgg_weights: str | None = None
    gan_weight: NonNegativeFloat = 0.01
    d_update_threshold: float = 0.4
    d_lr: float = Field(5e-5, gt=0)
    d_betas: tuple[float, float] = (0.9, 0.999)
    crop_border_ratio: float = Field(0.75, gt=0, le=1)
    calibration_lr_size: PositiveInt = 32
    # GT crop of the calibration clips (default gt_crop): larger crops give a replacement's fit (the
    # sub-pixel head's least squares) more pixels per sample
    calibration_gt_crop: PositiveInt | None = None
    # pruning: open FNet to width pruning (only its 2-channel flow head stays fixed); SRNet only by default
    open_fnet: bool = False

    @field_validator("eval_metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        from tecogan_plugin.metrics import catalog

        catalog.check_names(v, "eval_metrics")
        return v

    def uses_pingpong(self) -> bool:
        return self.pingpong if self.pingpong is not None else self.objective == "gan"


class SequenceForward(nn.Module):
    """Runs FRNet's training forward over a whole clip, so DDP and distillation see one call per step."""

    def __init__(self, net: FRNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net.forward_sequence(lr)


def _pingpong(x: torch.Tensor) -> torch.Tensor:
    """(N,T,...) -> (N,2T-1,...): frames 0..T-1 then T-2..0."""
    return torch.cat([x, x.flip(1)[:, 1:]], dim=1)


class TecoGANTask:
    """FRNet trained with the FRVSR or TecoGAN objective on TecoGAN data (see `TecoGANOptions`)."""

    def __init__(self, **options: Any) -> None:
        self.opt = validate_config(TecoGANOptions, options, prefix="task.options")
        o = self.opt
        for field in ("gt_crop", "calibration_gt_crop"):
            crop = getattr(o, field)
            if crop is not None and crop % (8 * o.scale):
                raise ConfigError(f"task.options.{field}: {crop} must be a multiple of {8 * o.scale} "
                                  "(the LR crop must be a multiple of 8 for FNet)")
        from prunekit.registry import DATASETS
        from tecogan_plugin.layout import frnet_layout

        self.layout = frnet_layout(open_fnet=o.open_fnet)
        for field in ("train_data", "eval_data"):
            name = getattr(o, field)
            if name not in DATASETS.names():
                raise ConfigError(f"task.options.{field}: unknown dataset {name!r}; registered: {DATASETS.names()}")
            root = getattr(o, field.replace("data", "root"))
            if root is not None and not Path(root).expanduser().exists():
                raise ConfigError(f"task.options.{field.replace('data', 'root')}: {root!r} does not exist")
        self.vgg: VGGFeatureLoss | None = None
        if o.objective == "gan" and o.feature_loss and o.feature_weight > 0:
            self.vgg = VGGFeatureLoss(o.vgg_weights)  # MissingWeightsError names the file before any work
        self.discriminator: SpatioTemporalDiscriminator | None = None
        self.d_optimizer: torch.optim.Optimizer | None = None
        self.d_updates = 0
        if o.train_data == "unlabeled" and o.unlabeled_role == "lr" and o.objective == "gan":
            raise ConfigError("task.options.objective: 'gan' needs ground truth, but train_data 'unlabeled' with "
                              "unlabeled_role 'lr' has none; use objective 'frvsr' (healed by distillation) or "
                              "unlabeled_role 'hr'")
        self.ctx = StepContext(device=torch.device("cpu"))
        self._train_set = None
        self._eval_set = None

    # ------------------------------------------------------------- model
    def build_model(self) -> FRNet:
        return build_frnet(self.opt)

    def load_init(self, model: nn.Module, path: str | Path) -> nn.Module:
        """A published TecoGAN-PyTorch generator (`G_iter*.pth`); must match nf/nb/scale of the options."""
        published = load_published_generator(path, degradation=self.opt.degradation)
        try:
            model.load_state_dict(published.state_dict())
        except RuntimeError as exc:
            raise ConfigError(f"init_checkpoint {str(path)!r} does not fit task.options (nf={self.opt.nf}, "
                              f"nb={self.opt.nb}, scale={self.opt.scale}): {exc}") from None
        return model

    def example_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from tecogan_plugin.nets import frnet_example_inputs

        s = self.opt.calibration_lr_size
        return frnet_example_inputs((s, s), scale=self.opt.scale)

    def train_module(self, model: nn.Module) -> nn.Module:
        return SequenceForward(model)

    def distill_output(self, output: dict[str, torch.Tensor]) -> torch.Tensor:
        return output["hr"]

    def setup(self, ctx: StepContext) -> None:
        """Place task-owned modules on the run's device; create D for the GAN objective."""
        self.ctx = ctx
        if self.vgg is not None:
            self.vgg.to(ctx.device)
        if self.opt.objective == "gan" and self.discriminator is None:
            o = self.opt
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1_000_003)  # D's init: independent of the G stream, equal on all ranks
                self.discriminator = SpatioTemporalDiscriminator(spatial_size=o.gt_crop, scale=o.scale,
                                                                 degradation=o.degradation).to(ctx.device)
            self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=o.d_lr, betas=o.d_betas)

    def state_dict(self) -> dict[str, Any]:
        if self.discriminator is None:
            return {}
        return {"discriminator": self.discriminator.state_dict(), "d_optimizer": self.d_optimizer.state_dict(),
                "d_updates": self.d_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.discriminator is None:
            raise ConfigError("the checkpoint holds a discriminator but task.options.objective is not 'gan'")
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.d_updates = int(state["d_updates"])

    # -------------------------------------------------------------- data
    def _clips(self, seed: int, gt_crop: int | None = None):
        from prunekit.registry import DATASETS

        o = self.opt.model_copy(update={"gt_crop": gt_crop}) if gt_crop is not None else self.opt
        extra: dict[str, Any] = {"sequences": o.train_sequences} if o.train_sequences else {}
        if o.train_data == "unlabeled":
            extra.update(role=o.unlabeled_role, max_frames=o.unlabeled_max_frames)
            if o.unlabeled_role == "lr":  # LR-only clips: no GT crop to move or degrade
                return DATASETS.get(o.train_data)(root=o.train_root, split="train", degradation=o.degradation,
                                                  scale=o.scale, tempo_extent=o.tempo_extent, gt_crop=o.gt_crop,
                                                  seed=seed, **extra)
        return DATASETS.get(o.train_data)(root=o.train_root, split="train", degradation=o.degradation, scale=o.scale,
                                          tempo_extent=o.tempo_extent, gt_crop=o.gt_crop, seed=seed,
                                          moving_first_frame=o.moving_first_frame, moving_factor=o.moving_factor,
                                          **extra)

    @property
    def has_gt(self) -> bool:
        """False when training on LR-only footage (train_data 'unlabeled', role 'lr')."""
        return not (self.opt.train_data == "unlabeled" and self.opt.unlabeled_role == "lr")

    def _pair(self, item: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One sampled clip -> float (lr, gt), (T,3,h,w) and (T,3,H,W); gt is None for LR-only footage."""
        if not self.has_gt:
            return item.float() / 255.0, None
        if self.opt.degradation == "BD":
            from tecogan_plugin.data.degrade import bd_train_pair

            return bd_train_pair(item, scale=self.opt.scale)
        lr, gt = item
        return lr.float() / 255.0, gt.float() / 255.0

    def train_batches(self, seed: int, rank: int, world_size: int, batch_size: int = 2, start: int = 0
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per epoch a seeded permutation of all clip starts; step i takes global positions
        [i*B*W, (i+1)*B*W) and this rank its B of them. `start` jumps straight to step `start`.
        Batches are (lr, gt); gt is None for LR-only footage."""
        clips = self._clips(seed)
        per_step = batch_size * world_size
        n = len(clips)
        orders: dict[int, np.ndarray] = {}
        for step in itertools.count(start):
            items = []
            for k in range(step * per_step + rank * batch_size, step * per_step + (rank + 1) * batch_size):
                epoch, pos = divmod(k, n)
                if epoch not in orders:
                    orders.clear()
                    orders[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
                order = orders[epoch]
                clips.set_epoch(epoch)
                items.append(self._pair(clips[int(order[pos])]))
            gts = [b for _, b in items]
            yield torch.stack([a for a, _ in items]), (torch.stack(gts) if self.has_gt else None)

    def calibration(self, n: int) -> Calibration:
        """`n` recurrent steps from real clips: inputs (LR frame 1, LR frame 0, GT frame 0 as hr_prev),
        target GT frame 1 and the Charbonnier pixel loss, so loss-based strategies (taylor, ablation
        with a task loss) score blocks by what they do for the reconstruction. LR-only footage has no GT:
        hr_prev is the bicubic upsampling of LR frame 0 and there are no targets (output-comparing
        strategies such as block_influence work; loss-based ones say they need a task loss)."""
        clips = self._clips(seed=12345, gt_crop=self.opt.calibration_gt_crop)
        order = np.random.default_rng(12345).permutation(len(clips))
        inputs, targets = [], []
        if not self.has_gt:
            from tecogan_plugin.ops import BicubicUpsampler

            up = BicubicUpsampler(self.opt.scale)
            for i in order[:n]:
                lr, _ = self._pair(clips[int(i)])
                inputs.append((lr[1:2], lr[0:1], up(lr[0:1])))
            return Calibration(inputs=inputs)
        for i in order[:n]:
            lr, gt = self._pair(clips[int(i)])
            inputs.append((lr[1:2], lr[0:1], gt[0:1]))
            targets.append(gt[1:2])
        return Calibration(inputs=inputs, targets=targets, loss_fn=charbonnier)

    # -------------------------------------------------------------- loss
    def loss(self, model: nn.Module, batch: Any, teacher: nn.Module | None = None, step: int = 0
             ) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.opt
        device = self.ctx.device
        lr = batch[0].to(device)
        gt = batch[1].to(device) if batch[1] is not None else None
        if gt is None and teacher is None:
            raise ConfigError("train_data 'unlabeled' (role 'lr') has no ground truth: only fine-tune stages with "
                              "`distill:` can heal on it (the dense teacher's output is the target); remove the "
                              "train stage or set unlabeled_role 'hr' for high-resolution footage")
        t = lr.shape[1]
        if o.uses_pingpong():
            lr = _pingpong(lr)
            gt = _pingpong(gt) if gt is not None else None
        out = model(lr)
        hr = out["hr"]
        warp = warping_loss(out["lr_prev"], out["lr_curr"], out["lr_flow"])
        total = o.warp_weight * warp
        logs = {"warp": float(warp.detach())}
        if gt is not None:  # without GT the pixel term is absent; the distiller adds the teacher's output instead
            pixel = charbonnier(hr, gt)
            total = total + o.pixel_weight * pixel
            logs["pixel"] = float(pixel.detach())
        if o.uses_pingpong():
            pp = charbonnier(hr[:, : t - 1], hr[:, t:].flip(1))
            total = total + o.pingpong_weight * pp
            logs["pingpong"] = float(pp.detach())
        if o.objective == "gan":
            if self.vgg is not None:
                n, tt, c, h, w = hr.shape
                feat = self.vgg(hr.reshape(n * tt, c, h, w), gt.reshape(n * tt, c, h, w))
                total = total + o.feature_weight * feat
                logs["vgg"] = float(feat.detach())
            gan, dlogs = self._adversarial(hr, gt, lr, out["hr_flow"])
            total = total + o.gan_weight * gan
            logs.update(dlogs)
        return total, logs

    def _adversarial(self, hr: torch.Tensor, gt: torch.Tensor, lr: torch.Tensor, hr_flow: torch.Tensor
                     ) -> tuple[torch.Tensor, dict[str, float]]:
        """Update D when it is not already too strong (distance < threshold), then the G term with D frozen."""
        o, d = self.opt, self.discriminator
        kw = {"pingpong": o.uses_pingpong(), "crop_border_ratio": o.crop_border_ratio}
        d.requires_grad_(True)
        real_logit, _ = d(d.clip_inputs(gt, lr, hr_flow, **kw))
        fake_logit, _ = d(d.clip_inputs(hr.detach(), lr, hr_flow, **kw))
        distance = self.ctx.all_reduce_mean(d_distance(real_logit, fake_logit).detach())
        loss_d = d_loss(real_logit, fake_logit)
        updated = float(distance) < o.d_update_threshold
        if updated:
            self.d_optimizer.zero_grad(set_to_none=True)
            loss_d.backward()
            if self.ctx.world_size > 1:
                for p in d.parameters():
                    if p.grad is not None:
                        p.grad.copy_(self.ctx.all_reduce_mean(p.grad))
            self.d_optimizer.step()
            self.d_updates += 1
        d.requires_grad_(False)
        fake_logit_g, _ = d(d.clip_inputs(hr, lr, hr_flow, **kw))
        gan = g_gan_loss(fake_logit_g)
        return gan, {"gan_g": float(gan.detach()), "d_loss": float(loss_d.detach()), "d_distance": float(distance),
                     "d_updated": float(updated)}

    # -------------------------------------------------------- evaluation
    def _test_set(self) -> list[Any]:
        if self._eval_set is None:
            o = self.opt
            self._eval_set = load_test_set(o, o.eval_data, o.eval_root, o.eval_sequences)
        return self._eval_set

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Official-protocol metrics (frame averages) of `model` on the evaluation set."""
        from tecogan_plugin.metrics.video_metrics import VideoMetrics

        o = self.opt
        with VideoMetrics(metrics=tuple(o.eval_metrics), lpips_weights=o.lpips_weights, tof_workers=0,
                          device=self.ctx.device) as vm:
            report = score_sequences(model, self._test_set(), vm, o.eval_max_frames)
        return {m: float(v) for m in report.available if (v := report.frame_avg(m)) is not None}


def build_frnet(o: TecoGANOptions) -> FRNet:
    """The dense FRNet the options describe."""
    return FRNet(nf=o.nf, nb=o.nb, scale=o.scale, degradation=o.degradation)


def load_test_set(o: TecoGANOptions, dataset: str, root: str | None, sequences: list[str] | None = None) -> list[Any]:
    """The test split of a registered dataset, degraded as the options say."""
    from prunekit.registry import DATASETS

    return DATASETS.get(dataset)(root=root, split="test", degradation=o.degradation, scale=o.scale,
                                 sequences=sequences)


@torch.no_grad()
def score_sequences(model: nn.Module, sequences: list[Any], metrics: "VideoMetrics", max_frames: int | None = None,
                    on_output: Callable[[int, Any, np.ndarray, np.ndarray], None] | None = None) -> "MetricsReport":
    """The official-protocol report of `model` on test `sequences` (their first `max_frames` frames):
    each LR sequence is super-resolved by the model's recurrent `infer_sequence` and scored against its
    GT by `metrics` (reset first; a caller may keep it to reuse its cached targets).
    `on_output(index, sequence, output, gt)` sees every output sequence."""
    metrics.reset()
    for i, seq in enumerate(sequences):
        lr, gt = seq.lr_tensor(), seq.gt
        if max_frames is not None:
            lr, gt = lr[:max_frames], gt[:max_frames]
        pred = np.stack(list(model.infer_sequence(list(lr))))
        metrics.update(seq.name, pred, gt)
        if on_output is not None:
            on_output(i, seq, pred, gt)
    return metrics.compute()


def _frvsr(**options: Any) -> TecoGANTask:
    return TecoGANTask(**{"objective": "frvsr", **options})


def _gan(**options: Any) -> TecoGANTask:
    return TecoGANTask(**{"objective": "gan", **options})


def register(registries) -> None:
    """Tasks `tecogan.frvsr` and `tecogan.gan` (the same task with the objective preset)."""
    registries.tasks.register("tecogan.frvsr", _frvsr)
    registries.tasks.register("tecogan.gan", _gan)
