"""Model specs: how to build a model and how to feed it, written down as data.

A `ModelSpec` names a model (a registered name or `package.module:factory`) with its keyword
options, its example inputs (shape, dtype and value range of each tensor; plain ints, strings,
None for the other arguments), its default layout, the plans already applied to it and its
parameter count. `pk.save` writes it as `spec.json`, so `pk.load(dir)` rebuilds the model with
no code from the caller, and channel steps replay on inputs of the right dtypes.

Plugins describe a model once, by registering a `ModelEntry` (factory + inputs + layout + option
bounds + export hook) in MODELS; `spec_for(name, **options)` turns it into a concrete spec.
A model built from a spec carries it (`spec_of(model)`), and so does its pruned deep copy.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Union

import torch
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from torch import nn

from prunekit.config import StrictModel
from prunekit.errors import CheckpointError, ConfigError
from prunekit.profile import split_inputs
from prunekit.plan_record import Plan
from prunekit.profile import count_params
from prunekit.registry import LAYOUTS, MODELS
from prunekit.surgery import apply

SPEC_VERSION = 1
SPEC_ATTRIBUTE = "prunekit_spec"  # where a built model carries its spec

# Bounds checked before anything is allocated (a tampered spec must fail, not eat memory).
MAX_INPUTS = 64
MAX_INPUT_ELEMENTS = 2**26  # per tensor: 256 MiB as float32
MAX_NAME_CHARS = 1000
MAX_STRING_CHARS = 10_000
MAX_PRIOR_PLANS = 64

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def _check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"an input name must have 1..{MAX_NAME_CHARS} characters, got {len(name)}")
    return name


class TensorInput(StrictModel):
    """A tensor argument: values are drawn uniformly from [low, high) (integers: randint, bool: coin flips)."""

    kind: Literal["tensor"] = "tensor"
    name: str
    shape: list[int]
    dtype: str = "float32"
    low: float = 0.0
    high: float = 1.0
    keyword: bool = False

    _name = field_validator("name")(_check_name)

    @field_validator("shape")
    @classmethod
    def _bounded_shape(cls, shape: list[int]) -> list[int]:
        if len(shape) > 8 or any(d < 1 for d in shape):
            raise ValueError(f"shape {shape} must have at most 8 dimensions, each >= 1")
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise ValueError(f"shape {shape} has {math.prod(shape):,} elements, more than the limit {MAX_INPUT_ELEMENTS:,}")
        return shape

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, dtype: str) -> str:
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
        return dtype

    @model_validator(mode="after")
    def _range(self) -> "TensorInput":
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.high > self.low):
            raise ValueError(f"value range [{self.low}, {self.high}) of input {self.name!r} is empty or not finite")
        return self

    def make(self, gen: torch.Generator) -> torch.Tensor:
        dtype = DTYPES[self.dtype]
        if dtype == torch.bool:
            return torch.randint(0, 2, self.shape, generator=gen).bool()
        if dtype.is_floating_point:
            x = torch.rand(self.shape, generator=gen)
            if (self.low, self.high) != (0.0, 1.0):
                x = x * (self.high - self.low) + self.low
            return x.to(dtype)
        return torch.randint(math.ceil(self.low), math.ceil(self.high), self.shape, generator=gen, dtype=dtype)


class ValueInput(StrictModel):
    """A non-tensor argument passed as is (an int flag, a mode string, None)."""

    kind: Literal["value"] = "value"
    name: str
    value: bool | int | float | str | None = None
    keyword: bool = False

    _name = field_validator("name")(_check_name)

    @field_validator("value")
    @classmethod
    def _short(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            raise ValueError(f"string values are limited to {MAX_STRING_CHARS} characters, got {len(value)}")
        return value


InputSpec = Annotated[Union[TensorInput, ValueInput], Field(discriminator="kind")]


def tensor(name: str, shape: Any, dtype: str = "float32", low: float = 0.0, high: float = 1.0,
           keyword: bool = False) -> TensorInput:
    """Shorthand for a TensorInput (`tensor("ids", (2, 16), "int64", high=1000)`)."""
    return TensorInput(name=name, shape=list(shape), dtype=dtype, low=low, high=high, keyword=keyword)


def value(name: str, v: Any, keyword: bool = False) -> ValueInput:
    """Shorthand for a ValueInput."""
    return ValueInput(name=name, value=v, keyword=keyword)


def describe_inputs(example_inputs: Any) -> list[TensorInput | ValueInput]:
    """Describe real example inputs (a tensor, a tuple of positional args or a dict of keyword args).

    Integer tensors get the range [min, max + 1) of the values seen: pass a spec with `high` set to
    the vocabulary size when the sample does not reach it.
    """
    args, kwargs = split_inputs(example_inputs)
    named = [(f"arg{i}", a, False) for i, a in enumerate(args)] + [(k, v, True) for k, v in kwargs.items()]
    out: list[TensorInput | ValueInput] = []
    for name, arg, keyword in named:
        if isinstance(arg, torch.Tensor):
            if arg.dtype not in _DTYPE_NAMES:
                raise ConfigError(f"example input {name!r} has dtype {arg.dtype}, not one of {sorted(DTYPES)}")
            dtype = _DTYPE_NAMES[arg.dtype]
            low, high = 0.0, 1.0
            if not arg.dtype.is_floating_point and arg.dtype != torch.bool and arg.numel():
                low, high = float(arg.min()), float(arg.max()) + 1.0
            out.append(tensor(name, arg.shape, dtype, low, high, keyword))
        elif arg is None or isinstance(arg, (bool, int, float, str)):
            out.append(value(name, arg, keyword))
        else:
            raise ConfigError(
                f"example input {name!r} is a {type(arg).__name__}; a spec describes tensors and plain "
                "bool/int/float/str/None values only"
            )
    return out


def inputs_from_shapes(shapes: dict[str, list[int]]) -> list[TensorInput | ValueInput]:
    """Float inputs for a plan's recorded `input_shapes` (all a checkpoint without a spec knows)."""
    positional = sorted((k for k in shapes if k.startswith("arg") and k[3:].isdigit()), key=lambda k: int(k[3:]))
    named = [k for k in shapes if k not in positional]
    return [tensor(k, shapes[k]) for k in positional] + [tensor(k, shapes[k], keyword=True) for k in named]


