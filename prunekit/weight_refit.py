"""Least-squares refit: after channel pruning, each layer is refit to reproduce its dense layer.

Why: cutting channels leaves every layer after the cut reading fewer, or different, inputs than it
was trained on; healing then spends its first iterations undoing that. Channel pruning methods that
refit the next layer by least squares (He et al. 2017, "Channel Pruning"; Luo et al. 2017, ThiNet)
start healing much closer to the dense model. Here every Conv2d, ConvTranspose2d and Linear layer
of the pruned model, in the order they run, gets the weights that best map the inputs it now
receives (from the pruned, already refit layers before it) to the outputs its dense counterpart
produces on the same data, restricted to the channels it kept:

    W = argmin ||W X - Y||^2 + lam ||W - W0||^2,   lam = ridge * mean(diag(X X^T))

The pull towards the current weights W0 keeps layers with few samples (deep, low-resolution ones)
stable. A fit is kept only where it lowers the layer's error on the calibration data by more than
rounding.

Layers are paired with the dense model's by path. The channels a layer kept are found from its
weights, which pruning copies as an exact sub-tensor of the dense ones; a layer whose weights are
not such a sub-tensor (trained since, replaced, grouped) is left as it is and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.profile import call_model, eval_mode
from prunekit.strategies import Calibration


@dataclass
class LayerFit:
    """One refitted layer: calibration samples and features, mean squared error before and after."""

    path: str
    samples: int
    features: int
    error_before: float
    error_after: float


@dataclass
class RefitReport:
    fitted: list[LayerFit] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it was left as it is


def _kept(pruned: torch.Tensor, dense: torch.Tensor) -> tuple[list[int], list[int]] | None:
    """(kept output, kept input) indices with pruned == dense[out][:, in] exactly, or None."""
    if pruned.dim() != dense.dim() or pruned.shape[2:] != dense.shape[2:] or \
            pruned.shape[0] > dense.shape[0] or pruned.shape[1] > dense.shape[1]:
        return None
    p, d = (w.reshape(*w.shape[:2], -1) for w in (pruned, dense))  # (out, in, taps)
    kept_in: list[int] = []
    for i in range(p.shape[1]):
        # dense inputs whose column holds every kernel row of this pruned column (one row usually decides)
        candidates = torch.ones(d.shape[1], dtype=torch.bool)
        for row in p[:, i]:
            candidates &= (d == row).all(-1).any(0)
            if int(candidates.sum()) <= 1:
                break
        found = [j for j in candidates.nonzero().flatten().tolist() if j not in kept_in]
        if not found:
            return None
        kept_in.append(found[0])
    sub = d[:, kept_in]
    kept_out: list[int] = []
    for row in p:
        found = [j for j in (sub == row).flatten(1).all(1).nonzero().flatten().tolist() if j not in kept_out]
        if not found:
            return None
        kept_out.append(found[0])
    return kept_out, kept_in


def _conv_weight(layer: nn.Module) -> torch.Tensor:
    """The weight as (out, in, taps...) of an equivalent direct layer: a transposed convolution is a
    convolution of its zero-upsampled input with the flipped, transposed kernel."""
    w = layer.weight.detach()
    return w.transpose(0, 1).flip(2, 3) if isinstance(layer, nn.ConvTranspose2d) else w


def _set_conv_weight(layer: nn.Module, w: torch.Tensor) -> None:
    if isinstance(layer, nn.ConvTranspose2d):
        w = w.flip(2, 3).transpose(0, 1)
    layer.weight.copy_(w.reshape_as(layer.weight).to(layer.weight))


def _columns(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as a (features, samples) matrix: im2col for a convolution."""
    if isinstance(layer, nn.Linear):
        cols = x.reshape(-1, x.shape[-1]).t()
    else:
        padding: Any = layer.padding
        if isinstance(layer, nn.ConvTranspose2d):
            (sh, sw), (dh, dw) = layer.stride, layer.dilation
            up = x.new_zeros(*x.shape[:2], (x.shape[2] - 1) * sh + 1, (x.shape[3] - 1) * sw + 1)
            up[..., ::sh, ::sw] = x
            (kh, kw), (ph, pw), (oh, ow) = layer.kernel_size, layer.padding, layer.output_padding
            top, left = dh * (kh - 1) - ph, dw * (kw - 1) - pw
            x, padding = F.pad(up, (left, left + ow, top, top + oh)), 0
        elif layer.padding_mode != "zeros":
            x, padding = F.pad(x, layer._reversed_padding_repeated_twice, mode=layer.padding_mode), 0
        c = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=padding,
                     stride=1 if isinstance(layer, nn.ConvTranspose2d) else layer.stride)
        cols = c.permute(1, 0, 2).reshape(c.shape[1], -1)
    cols = cols.double()
    if layer.bias is not None:
        cols = torch.cat([cols, cols.new_ones(1, cols.shape[1])])
    return cols


def _rows(layer: nn.Module, y: torch.Tensor, kept_out: list[int]) -> torch.Tensor:
    """The dense layer's output, kept channels only, as a (channels, samples) matrix."""
    if isinstance(layer, nn.Linear):
        return y.reshape(-1, y.shape[-1])[:, kept_out].t().double()
    return y[:, kept_out].transpose(0, 1).reshape(len(kept_out), -1).double()


