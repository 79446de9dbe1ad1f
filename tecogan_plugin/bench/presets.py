"""Benchmark presets: what `prunekit bench tecogan --preset NAME` trains, prunes and evaluates.

`quick` is a smoke-scale run on the built-in synthetic data that finishes in minutes on a 2-core
CPU; its numbers show the pipeline and relative trends, not the study's values. `paper` is the
study's protocol (REDS training, train -> prune -> fine-tune with 300k iterations each, Vid4 and
ToS3 evaluation) and needs a GPU, the datasets, and the VGG19/AlexNet weights."""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import Field, PositiveInt, field_validator, model_serializer

from prunekit.config import StrictModel
from prunekit.errors import ConfigError

FINETUNE_MODES = ("none", "plain", "distill")


class Series(StrictModel):
    """One line of the grid: a block-scoring strategy, how the pruned model is healed, and optionally
    a width cut: the fraction of prunable channels removed per coupled group (FNet included) on top
    of the block removal."""

    strategy: str
    finetune: Literal["none", "plain", "distill"]
    width: float = Field(0.0, ge=0.0, lt=1.0)

    @classmethod
    def parse(cls, spec: str) -> "Series":
        """`STRATEGY:HEAL` or `STRATEGY:HEAL:wFRACTION`, e.g. `positional:plain` (the study) or
        `block_influence:plain:w0.5` (also remove half of every prunable channel group)."""
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0] or parts[1] not in FINETUNE_MODES:
            raise ConfigError(f"--series: expected STRATEGY:{'|'.join(FINETUNE_MODES)}[:wFRACTION], got {spec!r}")
        strategy, finetune = parts[:2]
        width = 0.0
        if len(parts) == 3:
            try:
                width = float(parts[2].removeprefix("w")) if parts[2].startswith("w") else float("nan")
            except ValueError:
                width = float("nan")
            if not 0.0 <= width < 1.0:  # also rejects nan
                raise ConfigError(f"--series: width in {spec!r} must be wFRACTION with FRACTION in [0, 1), "
                                  f"e.g. w0.5; got {parts[2]!r}")
        return cls(strategy=strategy, finetune=finetune, width=width)

    @property
    def key(self) -> str:
        """`strategy-heal` (depth only) or `strategy-heal-wFRACTION`; names the run folders and rows."""
        return f"{self.strategy}-{self.finetune}" + (f"-w{self.width:g}" if self.width else "")

    @model_serializer(mode="wrap")
    def _omit_zero_width(self, handler: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """Depth-only series serialise as before the width option, so earlier runs' settings still match."""
        data = handler(self)
        if not self.width:
            data.pop("width", None)
        return data


class EvalSet(StrictModel):
    """A registered test dataset; `folder` is its sub-folder of --data-root (unused for `builtin`)."""

    dataset: str
    label: str
    folder: str | None = None
    max_frames: PositiveInt | None = None


class BenchPreset(StrictModel):
    name: str
    description: str
    seed: int = 0
    task: dict[str, Any]  # tecogan task options (objective, nf, nb, crop, data ...)
    train_folder: str | None = None  # sub-folder of --data-root holding the training set
    train: dict[str, Any]  # a schedule TrainStage (without `kind`)
    finetune: dict[str, Any]  # a schedule FinetuneStage (without `kind`/`distill`)
    distill: dict[str, Any] = Field(default_factory=lambda: {"weight": 1.0, "loss": "charbonnier"})
    calibration: PositiveInt = 8
    blocks: list[int] = Field(default_factory=lambda: [9, 7, 5, 3, 1])
    series: list[Series]
    eval_sets: list[EvalSet]
    metrics: list[str] = Field(default_factory=lambda: ["psnr", "ssim", "lpips", "tof", "tlp"])
    flops_lr_size: tuple[int, int] = (134, 320)
    latency_lr_size: tuple[int, int] = (134, 320)
    latency_repeats: PositiveInt = 5
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: PositiveInt | None = None  # torch CPU threads; fixed for reproducible CPU numbers

    @field_validator("blocks")
    @classmethod
    def _blocks_positive(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError(f"blocks must be a non-empty list of counts >= 1, got {v}")
        return v


QUICK = BenchPreset(
    name="quick",
    description=(
        "Smoke scale: the full-size FRNet (nf 64, 10 blocks) trained briefly with the FRVSR objective on the "
        "built-in synthetic videos (32 px GT crops, 3-frame clips, 1500 iterations), each pruned model "
        "fine-tuned for 300 iterations; CPU. Small crops and many steps get FRNet past its bicubic skip "
        "within minutes (docs/results/finetune_study.md)."
    ),
    task={
        "objective": "frvsr", "nf": 64, "nb": 10, "gt_crop": 32, "tempo_extent": 3, "calibration_lr_size": 16,
        "train_data": "builtin", "eval_data": "builtin", "eval_metrics": ["psnr"],
    },
    train={"iterations": 1500, "batch": 2, "optimizer": {"lr": 1e-3},
           "lr_schedule": {"kind": "cosine", "min_factor": 0.1}},
    finetune={"iterations": 300, "batch": 2, "optimizer": {"lr": 5e-4},
              "lr_schedule": {"kind": "cosine", "min_factor": 0.1}},
    series=[Series(strategy="positional", finetune="plain"), Series(strategy="block_influence", finetune="plain")],
    eval_sets=[EvalSet(dataset="builtin", label="builtin-test")],
    latency_repeats=3,
    device="cpu",
    threads=1,
)

PAPER = BenchPreset(
    name="paper",
    description=(
        "The study's protocol: TecoGAN (GAN objective) on REDS with BD degradation, train -> prune -> fine-tune "
        "with 300k iterations each (reference hyper-parameters), evaluated on Vid4 and ToS3; needs a GPU, "
        "the datasets under --data-root, and the VGG19 / AlexNet ImageNet weights in the torch hub cache."
    ),
    task={
        "objective": "gan", "nf": 64, "nb": 10, "gt_crop": 128, "tempo_extent": 10,
        "train_data": "reds", "eval_data": "vid4", "eval_metrics": ["psnr"], "eval_max_frames": 20,
    },
    train_folder="REDS",
    train={"iterations": 300_000, "batch": 4, "optimizer": {"lr": 5e-5}, "eval_every": 10_000, "ckpt_every": 5_000},
    finetune={"iterations": 300_000, "batch": 4, "optimizer": {"lr": 5e-5}, "eval_every": 10_000,
              "ckpt_every": 5_000},
    calibration=32,
    series=[Series(strategy="positional", finetune="plain"), Series(strategy="block_influence", finetune="distill")],
    eval_sets=[EvalSet(dataset="vid4", label="Vid4", folder="Vid4"),
               EvalSet(dataset="tos3", label="ToS3", folder="ToS3")],
    latency_repeats=20,
)

PRESETS = {p.name: p for p in (QUICK, PAPER)}


def get_preset(name: str) -> BenchPreset:
    if name not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]