class ModelSpec(StrictModel):
    """Everything needed to rebuild a model and call it: see the module docstring."""

    version: int = SPEC_VERSION
    build: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InputSpec] = Field(default_factory=list, max_length=MAX_INPUTS)
    layout: str | None = None
    params: int | None = Field(default=None, ge=0)
    prior_plans: list[Plan] = Field(default_factory=list, max_length=MAX_PRIOR_PLANS)
    seed: int = 0

    @field_validator("build")
    @classmethod
    def _build_name(cls, build: str) -> str:
        if not build or len(build) > MAX_NAME_CHARS:
            raise ValueError(f"build must name a registered model or package.module:factory, got {build!r}")
        return build

    @model_validator(mode="after")
    def _unique_inputs(self) -> "ModelSpec":
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        return self

    def example_inputs(self, seed: int | None = None) -> Any:
        """The example inputs, rebuilt with their dtypes: a tuple of positional args, or a dict when
        any input is a keyword (positional ones then go in by name, as `call_model` expects)."""
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        made = [(i, i.make(gen) if isinstance(i, TensorInput) else i.value) for i in self.inputs]
        if any(i.keyword for i, _ in made):
            return {i.name: v for i, v in made}
        return tuple(v for _, v in made)

    def build_model(self) -> nn.Module:
        """Build the model the spec names (options checked first), replay `prior_plans`, attach the spec."""
        model = _call_factory(self.build, self.kwargs)
        if self.params is not None:
            got = count_params(model)
            if got != self.params:
                raise CheckpointError(
                    f"the spec builds {self.build}({_kwargs_text(self.kwargs)}) with {got:,} parameters, "
                    f"but it records {self.params:,}"
                )
        model = self.replay_prior(model)
        return attach(model, self)

    def replay_prior(self, model: nn.Module) -> nn.Module:
        for plan in self.prior_plans:
            model = apply(model, plan, self.example_inputs() if plan.channels and self.inputs else None)
        return model

    def model_params(self) -> int | None:
        """Parameters of the model this spec describes (after its prior plans)."""
        return self.prior_plans[-1].stats.params_after if self.prior_plans else self.params


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


@dataclass(frozen=True)
class ModelEntry:
    """What a plugin registers under a model name in MODELS.

    factory: builds the model from keyword options. inputs: returns the example inputs (a list of
    TensorInput / ValueInput) and receives the model options it names (e.g. `scale`). layout:
    default layout name. options: a pydantic model that validates (and bounds) the keyword options
    before anything is built. export: `export(model, spec) -> prunekit.export.Signature`, for models
    whose deployable form is not `forward` on the example inputs (e.g. one recurrent step with
    dynamic frame size). Calling the entry builds the model, so it works wherever a factory did.
    """

    factory: Callable[..., nn.Module]
    inputs: Callable[..., list[TensorInput | ValueInput]] | None = None
    layout: str | None = None
    options: type[BaseModel] | None = None
    export: Callable[..., Any] | None = None

    def __call__(self, **kwargs: Any) -> nn.Module:
        return self.factory(**self.check_options(kwargs))

    def check_options(self, kwargs: dict[str, Any], source: str = "model options") -> dict[str, Any]:
        """Validate the keyword options; ConfigError names the field, the bound and the value."""
        if self.options is None:
            return kwargs
        try:
            checked = self.options.model_validate(kwargs)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(options)'}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            )
            raise ConfigError(f"invalid {source}: {problems}") from None
        return {k: getattr(checked, k) for k in kwargs}

    def example_inputs_spec(self, kwargs: dict[str, Any]) -> list[TensorInput | ValueInput]:
        if self.inputs is None:
            return []
        return list(self.inputs(**_shared(self.inputs, kwargs)))

    def example_inputs(self, **kwargs: Any) -> Any:
        """Example inputs made from `inputs(**kwargs)` (seeded), as a factory's `example_inputs` gave them."""
        return ModelSpec(build="-", inputs=self.example_inputs_spec(kwargs)).example_inputs()


