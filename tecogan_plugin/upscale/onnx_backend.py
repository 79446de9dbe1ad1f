"""Run an exported FRNet step (`prunekit export CKPT --format onnx`) with ONNX Runtime.

`OnnxStep` has FRNet's step signature and `scale`, so the streaming engine, the tiling and the
temporal warm-up drive it exactly as they drive the PyTorch model: `prunekit upscale --model
step.onnx` exercises the deployed file end to end.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from prunekit.errors import CheckpointError, ConfigError

STEP_KIND = "tecogan.frnet.step"  # metadata written by tecogan_plugin.nets.frnet_export
STEP_INPUTS = ["lr_curr", "lr_prev", "hr_prev"]


class OnnxStep:
    """One recurrent FRNet step in ONNX Runtime: (lr_curr, lr_prev, hr_prev) tensors -> HR tensor (CPU)."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX file does not exist")
        self.device = torch.device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError("device cuda with --backend onnxruntime needs onnxruntime-gpu (CUDAExecutionProvider)")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001  onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        names = [i.name for i in self.session.get_inputs()]
        if meta.get("prunekit.kind") != STEP_KIND or names != STEP_INPUTS:
            raise CheckpointError(
                f"{path}: not an exported FRNet step (expected inputs {STEP_INPUTS} and metadata "
                f"prunekit.kind={STEP_KIND}, got inputs {names}); export one with `prunekit export CKPT --out FILE`"
            )
        self.scale = int(meta["scale"])
        self.path = path

    def __call__(self, lr_curr: torch.Tensor, lr_prev: torch.Tensor, hr_prev: torch.Tensor) -> torch.Tensor:
        feed = {n: np.ascontiguousarray(t.detach().float().cpu().numpy()) for n, t in
                zip(STEP_INPUTS, (lr_curr, lr_prev, hr_prev))}
        (hr,) = self.session.run(None, feed)
        return torch.from_numpy(hr).to(lr_curr.device)
