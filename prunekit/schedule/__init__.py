"""train -> prune -> fine-tune engine: a validated run config, a task from a plugin (or `ModelTask`
for a plain user model), atomic resumable checkpoints, distillation and torchrun DDP.

    from prunekit.schedule import run
    result = run("configs/my_run.yaml")          # -> RunResult(model, plan, history, run_dir, metrics)
"""

from prunekit.schedule.config import (DistillConfig, FinetuneStage, IterativeConfig, LRSchedule, OptimizerConfig,
                                      PruneStage, RunConfig, TaskConfig, TrainStage)
from prunekit.schedule.engine import RunResult, StepInfo, build_task, run
from prunekit.schedule.task import ModelTask, StepContext, Task

__all__ = [
    "DistillConfig", "FinetuneStage", "IterativeConfig", "LRSchedule", "ModelTask", "OptimizerConfig",
    "PruneStage", "RunConfig", "RunResult", "StepContext", "StepInfo", "Task", "TaskConfig", "TrainStage",
    "build_task", "run",
]
