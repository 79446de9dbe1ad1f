"""Benchmark presets: what `prunekit bench tecogan --preset NAME` trains, prunes and evaluates.

`quick` is a smoke-scale run on the built-in synthetic data that finishes in minutes on a 2-core
CPU; its numbers show the pipeline and relative trends, not the study's values. `paper` is the
study's protocol (REDS training, train -> prune -> fine-tune with 300k iterations each, Vid4 and
ToS3 evaluation) and needs a GPU, the datasets, and the VGG19/AlexNet weights."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from prunekit.config import StrictModel
from prunekit.errors import ConfigError

FINETUNE_MODES = ("none", "plain", "distill")


class Series(StrictModel):
    """One line of the grid: a block-scoring strategy and how the pruned model is healed."""

    strategy: str
    finetune: Literal["none", "plain", "distill"]

    @classmethod
    def parse(cls, spec: str) -> "Series":
        """`strategy:finetune`, e.g. `positional:plain` (the study) or `block_influence:distill`."""
        strategy, _, finetune = spec.partition(":")
        if not strategy or finetune not in FINETUNE_MODES:
            raise ConfigError(f"--series: expected STRATEGY:{'|'.join(FINETUNE_MODES)}, got {spec!r}")
        return cls(strategy=strategy, finetune=finetune)

    @property
    def key(self) -> str:
        return f"{self.strategy}-{self.finetune}"


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
    threads=2,
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
