"""Benchmark presets: what `prunekit bench tecogan --preset NAME` trains, prunes and evaluates.

`quick` is a smoke-scale run on the built-in synthetic data that finishes in minutes on a 2-core
CPU; its numbers show the pipeline and relative trends, not the study's values. `smoke` is smaller
still: a pipeline check whose numbers mean nothing. `paper` is the
study's protocol (REDS training, train -> prune -> fine-tune with 300k iterations each, Vid4 and
ToS3 evaluation) and needs a GPU, the datasets, and the VGG19/AlexNet weights."""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import Field, PositiveInt, field_validator, model_serializer

from prunekit.config import StrictModel
from prunekit.errors import ConfigError
from tecogan_plugin.metrics import catalog

FINETUNE_MODES = ("none", "plain", "distill")


TP = "tp"  # the Torch-Pruning baseline's strategy name in a series


class Series(StrictModel):
    """One line of the grid: how the dense model is made smaller, and how it is healed.

    - `strategy` scores SRNet's blocks (any registered strategy), or is `tp`: the Torch-Pruning
      baseline (its MetaPruner + GroupMagnitudeImportance at one uniform ratio, found by bisection
      to the same measured latency as `latency`);
    - `width`: also remove this fraction of every prunable channel group (FNet included);
    - `latency`: instead of the preset's block counts, one model keeping this fraction of the dense
      model's measured fast-path latency (blocks and per-group widths chosen by prunekit's planner);
    - `subpixel`: the kernel of the sub-pixel head that replaces SRNet's ConvTranspose tail
      (`tecogan.subpixel_head`, least-squares initialised), None to keep the tail;
    - `move_cost`: how the latency planner prices its moves (`pk.plan`'s move_cost);
    - `min_keep`: the least fraction of each channel group the latency planner keeps (`pk.plan`'s);
    - `uniform`: the latency planner keeps every block and cuts all groups by one fraction (`pk.plan`'s);
    - `refit`: refit the pruned layers to the dense ones by least squares before healing (`pk.refit`)."""

    strategy: str
    finetune: Literal["none", "plain", "distill"]
    width: float = Field(0.0, ge=0.0, lt=1.0)
    latency: float | None = Field(None, gt=0.0, le=1.0)
    subpixel: int | None = None
    move_cost: Literal["importance", "sensitivity"] = "importance"
    min_keep: float = Field(0.0, ge=0.0, le=1.0)
    uniform: bool = False
    refit: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Series":
        """`STRATEGY:HEAL[:wF][:latK[:sensitivity][:floorF][:uniform]][:subpixel[K]][:refit]` or
        `tp:HEAL:latK[:refit]`, e.g. `positional:plain` (the study), `block_influence:plain:w0.5`,
        `block_influence:distill:lat0.33:subpixel`, `block_influence:plain:lat0.33:sensitivity`,
        `tp:plain:lat0.33:refit`, `block_influence:plain:lat0.33:uniform:refit`."""
        usage = (f"--series: expected STRATEGY:{'|'.join(FINETUNE_MODES)}[:wFRACTION]"
                 "[:latFRACTION[:sensitivity][:floorFRACTION][:uniform]]"
                 "[:subpixel[K]][:refit] "
                 f"or tp:HEAL:latFRACTION[:refit], got {spec!r}")
        parts = spec.split(":")
        if len(parts) < 2 or not parts[0] or parts[1] not in FINETUNE_MODES:
            raise ConfigError(usage)
        fields: dict[str, Any] = {"strategy": parts[0], "finetune": parts[1]}
        for option in parts[2:]:
            name, value = _option(option, spec)
            if name in fields:
                raise ConfigError(f"--series: {spec!r} sets {name} twice")
            fields[name] = value
        if "width" in fields and "latency" in fields:
            raise ConfigError(f"--series: {spec!r}: a latency target chooses the widths itself; drop wFRACTION")
        for planner_option, text in (("move_cost", "sensitivity"), ("min_keep", "floorFRACTION"),
                                     ("uniform", "uniform")):
            if planner_option in fields and "latency" not in fields:
                raise ConfigError(f"--series: {spec!r}: {text} steers the latency planner; add latFRACTION")
        if fields["strategy"] == TP and ("latency" not in fields or len(fields) != 3 + ("refit" in fields)):
            raise ConfigError(f"--series: the Torch-Pruning baseline is tp:HEAL:latFRACTION[:refit], got {spec!r}")
        return cls(**fields)

    @property
    def key(self) -> str:
        """`strategy-heal[-wF][-latK][-subpixelK]`; names the run folders and rows."""
        return (f"{self.strategy}-{self.finetune}" + (f"-w{self.width:g}" if self.width else "")
                + (f"-lat{self.latency:g}" if self.latency is not None else "")
                + (f"-subpixel{self.subpixel}" if self.subpixel is not None else "")
                + (f"-{self.move_cost}" if self.move_cost != "importance" else "")
                + (f"-floor{self.min_keep:g}" if self.min_keep else "")
                + ("-uniform" if self.uniform else "")
                + ("-refit" if self.refit else ""))

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """Options left at their defaults are not written, so earlier runs' settings still match."""
        data = handler(self)
        for name, default in (("width", 0.0), ("latency", None), ("subpixel", None), ("move_cost", "importance"),
                              ("min_keep", 0.0), ("uniform", False), ("refit", False)):
            if getattr(self, name) == default:
                data.pop(name, None)
        return data


