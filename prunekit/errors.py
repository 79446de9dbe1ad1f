"""Typed errors. Every problem caused by user input raises a subclass of PrunekitError,
so callers (and the CLI) can tell bad input from bugs."""


class PrunekitError(Exception):
    """Base class for errors caused by bad input, configs, files or models."""


class UnknownNameError(PrunekitError, LookupError):
    """A name (strategy, model, dataset, ...) is not registered."""


class UnreachableTargetError(PrunekitError, ValueError):
    """A pruning target cannot be met by this model (e.g. keep more blocks than exist)."""


class NoUnitsError(PrunekitError, ValueError):
    """Discovery found no removable unit in the model."""


class InputShapeError(PrunekitError, ValueError):
    """Example inputs do not fit the model."""


class PlanMismatchError(PrunekitError, ValueError):
    """A plan does not match the model it is applied to."""


class CheckpointError(PrunekitError, ValueError):
    """A checkpoint is missing, unreadable, or has wrong/missing tensors."""


class ConfigError(PrunekitError, ValueError):
    """A config file or option is invalid (the message names the field)."""


class MissingWeightsError(PrunekitError, FileNotFoundError):
    """Pretrained weights that cannot be downloaded here are not on disk."""


class DataError(PrunekitError, ValueError):
    """A dataset or media file is missing, unreadable or inconsistent (the message names the file)."""


class TrainingDivergedError(PrunekitError, FloatingPointError):
    """A training loss became NaN or Inf (the message names stage and iteration; the last good
    checkpoint is kept)."""


class ExportError(PrunekitError, RuntimeError):
    """A model could not be exported, or the exported file does not compute what PyTorch does."""


class OutputError(PrunekitError, ValueError):
    """An output path would overwrite or delete something the user owns (an input, a foreign file or
    folder), or is in use by another run; nothing was written."""


class NameConflictError(PrunekitError, ValueError):
    """A name (command, model, strategy, ...) is registered twice; a plugin that causes it is not
    registered at all."""
