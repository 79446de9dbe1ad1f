"""What a plugin supplies to the schedule engine: the `Task` protocol, and `ModelTask` for a plain
user model + data + loss (no plugin needed).

A task owns everything model-specific: building the dense architecture, its data, its loss and its
evaluation. The engine owns the optimiser of the model, the schedule, pruning, distillation,
checkpoints and DDP. GAN-style tasks that need their own modules and optimisers (a discriminator)
keep them inside the task and expose them through `state_dict` / `load_state_dict`, so checkpoints
hold them too; `setup(ctx)` hands them the DDP wrapper and device before training."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

import torch
from torch import nn

from prunekit.checkpoint import load_weights
from prunekit.nested import map_tensors
from prunekit.schedule.checkpoint import read_state_dict
from prunekit.strategies import Calibration


@dataclass
class StepContext:
    """What the engine tells a task about the running process (given to `Task.setup`)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    wrap: Callable[[nn.Module], nn.Module] = lambda m: m  # DDP-wraps a task-owned module when distributed
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor] = lambda t: t  # averages a tensor over ranks


@runtime_checkable
class Task(Protocol):
    """What every task has. Its optional members are listed in `TaskHooks` (with what the engine does
    without them). `train_batches` must draw its randomness from `seed` only (its own generator), so
    that a resumed run sees the same batches; it may accept `batch_size` (the stage's `batch`) and
    `start` (skip to the n-th batch quickly on resume; otherwise the engine skips by drawing)."""

    def build_model(self) -> nn.Module: ...

    def example_inputs(self) -> Any: ...

    def train_batches(self, seed: int, rank: int, world_size: int) -> Iterator[Any]: ...

    def loss(self, model: nn.Module, batch: Any, teacher: nn.Module | None = None, step: int = 0
             ) -> tuple[torch.Tensor, dict[str, float]]: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    def calibration(self, n: int) -> Any: ...


def _load_init(model: nn.Module, path: str | Path) -> nn.Module:
    load_weights(model, read_state_dict(Path(path)), str(path))
    return model


@dataclass(frozen=True)
class TaskHooks:
    """A task's optional members, each the task's own when it defines it, else the default below.
    The engine calls these, never the task's attributes directly, so this is the one place that looks.

    - `layout`: a prunekit Layout restricting which units may be pruned (default: none);
    - `setup(ctx)`: called once when the run starts or resumes, before any checkpoint is loaded (e.g.
      build a discriminator; default: nothing);
    - `state_dict() -> dict` / `load_state_dict(dict)`: extra state (task-owned modules, optimisers) that
      a checkpoint must hold; values must be tensors, numbers, strings, lists or dicts (loaded
      weights_only; default: none);
    - `load_init(model, path) -> nn.Module`: load an initial checkpoint file (e.g. a published one;
      default: a state_dict file, .safetensors or weights-only torch.save);
    - `train_module(model) -> nn.Module`: the module the loss calls during training, sharing the model's
      parameters (e.g. one whose forward runs a whole recurrent sequence); DDP wraps this one, and
      output distillation hooks it, the teacher going through `train_module(teacher)` (default: the model);
    - `distill_output(output)`: which tensors of the training output to distill (default None: all floats).
    """

    layout: Any = None
    setup: Callable[[StepContext], None] = lambda ctx: None
    state_dict: Callable[[], dict[str, Any] | None] = lambda: None
    load_state_dict: Callable[[dict[str, Any]], None] = lambda state: None
    load_init: Callable[[nn.Module, str | Path], nn.Module] = _load_init
    train_module: Callable[[nn.Module], nn.Module] = lambda model: model
    distill_output: Callable[[Any], Any] | None = None

    @classmethod
    def of(cls, task: Task) -> TaskHooks:
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: getattr(task, name) for name in names if hasattr(task, name)})


def call_train_batches(task: Task, seed: int, rank: int, world_size: int, batch_size: int | None,
                       start: int) -> Iterator[Any]:
    """An iterator positioned at batch `start`, passing only the keywords the task accepts."""
    params = inspect.signature(task.train_batches).parameters
    kwargs: dict[str, Any] = {}
    if batch_size is not None:
        if "batch_size" not in params:
            raise TypeError(f"{type(task).__name__}.train_batches takes no batch_size, but the stage sets batch")
        kwargs["batch_size"] = batch_size
    if "start" in params:
        return iter(task.train_batches(seed, rank, world_size, start=start, **kwargs))
    it = iter(task.train_batches(seed, rank, world_size, **kwargs))
    for _ in range(start):
        next(it)
    return it


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch, or of a Calibration, moved to `device`; other values kept."""
    if isinstance(batch, Calibration):
        return dataclasses.replace(batch, inputs=to_device(batch.inputs, device),
                                   targets=to_device(batch.targets, device))
    return map_tensors(lambda t: t.to(device), batch)


@dataclass
class ModelTask:
    """A task from plain pieces, for a model trained by the user's own loop (no plugin).

    `build` returns the dense architecture (weights are loaded from `weights` or `init_checkpoint`);
    `data` is a sequence of `(input, target)` batches, sampled with a generator seeded per run/rank;
    `loss_fn(output, target)` is the task loss; `evaluate(model)` returns metrics (default: mean
    loss on `eval_data`, or on `data` when absent)."""

    build: Callable[[], nn.Module]
    data: list[tuple[torch.Tensor, torch.Tensor]]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    weights: str | Path | dict[str, torch.Tensor] | None = None
    eval_data: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None
    layout: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def build_model(self) -> nn.Module:
        return self._initial_weights(self.build())

    def load_init(self, model: nn.Module, path: str | Path) -> nn.Module:
        return _load_init(model, path)

    def _initial_weights(self, model: nn.Module) -> nn.Module:
        """Apply `weights` (the user's trained state dict or its file) to a freshly built model."""
        if self.weights is None:
            return model
        if isinstance(self.weights, dict):
            load_weights(model, self.weights, "ModelTask.weights")
            return model
        return self.load_init(model, self.weights)

    def example_inputs(self) -> Any:
        return self.data[0][0][:1]

    def train_batches(self, seed: int, rank: int, world_size: int) -> Iterator[Any]:
        gen = torch.Generator().manual_seed(seed * 1000 + rank)
        for _ in itertools.count():
            order = torch.randperm(len(self.data), generator=gen).tolist()
            for i in order[rank::world_size] or order[:1]:
                yield self.data[i]

    def loss(self, model: nn.Module, batch: Any, teacher: nn.Module | None = None, step: int = 0
             ) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = to_device(batch, next(model.parameters()).device)
        loss = self.loss_fn(model(x), y)
        return loss, {"task_loss": float(loss.detach())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        pairs: Iterable = self.eval_data if self.eval_data is not None else self.data
        losses, scores = [], []
        for x, y in pairs:
            out = model(x.to(device))
            losses.append(float(self.loss_fn(out, y.to(device))))
            if self.metric is not None:
                scores.append(float(self.metric(out, y.to(device))))
        result = {"eval_loss": sum(losses) / len(losses)}
        if scores:
            result["metric"] = sum(scores) / len(scores)
        return result

    def calibration(self, n: int) -> Any:
        return [x for x, _ in self.data[: max(n, 1)]]
