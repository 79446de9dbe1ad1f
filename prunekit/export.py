"""Export a (pruned) model to ONNX and prove the file computes what the PyTorch model does.

What is exported is a `Signature`: by default the model's `forward` on its spec's example inputs
(plain non-tensor arguments are fixed at their spec values); a model's ModelEntry may supply its
own (FRNet: one recurrent step whose frame size is dynamic). After writing, the file is run with
ONNX Runtime on the signature's inputs and on its extra check inputs (e.g. another frame size) and
compared with PyTorch; above `atol` nothing is written and ExportError says by how much.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.errors import ExportError
from prunekit.fileio import atomic_path
from prunekit.nested import tensors_in
from prunekit.spec import ModelSpec, TensorInput, ValueInput, entry

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4
BUILD_KEY = "prunekit.build"  # ONNX metadata naming the model; also marks the files `prunekit export` wrote


@dataclass
class Signature:
    """What to export: `module(*inputs)` with these input/output names and dynamic axes;
    `checks` are further input tuples the exported file must also match PyTorch on."""

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str] | None = None
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    checks: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class ExportReport:
    path: Path
    opset: int
    diffs: list[tuple[str, float]]  # (input shapes, largest |ONNX - PyTorch|) per input set

    @property
    def max_abs_diff(self) -> float:
        return max(d for _, d in self.diffs)


class _SpecCall(nn.Module):
    """Calls `model` as its spec says: tensors arrive positionally, plain values are fixed."""

    def __init__(self, model: nn.Module, inputs: list[TensorInput | ValueInput]) -> None:
        super().__init__()
        self.model = model
        self.slots = [(i.name, i.keyword, isinstance(i, TensorInput), getattr(i, "value", None)) for i in inputs]

    def forward(self, *tensors: torch.Tensor) -> Any:
        given = iter(tensors)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, keyword, is_tensor, fixed in self.slots:
            v = next(given) if is_tensor else fixed
            if keyword:
                kwargs[name] = v
            else:
                args.append(v)
        return self.model(*args, **kwargs)


def _tensors(spec: ModelSpec, seed: int) -> tuple[torch.Tensor, ...]:
    made = spec.example_inputs(seed)
    values = made.values() if isinstance(made, dict) else made
    return tuple(v for v in values if isinstance(v, torch.Tensor))


def default_signature(model: nn.Module, spec: ModelSpec) -> Signature:
    """forward on the spec's example inputs, fixed shapes; checked again on a second draw of values."""
    if not any(isinstance(i, TensorInput) for i in spec.inputs):
        raise ExportError(f"the spec of {spec.build} has no tensor inputs to export a graph for")
    return Signature(
        module=_SpecCall(model, list(spec.inputs)),
        inputs=_tensors(spec, spec.seed),
        input_names=[i.name for i in spec.inputs if isinstance(i, TensorInput)],
        checks=[_tensors(spec, spec.seed + 1)],
    )


def signature_for(model: nn.Module, spec: ModelSpec) -> Signature:
    """The model entry's export hook if it has one, else `default_signature`."""
    found = entry(spec.build)
    if found is not None and found.export is not None:
        return found.export(model, spec)
    return default_signature(model, spec)


def _shapes(inputs: tuple[torch.Tensor, ...]) -> str:
    return ", ".join("x".join(map(str, t.shape)) for t in inputs)


def _compare(session: Any, sig: Signature, inputs: tuple[torch.Tensor, ...]) -> float:
    with torch.inference_mode():
        expected = [t.detach().cpu().numpy() for t in tensors_in(sig.module(*inputs))]
    wanted = {i.name for i in session.get_inputs()}  # ONNX drops inputs the graph does not use
    feed = {n: t.detach().cpu().numpy() for n, t in zip(sig.input_names, inputs) if n in wanted}
    got = session.run(None, feed)
    if len(got) != len(expected):
        raise ExportError(f"the ONNX graph has {len(got)} outputs, PyTorch gives {len(expected)}")
    worst = 0.0
    for i, (a, b) in enumerate(zip(got, expected)):
        if a.shape != b.shape:
            raise ExportError(f"output {i} for inputs {_shapes(inputs)}: ONNX shape {a.shape}, PyTorch {b.shape}")
        if a.size:
            worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    return worst


def verify_onnx(path: str | os.PathLike, sig: Signature, threads: int | None = None) -> list[tuple[str, float]]:
    """Run the ONNX file with ONNX Runtime (CPU) on every input set; (shapes, largest abs difference)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [(_shapes(x), _compare(session, sig, x)) for x in [sig.inputs, *sig.checks]]


def export_onnx(
    model: nn.Module,
    spec: ModelSpec,
    out: str | os.PathLike,
    *,
    atol: float = DEFAULT_ATOL,
    opset: int = DEFAULT_OPSET,
) -> ExportReport:
    """Write `out` (atomically) as ONNX and check it with ONNX Runtime; ExportError above `atol`."""
    import onnx

    sig = signature_for(model.eval(), spec)
    out = Path(out)
    with atomic_path(out, suffix=".onnx") as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
                torch.onnx.export(sig.module, sig.inputs, str(tmp), input_names=sig.input_names,
                                  output_names=sig.output_names, dynamic_axes=sig.dynamic_axes or None,
                                  opset_version=opset, dynamo=False)
        except Exception as exc:  # noqa: BLE001  torch.onnx raises many kinds; name the model and the cause
            raise ExportError(f"torch.onnx.export failed for {spec.build}: {type(exc).__name__}: {exc}") from exc
        graph = onnx.load(str(tmp))
        for key, val in {BUILD_KEY: spec.build, **sig.metadata}.items():
            graph.metadata_props.add(key=key, value=val)
        onnx.save(graph, str(tmp))
        diffs = verify_onnx(tmp, sig)
        worst = max(d for _, d in diffs)
        if not worst <= atol:
            detail = "; ".join(f"inputs {s}: {d:.3g}" for s, d in diffs)
            raise ExportError(f"the ONNX graph differs from PyTorch by {worst:.3g} > atol {atol:g} ({detail}); "
                              f"{out} was not written")
    return ExportReport(out, opset, diffs)
