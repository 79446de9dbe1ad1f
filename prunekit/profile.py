"""Model cost: parameter counts, FLOPs and latency.

FLOPs follow the MAC convention of fvcore: one fused multiply-add counts as ONE FLOP, so a
figure here is half of a "2 x MACs" number. On top of fvcore's defaults this module adds
handles so that the ops super-resolution models use are all counted consistently:

* bicubic / bilinear interpolation: taps per output element (16 / 4) x output elements
  (the output element count already includes the channels);
* grid_sample: 4 taps (bilinear), 1 (nearest) or 16 (bicubic) per output element;
* element-wise add / sub / mul / div (residual adds, scaling): 1 per output element;
* pixel_shuffle / pixel_unshuffle, padding, grid construction (linspace / meshgrid) and common
  activations / max-pooling: 0 (data movement or comparisons, like fvcore's own treatment of ReLU);
* ConvTranspose: fvcore counts it at its INPUT resolution (N x Cin x Cout/g x k^2 x Hin x Win,
  the true number of MACs); pass ``conv_transpose="output"`` to count it at the output
  resolution as some published profilers did;
* attention: fused multi-head attention (aten::_native_multi_head_attention, nn.MultiheadAttention's
  inference path) counts its q/k/v and output projections, Q K^T, the softmax and A V;
  scaled_dot_product_attention counts Q K^T, the softmax and A V; softmax is 1 per element;
* average pooling: kernel taps per output element; adaptive average pooling: 1 per input element;
* torchvision::deform_conv2d: the convolution's MACs plus 4 bilinear taps per sampled input value.

Ops left without a handle are returned in `FlopReport.unsupported` and logged, never silently
dropped. When the model cannot be traced at all (a forward whose Python logic breaks under
torch.jit tracing), counting falls back to forward hooks on the layers (conv, linear, norms,
nn.MultiheadAttention, pooling, upsampling by their shapes); `FlopReport.method` is then "hooks"
and `FlopReport.uncounted` says what such a count misses.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import statistics
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal

import torch
from torch import nn

from prunekit.errors import ConfigError, InputShapeError
from prunekit.nested import map_tensors

logger = logging.getLogger(__name__)

ExampleInputs = Any  # a tensor, a tuple of positional args, or a dict of keyword args

_ELEMENTWISE_OPS = (
    "aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::rsub",
    "aten::mul", "aten::mul_", "aten::div", "aten::div_",
)
_FREE_OPS = (
    "aten::pixel_shuffle", "aten::pixel_unshuffle",
    "aten::leaky_relu", "aten::leaky_relu_", "aten::sigmoid", "aten::sigmoid_",
    "aten::tanh", "aten::tanh_", "aten::gelu", "aten::silu", "aten::silu_",
    "aten::hardtanh", "aten::hardtanh_", "aten::elu", "aten::elu_", "aten::prelu",
    "aten::max_pool2d", "aten::neg",
    "aten::pad", "aten::reflection_pad2d", "aten::replication_pad2d", "aten::linspace", "aten::meshgrid",
)
_GRID_SAMPLE_TAPS = {0: 4, 1: 1, 2: 16}  # interpolation_mode: bilinear, nearest, bicubic


def split_inputs(example_inputs: ExampleInputs) -> tuple[tuple, dict]:
    """Normalise example inputs (tensor | tuple | list | dict) into (args, kwargs)."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    raise InputShapeError(
        f"example_inputs must be a tensor, a tuple of positional args or a dict of keyword "
        f"args; got {type(example_inputs).__name__}"
    )