def _calls(model: nn.Module, layer: nn.Module, batch: Any, want_input: bool) -> list[torch.Tensor]:
    """Every input (or output) tensor of `layer` during one forward pass of `model` on `batch`."""
    seen: list[torch.Tensor] = []
    if want_input:
        handle = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    else:
        handle = layer.register_forward_hook(lambda _m, _a, out: seen.append(out.detach()))
    try:
        call_model(model, batch)
    finally:
        handle.remove()
    return seen


def _eligible(pruned: nn.Module, dense: nn.Module, report: RefitReport
              ) -> dict[str, tuple[nn.Module, nn.Module, list[int]]]:
    """Layers to refit: path -> (pruned layer, dense layer, kept output channels)."""
    dense_layers = dict(dense.named_modules())
    found = {}
    for path, layer in pruned.named_modules():
        if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if isinstance(layer, nn.modules.conv._ConvNd):
                report.skipped[path] = (f"{type(layer).__name__}: only Conv2d, ConvTranspose2d and Linear "
                                        "layers are refit")
            continue
        twin = dense_layers.get(path)
        if type(twin) is not type(layer):
            report.skipped[path] = "no layer of the same type at this path in the dense model"
            continue
        if not isinstance(layer, nn.Linear) and (
                layer.groups != 1 or twin.groups != 1 or layer.kernel_size != twin.kernel_size
                or layer.stride != twin.stride or layer.padding != twin.padding or layer.dilation != twin.dilation
                or getattr(layer, "output_padding", None) != getattr(twin, "output_padding", None)):
            report.skipped[path] = "grouped, or a different kernel / stride / padding than the dense layer"
            continue
        if (layer.bias is None) != (twin.bias is None):
            report.skipped[path] = "bias differs from the dense layer's"
            continue
        kept = _kept(_conv_weight(layer).cpu(), _conv_weight(twin).cpu())
        if kept is None:
            report.skipped[path] = "weights are not a sub-tensor of the dense layer's (trained or replaced since)"
            continue
        found[path] = (layer, twin, kept[0])
    return found


@torch.no_grad()
def refit(pruned: nn.Module, dense: nn.Module, calibration: Calibration | Iterable[Any],
          ridge: float = 1e-2) -> RefitReport:
    """Refit `pruned`'s Conv2d, ConvTranspose2d and Linear layers in place, in the order they run,
    so each maps its current inputs to the outputs of the layer at the same path in `dense` (kept
    channels); inputs are the calibration batches (a Calibration, or a list of example-input
    batches; both models on the batches' device)."""
    batches = list(calibration.inputs if isinstance(calibration, Calibration) else calibration)
    report = RefitReport()
    if not batches:
        return report
    layers = _eligible(pruned, dense, report)
    order: list[str] = []
    handles = [layer.register_forward_pre_hook(lambda _m, _a, p=path: order.append(p))
               for path, (layer, _, _) in layers.items()]
    try:
        with eval_mode(pruned):
            call_model(pruned, batches[0])
    finally:
        for h in handles:
            h.remove()
    with eval_mode(pruned), eval_mode(dense):
        for path in dict.fromkeys(order):
            layer, twin, kept_out = layers[path]
            fit = _refit_layer(path, pruned, dense, layer, twin, kept_out, batches, ridge)
            if isinstance(fit, str):
                report.skipped[path] = fit
            else:
                report.fitted.append(fit)
    return report


def _refit_layer(path: str, pruned: nn.Module, dense: nn.Module, layer: nn.Module, twin: nn.Module,
                 kept_out: list[int], batches: list[Any], ridge: float) -> LayerFit | str:
    """Accumulate X X^T, Y X^T and |Y|^2 over the batches, solve the ridge problem, keep a real gain;
    a string says why the layer was left alone."""
    gram = cross = None
    target_sq, samples = 0.0, 0
    for batch in batches:
        inputs, outputs = _calls(pruned, layer, batch, True), _calls(dense, twin, batch, False)
        if len(inputs) != len(outputs):
            return f"called {len(inputs)} times in the pruned model but {len(outputs)} in the dense one"
        for x, y in zip(inputs, outputs):
            cols, rows = _columns(layer, x), _rows(twin, y, kept_out)
            gram = cols @ cols.t() if gram is None else gram + cols @ cols.t()
            cross = rows @ cols.t() if cross is None else cross + rows @ cols.t()
            target_sq += float((rows ** 2).sum())
            samples += cols.shape[1]
    if gram is None:
        return "not called on the calibration data"
    w0 = _conv_weight(layer).flatten(1).double().cpu()
    if layer.bias is not None:
        w0 = torch.cat([w0, layer.bias.detach().double().cpu()[:, None]], 1)
    gram, cross = gram.cpu(), cross.cpu()

    def error(w: torch.Tensor) -> float:  # mean over outputs and samples of (W X - Y)^2, from the sums
        total = float((w @ gram * w).sum() - 2 * (w * cross).sum()) + target_sq
        return max(total, 0.0) / (w.shape[0] * samples)

    lam = ridge * float(gram.diagonal().mean())
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    w = torch.linalg.solve(gram + lam * eye, (cross + lam * w0).t()).t()
    before, after = error(w0), error(w)
    kept = before - after > 1e-6 * target_sq / (w.shape[0] * samples)  # a real gain, not rounding
    if kept:
        n = _conv_weight(layer)[0].numel()
        _set_conv_weight(layer, w[:, :n].reshape(w.shape[0], *_conv_weight(layer).shape[1:]))
        if layer.bias is not None:
            layer.bias.copy_(w[:, n].to(layer.bias))
    return LayerFit(path=path, samples=samples, features=gram.shape[0], error_before=before,
                    error_after=after if kept else before)
