"""Distillation from the frozen, unpruned teacher during fine-tuning.

It needs no help from the task: a forward hook on the student's root module sees every call the
task's loss makes, runs the teacher on the same inputs (no grad) and accumulates a Charbonnier/L1
distance between the floating-point tensors of both outputs. Optional feature matching hooks the
outputs of the kept units, paired through their original path: units dropped from a Sequential/ModuleList
re-index their siblings, so teacher and student paths are both mapped from the dense model's paths
through their removed lists (`renumbered_path`)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from prunekit.nested import tensors_in
from prunekit.removal import renumbered_path  # noqa: F401  (its home before prunekit.removal)
from prunekit.schedule.config import DistillConfig


def _charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return torch.sqrt((a - b) ** 2 + eps).mean()


def _distance(kind: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _charbonnier(a, b) if kind == "charbonnier" else (a - b).abs().mean()


def _float_tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tensors_in(tree) if t.is_floating_point()]


class Distiller:
    """Hooks a student to a teacher. `pop_loss()` returns the weighted distillation loss accumulated
    since the last call (0 when the student was not called) and the per-term values for logging."""

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: DistillConfig, pairs: dict[str, str],
                 student_entry: nn.Module | None = None, teacher_entry: nn.Module | None = None,
                 select: Callable[[Any], Any] | None = None) -> None:
        """`pairs` maps teacher unit paths to the student paths of the same (kept) units. The task's
        loss calls `student_entry` (default: the student; e.g. a module running a whole sequence);
        the teacher is run through `teacher_entry` on the same inputs. `select(output)` picks the
        tensors to distill (default: every floating-point tensor of the output)."""
        self.cfg = cfg
        self.select = select
        self.teacher = teacher_entry if teacher_entry is not None else teacher
        teacher.eval().requires_grad_(False)
        self._out = torch.zeros(())
        self._feat = torch.zeros(())
        self._calls = 0
        self._student_feats: dict[str, torch.Tensor] = {}
        self._teacher_feats: dict[str, torch.Tensor] = {}
        entry = student_entry if student_entry is not None else student
        self._handles = [entry.register_forward_hook(self._on_student, with_kwargs=True)]
        self.feature_pairs: dict[str, str] = {}
        if cfg.features:
            student_modules = dict(student.named_modules())
            teacher_modules = dict(teacher.named_modules())
            for t_path, s_path in pairs.items():
                if s_path not in student_modules or t_path not in teacher_modules:
                    continue
                self.feature_pairs[t_path] = s_path
                self._handles.append(student_modules[s_path].register_forward_hook(self._store(self._student_feats, t_path)))
                self._handles.append(teacher_modules[t_path].register_forward_hook(self._store(self._teacher_feats, t_path)))

    @staticmethod
    def _store(into: dict[str, torch.Tensor], key: str):
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            tensors = _float_tensors(output)
            if tensors:
                into[key] = tensors[0]

        return hook

    def _on_student(self, _module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not torch.is_grad_enabled():  # an evaluation inside the phase, not a training call
            self._student_feats.clear()
            return
        self._teacher_feats.clear()
        student_feats = dict(self._student_feats)
        self._student_feats.clear()
        with torch.no_grad():
            target = self.teacher(*args, **kwargs)
        if self.select is not None:
            output, target = self.select(output), self.select(target)
        pairs = [(s, t) for s, t in zip(_float_tensors(output), _float_tensors(target)) if s.shape == t.shape]
        if pairs:
            self._out = self._out + sum(_distance(self.cfg.loss, s, t) for s, t in pairs) / len(pairs)
        feats = [(student_feats[k], self._teacher_feats[k]) for k in student_feats
                 if k in self._teacher_feats and student_feats[k].shape == self._teacher_feats[k].shape]
        if feats:
            self._feat = self._feat + sum(_distance(self.cfg.loss, s, t) for s, t in feats) / len(feats)
        self._teacher_feats.clear()
        self._calls += 1

    def pop_loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted distillation loss since the last pop, averaged over student calls."""
        calls = max(self._calls, 1)
        out, feat = self._out / calls, self._feat / calls
        self._out, self._feat, self._calls = torch.zeros(()), torch.zeros(()), 0
        total = self.cfg.weight * out + (self.cfg.feature_weight * feat if self.cfg.features else 0.0)
        logs = {"distill_out": float(out.detach())}
        if self.cfg.features:
            logs["distill_feat"] = float(feat.detach())
        return total, logs

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