def _option(text: str, spec: str) -> tuple[str, Any]:
    """One `:` option of a series: wF, latK, sensitivity, floorF, uniform, subpixel[K] or refit."""
    def number(prefix: str) -> float:
        try:
            return float(text[len(prefix):])
        except ValueError:
            return float("nan")

    if text.startswith("w"):
        width = number("w")
        if not 0.0 <= width < 1.0:  # also rejects nan
            raise ConfigError(f"--series: width in {spec!r} must be wFRACTION with FRACTION in [0, 1), "
                              f"e.g. w0.5; got {text!r}")
        return "width", width
    for prefix, what, name, example in (("lat", "latency", "latency", "lat0.33"),
                                         ("floor", "floor", "min_keep", "floor0.25")):
        if text.startswith(prefix):
            value = number(prefix)
            if not 0.0 < value <= 1.0:  # also rejects nan
                raise ConfigError(f"--series: {what} in {spec!r} must be {prefix}FRACTION with FRACTION in "
                                  f"(0, 1], e.g. {example}; got {text!r}")
            return name, value
    if text == "sensitivity":
        return "move_cost", text
    if text in ("refit", "uniform"):
        return text, True
    if text.startswith("subpixel"):
        kernel = text[len("subpixel"):] or "3"
        if kernel not in ("1", "3", "5", "7"):
            raise ConfigError(f"--series: {text!r} in {spec!r}: the head's kernel must be 1, 3, 5 or 7 "
                              "(subpixel = subpixel3)")
        return "subpixel", int(kernel)
    raise ConfigError(f"--series: unknown option {text!r} in {spec!r} (expected wFRACTION, latFRACTION, "
                      "sensitivity, floorFRACTION, uniform, subpixel[K] or refit)")


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
    refit_calibration: PositiveInt = 16  # clips for the least-squares refit of `:refit` series
    # GT crop of the calibration clips of sub-pixel and latency series: the head's least-squares fit
    # needs more LR pixels than the training crop gives (nf*k*k+1 unknowns per output), and the
    # planner's damage estimates need FNet's coarsest level (1/8 of the LR crop) to be more than a pixel
    surgery_gt_crop: PositiveInt = 128
    blocks: list[int] = Field(default_factory=lambda: [9, 7, 5, 3, 1])
    series: list[Series]
    eval_sets: list[EvalSet]
    metrics: list[str] = Field(default_factory=lambda: list(catalog.BUILTIN_NAMES))  # registered metric names
    flops_lr_size: tuple[int, int] = (134, 320)
    latency_lr_size: tuple[int, int] = (134, 320)
    latency_repeats: PositiveInt = 5  # interleaved rounds over all models (fast path), after one warm-up
    tp_bisection_steps: PositiveInt = 7
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: PositiveInt | None = None  # torch CPU threads; fixed for reproducible CPU numbers

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        catalog.check_names(v, "metrics")
        return v

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
    latency_repeats=7,
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

SMOKE = BenchPreset(
    name="smoke",
    description=(
        "Pipeline check only (about a minute of training): a narrow FRNet (nf 32, 4 blocks) trained 40 "
        "iterations on the built-in videos, healed 10 iterations, latency timed at LR 64x96. Its numbers mean "
        "nothing; it runs every kind of series end to end (e.g. benchmarks/compression_study.sh smoke)."
    ),
    task={**QUICK.task, "nf": 32, "nb": 4},  # quick's built-in CPU setting, on a narrow FRNet
    train={"iterations": 40, "batch": 2, "optimizer": {"lr": 1e-3}},
    finetune={"iterations": 10, "batch": 2, "optimizer": {"lr": 5e-4}},
    calibration=4,
    surgery_gt_crop=64,
    blocks=[3, 1],
    series=[Series(strategy="positional", finetune="distill"),
            Series(strategy="block_influence", finetune="distill", latency=0.5, subpixel=3)],
    eval_sets=[EvalSet(dataset="builtin", label="builtin-test")],
    metrics=["psnr", "ssim"],
    latency_lr_size=(64, 96),
    latency_repeats=3,
    tp_bisection_steps=4,
    device="cpu",
    threads=1,
)

PRESETS = {p.name: p for p in (QUICK, PAPER, SMOKE)}


def get_preset(name: str) -> BenchPreset:
    if name not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]