def input_shapes(example_inputs: ExampleInputs) -> dict[str, list[int]]:
    """Shapes of the tensor inputs, keyed `arg0`, `arg1`, ... or by keyword."""
    args, kwargs = split_inputs(example_inputs)
    named = [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
    return {k: list(v.shape) for k, v in named if isinstance(v, torch.Tensor)}


def call_model(model: nn.Module, example_inputs: ExampleInputs, what: str | None = None) -> Any:
    """Run `model` on example inputs given in any of the accepted forms. With `what` (e.g. "a
    calibration batch"), a failure is an InputShapeError naming it and the input shapes."""
    args, kwargs = split_inputs(example_inputs)
    if what is None:
        return model(*args, **kwargs)
    try:
        return model(*args, **kwargs)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise InputShapeError(
            f"{type(model).__name__} failed on {what} with shapes {input_shapes(example_inputs)}: {exc}"
        ) from exc


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def params_by_module(model: nn.Module) -> dict[str, int]:
    """Parameters under every module, recursively, keyed by dotted name ("" = whole model)."""
    return {name: count_params(module) for name, module in model.named_modules()}


@dataclass
class FlopReport:
    """Result of one FLOP count. All numbers are MACs (one multiply-add = 1 FLOP)."""

    total: int
    by_module: dict[str, int]
    by_operator: dict[str, int]
    unsupported: dict[str, int] = field(default_factory=dict)  # op name -> occurrences
    conv_transpose: str = "input"
    method: Literal["trace", "hooks"] = "trace"
    uncounted: list[str] = field(default_factory=list)  # what a hook count misses (method "hooks")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.train(training)


def _shape(value: torch._C.Value) -> list[int]:
    return list(value.type().sizes())


def _numel(value: torch._C.Value) -> int:
    return math.prod(_shape(value))


def _per_output(taps: int) -> Callable:
    def handle(inputs: list, outputs: list) -> int:
        return taps * _numel(outputs[0])

    return handle


def _grid_sampler(inputs: list, outputs: list) -> int:
    mode = inputs[2].toIValue()
    return _GRID_SAMPLE_TAPS.get(int(mode), 4) * _numel(outputs[0])


def _convolution(conv_transpose: str) -> Callable:
    def handle(inputs: list, outputs: list) -> Counter:
        x_shape, w_shape, out_shape = _shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0])
        transposed = bool(inputs[6].toIValue())
        spatial = x_shape[2:] if transposed and conv_transpose == "input" else out_shape[2:]
        return Counter({"conv": x_shape[0] * math.prod(w_shape) * math.prod(spatial)})

    return handle


def _multi_head_attention(inputs: list, outputs: list) -> int:
    """aten::_native_multi_head_attention(query, key, value, embed_dim, num_head, ...), batch first."""
    b, length, e = _shape(inputs[0])
    source = _shape(inputs[1])[1]
    heads = int(inputs[4].toIValue())
    return _attention_macs(b, length, source, e, heads)


def _attention_macs(b: int, length: int, source: int, e: int, heads: int) -> int:
    """q/k/v projections + Q K^T + A V + output projection + softmax (1 per weight)."""
    return b * (length * e * e + 2 * source * e * e + 2 * length * source * e + length * e * e + heads * length * source)


def _sdpa(inputs: list, outputs: list) -> int:
    q, k, v = _shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1] + 1)  # Q K^T, A V, softmax


def _int_list(value: torch._C.Value) -> list[int]:
    """A traced int[] argument (a constant, or a prim::ListConstruct of constants)."""
    constant = value.toIValue()
    if constant is not None:
        return list(constant)
    return [int(v.toIValue()) for v in value.node().inputs()]


def _avg_pool(inputs: list, outputs: list) -> int:
    return math.prod(_int_list(inputs[1])) * _numel(outputs[0])


def _per_input(inputs: list, outputs: list) -> int:
    return _numel(inputs[0])


def _deform_conv(inputs: list, outputs: list) -> int:
    """torchvision::deform_conv2d(input, weight, offset, mask, bias, ...): conv MACs + sampling."""
    x_shape, w_shape, out_shape = _shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0])
    n, cin = x_shape[0], x_shape[1]
    taps = w_shape[2] * w_shape[3] * out_shape[2] * out_shape[3]
    return n * math.prod(w_shape) * out_shape[2] * out_shape[3] + 4 * n * cin * taps


def _wrap_kwargs(model: nn.Module, kwargs: dict) -> tuple[nn.Module, tuple, str]:
    """fvcore traces positional args only; adapt a kwargs call and say which prefix to strip."""
    if not kwargs:
        return model, (), ""
    names = list(kwargs)

    class _KwargsAdapter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *values: Any) -> Any:
            return self.inner(**dict(zip(names, values)))

    return _KwargsAdapter(), tuple(kwargs.values()), "inner"


