"""TecoGAN data: BD/BI degradations, PNG frames, test-set readers (Vid4/ToS3/REDS/folders), the
LMDB training store, the training-clip sampler and the built-in synthetic video set.

Registered datasets (DATASETS registry) share one factory signature:

    factory(root=None, split="test", degradation="BD", scale=4, **kwargs)

`split="test"` returns `list[VideoSequence]`; `split="train"` returns a `TrainingClips` dataset
(kwargs go to it: tempo_extent, gt_crop, seed, ...). `root=None` is only valid for `builtin`.
`unlabeled` (a user's footage without GT, data/unlabeled.py) is train-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from prunekit.errors import DataError

VID4 = ("calendar", "city", "foliage", "walk")
TOS3 = ("bridge", "face", "room")


def _need_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise DataError(f"dataset {name!r} is not bundled: pass root=<folder> (only 'builtin' works without one)")
    return Path(root)


def _train(source: Any, degradation: str, scale: int, **kwargs: Any):
    from tecogan_plugin.data.sampler import TrainingClips

    return TrainingClips(source, degradation=degradation, scale=scale, **kwargs)


def _test_set(name: str, default_sequences: tuple[str, ...] | None) -> Callable:
    def factory(root=None, split="test", degradation="BD", scale=4, sequences=None, **kwargs):
        from tecogan_plugin.data.readers import open_test_set

        base = _need_root(name, root)
        if split == "train":
            return _train(base, degradation, scale, sequences=sequences, **kwargs)
        if split != "test":
            raise DataError(f"dataset {name!r}: split must be 'train' or 'test', got {split!r}")
        return open_test_set(base, degradation, scale, sequences or default_sequences, **kwargs)

    factory.__doc__ = f"The {name} dataset in the <root>/{{GT,Gaussian4xLR,Bicubic4xLR}}/<seq> layout."
    return factory


def builtin(root=None, split="test", degradation="BD", scale=4, sequences=None, **kwargs):
    """The synthetic set, generated on first use (see synthetic.ensure_builtin); x4 only."""
    from tecogan_plugin.data.readers import open_test_set
    from tecogan_plugin.data.synthetic import ensure_builtin

    if scale != 4:
        raise DataError(f"the built-in set is x4 only, got scale={scale}")
    base = ensure_builtin(root)
    if split == "train":
        return _train(base / "train", degradation, scale, sequences=sequences, **kwargs)
    if split != "test":
        raise DataError(f"dataset 'builtin': split must be 'train' or 'test', got {split!r}")
    return open_test_set(base / "test", degradation, scale, sequences, **kwargs)


def reds(root=None, split="test", degradation="BD", scale=4, sequences=None, **kwargs):
    """REDS `<root>/Raw/000..269`: test = REDS4, train = the other 266 (BD only: no LR folders).
    `sequences` overrides the split's list."""
    from tecogan_plugin.data.readers import open_reds, reds_split

    base = _need_root("reds", root)
    if degradation.upper() != "BD":
        raise DataError("REDS has no pre-computed LR frames here; only degradation='BD' is supported")
    if split not in ("train", "test"):
        raise DataError(f"dataset 'reds': split must be 'train' or 'test', got {split!r}")
    if split == "train":
        names = list(sequences) if sequences is not None else reds_split("train")
        return _train(base / "Raw", degradation, scale, sequences=names, **kwargs)
    return open_reds(base, split, scale, sequences=sequences, **kwargs)


def folder(root=None, split="test", degradation="BD", scale=4, sequences=None, **kwargs):
    """Any folder of sequences `<root>/<seq>/*.png` (or a `<root>/GT/...` test layout)."""
    from tecogan_plugin.data.readers import open_folder, open_test_set

    base = _need_root("folder", root)
    if split == "train":
        return _train(base, degradation, scale, sequences=sequences, **kwargs)
    if split != "test":
        raise DataError(f"dataset 'folder': split must be 'train' or 'test', got {split!r}")
    if (base / "GT").is_dir():
        return open_test_set(base, degradation, scale, sequences, **kwargs)
    if degradation.upper() != "BD":
        raise DataError(f"{base}: a plain folder of sequences has no LR frames; BI needs <root>/GT + Bicubic{scale}xLR")
    return open_folder(base, scale, sequences, **kwargs)


def register(registries) -> None:
    """Add the datasets (the `tecogan-lmdb` command is listed in tecogan_plugin.plugin)."""
    registries.datasets.register("builtin", builtin)
    registries.datasets.register("vid4", _test_set("vid4", VID4))
    registries.datasets.register("tos3", _test_set("tos3", TOS3))
    registries.datasets.register("reds", reds)
    registries.datasets.register("folder", folder)
    from tecogan_plugin.data.unlabeled import unlabeled

    registries.datasets.register("unlabeled", unlabeled)