def _shared(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    accepted = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in accepted}


def entry(name: str) -> ModelEntry | None:
    """The ModelEntry registered as `name`, or None for a plain factory / `module:factory`."""
    found = MODELS.resolve(name)
    return found if isinstance(found, ModelEntry) else None


def _call_factory(name: str, kwargs: dict[str, Any]) -> nn.Module:
    factory = MODELS.resolve(name)
    if isinstance(factory, ModelEntry):
        kwargs = factory.check_options(kwargs, f"options of model {name!r}")
    _check_binding(name, factory.factory if isinstance(factory, ModelEntry) else factory, kwargs)
    try:
        model = factory(**kwargs)
    except TypeError as exc:  # a factory passing **kwargs on (to a class): its binding error is the user's
        if not any(m in str(exc) for m in ("unexpected keyword argument", "required positional argument",
                                           "required keyword-only argument", "multiple values for")):
            raise
        raise ConfigError(f"cannot build model {name!r} with options {{{_kwargs_text(kwargs)}}}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def _check_binding(name: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Options the factory does not take are a ConfigError naming them, before it is called."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: let the call speak
        return
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        accepted = [n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise ConfigError(f"model_kwargs for {name!r}: {exc}; it accepts {accepted}") from None


def spec_for(name: str, **kwargs: Any) -> ModelSpec:
    """The concrete spec of model `name` (registered or `module:factory`) built with `kwargs`.

    Inputs and layout come from its ModelEntry; a plain factory may still carry an `example_inputs`
    function attribute (the pre-spec convention) and use the layout registered under its own name.
    """
    found = MODELS.resolve(name)
    if isinstance(found, ModelEntry):
        kwargs = found.check_options(kwargs, f"options of model {name!r}")
        return ModelSpec(build=name, kwargs=kwargs, inputs=found.example_inputs_spec(kwargs), layout=found.layout)
    inputs: list[TensorInput | ValueInput] = []
    provider = getattr(found, "example_inputs", None)
    if callable(provider):
        with torch.random.fork_rng(devices=[]):  # seeded for reproducible shapes, caller's RNG untouched
            torch.manual_seed(0)
            inputs = describe_inputs(provider(**_shared(provider, kwargs)))
    layout = name if ":" not in name and name in LAYOUTS.names() else None
    return ModelSpec(build=name, kwargs=kwargs, inputs=inputs, layout=layout)


def attach(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """Record `spec` on `model` (it describes the model as built; deep copies keep it). Fills `params`."""
    if spec.params is None and not spec.prior_plans:
        spec = spec.model_copy(update={"params": count_params(model)})
    object.__setattr__(model, SPEC_ATTRIBUTE, spec)
    return model


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The spec a model was built from (None when it was built without one)."""
    found = getattr(model, SPEC_ATTRIBUTE, None)
    return found if isinstance(found, ModelSpec) else None


def spec_for_plan(spec: ModelSpec, plan: Plan) -> ModelSpec | None:
    """The spec of the model `plan` was made for, given the spec a model carries.

    A loaded pruned model carries its checkpoint's plans as `prior_plans`; a plan made on it starts
    after all of them, a plan composed from the dense model (as the schedule engine makes) after
    none. The parameter counts tell them apart; None when no prefix fits.
    """
    counts = [spec.params] + [p.stats.params_after for p in spec.prior_plans]
    for k in range(len(spec.prior_plans), -1, -1):
        if counts[k] is None or counts[k] == plan.stats.params_before:
            return spec.model_copy(update={"prior_plans": spec.prior_plans[:k]})
    return None


def class_spec(model: nn.Module, plan: Plan) -> ModelSpec | None:
    """What can be recorded for a model built without a spec: its class, if importable by name,
    with default options and float inputs of the plan's shapes. `params` is left unset, so a class
    that needed options fails at load with a message saying so."""
    import importlib

    cls = type(model)
    if "<" in cls.__qualname__:
        return None
    try:
        module = importlib.import_module(cls.__module__)
    except ImportError:
        return None
    if getattr(module, cls.__qualname__, None) is not cls or cls.__module__ == "__main__":
        return None
    return ModelSpec(build=f"{cls.__module__}:{cls.__qualname__}", inputs=inputs_from_shapes(plan.input_shapes))