def flop_report(
    model: nn.Module,
    example_inputs: ExampleInputs,
    conv_transpose: Literal["input", "output"] = "input",
) -> FlopReport:
    """Count FLOPs (MACs) of one forward pass, per module and per operator.

    The model runs in eval mode under no_grad (BatchNorm statistics are not touched) and its
    original train/eval mode is restored afterwards.
    """
    with warnings.catch_warnings():  # fvcore's import triggers torch.jit deprecation notices
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

    if conv_transpose not in ("input", "output"):
        raise ConfigError(f"conv_transpose must be 'input' or 'output', got {conv_transpose!r}")
    args, kwargs = split_inputs(example_inputs)
    traced, kw_args, prefix = _wrap_kwargs(model, kwargs)
    args = args + kw_args
    handles: dict[str, Callable | None] = {
        "aten::_convolution": _convolution(conv_transpose),
        "aten::upsample_bicubic2d": _per_output(16),
        "aten::upsample_bilinear2d": _per_output(4),
        "aten::grid_sampler": _grid_sampler,
    }
    handles.update({op: _per_output(1) for op in _ELEMENTWISE_OPS})
    handles.update({op: None for op in _FREE_OPS})
    handles.update({
        "aten::_native_multi_head_attention": _multi_head_attention,
        "aten::scaled_dot_product_attention": _sdpa,
        "aten::softmax": _per_output(1), "aten::_softmax": _per_output(1),
        "aten::avg_pool1d": _avg_pool, "aten::avg_pool2d": _avg_pool, "aten::avg_pool3d": _avg_pool,
        "aten::adaptive_avg_pool1d": _per_input, "aten::adaptive_avg_pool2d": _per_input,
        "aten::adaptive_avg_pool3d": _per_input, "torchvision::deform_conv2d": _deform_conv,
    })

    with eval_mode(model):
        analysis = FlopCountAnalysis(traced, args)
        analysis.set_op_handle(**handles)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                total = int(analysis.total())
            except Exception as exc:  # noqa: BLE001 - tracing fails in many ways; counting must not
                report = hook_report(model, example_inputs, conv_transpose)
                logger.warning(
                    "the model cannot be traced (%s: %s); FLOPs counted with layer hooks, which miss: %s",
                    type(exc).__name__, exc, "; ".join(report.uncounted),
                )
                return report
            raw_by_module = analysis.by_module()
            by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
            unsupported = {k: int(v) for k, v in analysis.unsupported_ops().items()}

    by_module: dict[str, int] = {}
    for name, value in raw_by_module.items():
        if prefix:
            if name == "":
                continue
            name = "" if name == prefix else name[len(prefix) + 1 :]
        by_module[name] = int(value)
    canonical = {id(m): n for n, m in model.named_modules()}
    for name, module in model.named_modules(remove_duplicate=False):
        if name not in by_module and canonical[id(module)] in by_module:  # a shared module's alias
            by_module[name] = by_module[canonical[id(module)]]
    if unsupported:
        logger.warning("FLOPs not counted for ops without a handle: %s", unsupported)
    return FlopReport(total, by_module, by_operator, unsupported, conv_transpose)


_BY_HOOKS_MISSES = (
    "operations written in forward() bodies outside nn layers (element-wise ops, matmul, "
    "interpolation, functional attention)"
)
_INTERPOLATION_TAPS = {"nearest": 0, "bilinear": 4, "linear": 2, "bicubic": 16, "trilinear": 8}
_FREE_LAYERS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.Hardtanh,
    nn.Hardswish, nn.Mish, nn.Dropout, nn.Identity, nn.PixelShuffle, nn.PixelUnshuffle, nn.Flatten,
    nn.Unflatten, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d, nn.ZeroPad2d,
    nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ConstantPad2d,
)


def _layer_macs(module: nn.Module, args: tuple, out: Any, conv_transpose: str) -> tuple[str, int] | None:
    """(kind, MACs) of one call of a known layer from its shapes (the trace handles' conventions)."""
    x = next((a for a in args if isinstance(a, torch.Tensor)), None)
    y = out[0] if isinstance(out, (tuple, list)) else out
    if x is None or not isinstance(y, torch.Tensor):
        return None
    if isinstance(module, nn.modules.conv._ConvNd):
        w = module.weight.shape
        transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
        spatial = x.shape[2:] if transposed and conv_transpose == "input" else y.shape[2:]
        return "conv", x.shape[0] * math.prod(w) * math.prod(spatial)
    if isinstance(module, nn.Linear):
        return "linear", y.numel() * module.in_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batch_norm", x.numel() * (2 if module.affine else 1)
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)):
        affine = getattr(module, "elementwise_affine", getattr(module, "affine", False))
        return "norm", x.numel() * (5 if affine else 4)
    if isinstance(module, nn.MultiheadAttention):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        query, key = (tensors[0], tensors[1]) if len(tensors) > 1 else (x, x)
        if query.dim() == 2:  # unbatched (L, E)
            b, length, source = 1, query.shape[0], key.shape[0]
        elif module.batch_first:
            b, length, source = query.shape[0], query.shape[1], key.shape[1]
        else:
            b, length, source = query.shape[1], query.shape[0], key.shape[0]
        return "attention", _attention_macs(b, length, source, module.embed_dim, module.num_heads)
    if isinstance(module, nn.Upsample):
        return "upsample", _INTERPOLATION_TAPS.get(module.mode, 4) * y.numel()
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        kernel = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * (x.dim() - 2)
        return "avg_pool", math.prod(kernel) * y.numel()
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return "adaptive_avg_pool", x.numel()
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return "softmax", y.numel()
    return None


def hook_report(
    model: nn.Module, example_inputs: ExampleInputs, conv_transpose: Literal["input", "output"] = "input"
) -> FlopReport:
    """Count FLOPs (MACs) with forward hooks on known layers, from their input / output shapes:
    works on any model that runs, but misses what `FlopReport.uncounted` lists."""
    names = {id(m): n for n, m in model.named_modules()}
    own: Counter = Counter()
    by_kind: Counter = Counter()
    unknown: set[str] = set()
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            pass  # its projections are used functionally, so no child hook fires
        elif any(True for _ in module.children()) and not isinstance(module, nn.modules.conv._ConvNd):
            if any(True for _ in module.parameters(recurse=False)):
                unknown.add(f"{name} ({type(module).__name__}): its own parameters' computation")
            continue

        def hook(mod: nn.Module, args: tuple, out: Any, name: str = name) -> None:
            found = _layer_macs(mod, args, out, conv_transpose)
            if found is not None:
                own[name] += found[1]
                by_kind[found[0]] += found[1]
            elif not isinstance(mod, _FREE_LAYERS) and any(True for _ in mod.parameters()):
                unknown.add(f"{name} ({type(mod).__name__}): no formula for this layer")

        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            try:
                call_model(model, example_inputs)
            except (RuntimeError, TypeError, ValueError, IndexError, KeyError) as exc:
                raise InputShapeError(f"the model fails on the example inputs: {type(exc).__name__}: {exc}") from exc
    finally:
        for h in handles:
            h.remove()
    by_module = {n: sum(v for k, v in own.items() if k == n or not n or k.startswith(n + ".")) for n in names.values()}
    total = by_module.get("", sum(own.values()))
    return FlopReport(int(total), by_module, dict(by_kind), {}, conv_transpose, "hooks",
                      [_BY_HOOKS_MISSES] + sorted(unknown))


def flops(model: nn.Module, example_inputs: ExampleInputs, **kwargs: Any) -> int:
    """Total FLOPs (MACs: one multiply-add = 1) of one forward pass. See `flop_report`."""
    return flop_report(model, example_inputs, **kwargs).total


def flops_by_module(model: nn.Module, example_inputs: ExampleInputs, **kwargs: Any) -> dict[str, int]:
    """FLOPs (MACs) per module, keyed by dotted name ("" = whole model). See `flop_report`."""
    return flop_report(model, example_inputs, **kwargs).by_module


def latency(
    model: nn.Module,
    example_inputs: ExampleInputs,
    warmup: int = 3,
    repeats: int = 10,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Wall-clock time of one forward pass in inference mode.

    `device=None` uses the device of the model's first parameter (CPU if it has none); another
    device runs a copy, so the caller's model is never moved. CUDA is synchronised around each
    timed call so the numbers cover the kernels, not just their launch.
    """
    if warmup < 0 or repeats < 1:
        raise ConfigError(f"latency needs warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    first = next(model.parameters(), None)
    current = first.device if first is not None else torch.device("cpu")
    target = torch.device(device) if device is not None else current
    same = target.type == current.type and target.index in (None, current.index)
    runner = model if same else copy.deepcopy(model).to(target)
    inputs = map_tensors(lambda t: t.to(target), example_inputs)
    sync = torch.cuda.synchronize if target.type == "cuda" else (lambda: None)
    times: list[float] = []
    with eval_mode(runner), torch.inference_mode():
        for _ in range(warmup):
            call_model(runner, inputs)
        sync()
        for _ in range(repeats):
            start = time.perf_counter()
            call_model(runner, inputs)
            sync()
            times.append((time.perf_counter() - start) * 1000.0)
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": p90,
        "mean_ms": statistics.fmean(ordered),
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "repeats": repeats,
        "warmup": warmup,
        "device": str(target),
    }
