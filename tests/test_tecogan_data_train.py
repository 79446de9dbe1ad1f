"""Training side of tecogan data: the clip sampler's augmentations and determinism, the LMDB
store (round trip, refusing pickles, CLI), and the registered datasets."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from prunekit.errors import DataError
from tecogan_plugin.data.degrade import bd_train_pair, bi_downsample
from tecogan_plugin.data.frames import write_frame
from tecogan_plugin.data.lmdb_store import LmdbFrames, build_lmdb
from tecogan_plugin.data.sampler import TrainingClips, reflect_index

T_SRC = 6  # frames per synthetic sequence below


@pytest.fixture(scope="module")
def marked(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Sequences whose frames share one base image on channels 0/1 and carry their frame index in
    channel 2 (base + 20*t), so a clip reveals which frames it used and how they were transformed."""
    root = tmp_path_factory.mktemp("marked")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 100, (150, 160, 3), dtype=np.uint8)
    for s in ("s1", "s2"):
        for t in range(T_SRC):
            img = base.copy()
            img[..., 2] += np.uint8(20 * t)
            write_frame(root / s / f"{t:03d}.png", img)
    return root, base


DIHEDRAL = [lambda a, k=k, f=f: np.rot90(a[:, ::-1] if f else a, k) for f in (0, 1) for k in range(4)]


def _locate(frame: np.ndarray, base: np.ndarray) -> int | None:
    """Index of the dihedral transform D with frame = D(crop of base) on channels 0/1, else None."""
    for i, d in enumerate(DIHEDRAL):
        inv = np.ascontiguousarray(d(base[..., :2]).astype(np.float32))
        res = cv2.matchTemplate(inv, np.ascontiguousarray(frame[..., :2].astype(np.float32)), cv2.TM_SQDIFF_NORMED)
        if res.min() < 1e-5:
            return i
    return None


def _hwc(clip: torch.Tensor) -> np.ndarray:
    return clip.permute(0, 2, 3, 1).numpy()


def test_reflect_index_rule():
    assert [reflect_index(j, 5) for j in range(3, 10)] == [3, 4, 3, 2, 1, 0, 1]  # j -> 2T-j-2


def test_clip_shape_frames_and_consistent_transform(marked):
    root, base = marked
    ds = TrainingClips(root, tempo_extent=10, gt_crop=64, moving_first_frame=False, seed=3)
    assert len(ds) == 2 * T_SRC
    seen_reverse, seen_transforms = set(), set()
    for idx in range(len(ds)):
        clip = ds[idx]
        assert clip.dtype == torch.uint8 and clip.shape == (10, 3, 72, 72)  # 64 + 2*4 border
        x = _hwc(clip)
        assert all(np.array_equal(x[0, ..., :2], f[..., :2]) for f in x)  # same crop+transform for all
        tid = _locate(x[0], base)
        assert tid is not None
        seen_transforms.add(tid)
        # frame index from channel 2 minus the base's channel 2 at the same place
        inv = DIHEDRAL[tid]
        ref = inv(base)
        res = cv2.matchTemplate(ref[..., :2].astype(np.float32), x[0, ..., :2].astype(np.float32), cv2.TM_SQDIFF)
        y0, x0 = np.unravel_index(res.argmin(), res.shape)
        patch2 = ref[y0:y0 + 72, x0:x0 + 72, 2].astype(int)
        ids = [int(np.median(f[..., 2].astype(int) - patch2)) // 20 for f in x]
        start = ds.index[idx][1]
        forward = [reflect_index(start + j, T_SRC) for j in range(10)]
        assert ids in (forward, forward[::-1])
        seen_reverse.add(ids != forward)
    assert seen_reverse == {False, True}  # temporal flip happens, and not always
    assert len(seen_transforms) >= 4  # flips and rot90 are drawn


def test_moving_first_frame_builds_clip_from_first_frame(marked):
    root, base = marked
    ds = TrainingClips(root, tempo_extent=10, gt_crop=64, moving_factor=0.0, seed=1)  # always moving
    moved = 0
    for idx in range(4):
        x = _hwc(ds[idx])
        start = ds.index[idx][1]
        tid = _locate(x[0], base)
        assert tid is not None and all(_locate(f, base) == tid for f in x)
        # every frame cut from the start frame: channel 2 carries its index only
        ref = DIHEDRAL[tid](base)
        for f in x:
            res = cv2.matchTemplate(ref[..., :2].astype(np.float32), f[..., :2].astype(np.float32), cv2.TM_SQDIFF)
            y0, x0 = np.unravel_index(res.argmin(), res.shape)
            diff = f[..., 2].astype(int) - ref[y0:y0 + 72, x0:x0 + 72, 2]
            assert np.all(diff == 20 * start)
        moved += not np.array_equal(x[0], x[1])
    assert moved >= 3  # consecutive frames are shifted copies


def test_moving_first_frame_probability(marked):
    root, _ = marked
    ds = TrainingClips(root, tempo_extent=4, gt_crop=64, seed=0)
    rates = []
    for e in range(25):
        ds.set_epoch(e)
        for i in range(len(ds)):
            x = _hwc(ds[i])
            rates.append(not all(np.array_equal(x[0, ..., 0], f[..., 0]) for f in x))
    # normal clips share one crop on every frame; moving-first-frame ones are shifted: ~0.3 of them
    assert 0.2 < np.mean(rates) < 0.4


def test_determinism_seed_epoch_and_workers(marked):
    root, _ = marked
    a = TrainingClips(root, tempo_extent=5, gt_crop=64, seed=7)
    b = TrainingClips(root, tempo_extent=5, gt_crop=64, seed=7)
    assert all(torch.equal(a[i], b[i]) for i in range(len(a)))
    c = TrainingClips(root, tempo_extent=5, gt_crop=64, seed=8)
    assert not all(torch.equal(a[i], c[i]) for i in range(len(a)))
    a.set_epoch(1)
    assert not all(torch.equal(a[i], b[i]) for i in range(len(a)))
    a.set_epoch(0)
    batches = []
    for workers in (0, 2):
        g = torch.Generator().manual_seed(0)
        dl = DataLoader(a, batch_size=4, shuffle=True, generator=g, num_workers=workers)
        batches.append(torch.cat(list(dl)))
    assert torch.equal(batches[0], batches[1])


def test_bd_clip_feeds_train_pair(marked):
    root, _ = marked
    ds = TrainingClips(root, tempo_extent=3, gt_crop=128, seed=0)
    batch = torch.stack([ds[0], ds[1]])
    lr, gt = bd_train_pair(batch)
    assert lr.shape == (2, 3, 3, 32, 32) and gt.shape == (2, 3, 3, 128, 128)
    assert gt.dtype == torch.float32 and float(gt.max()) <= 1.0


def test_crop_larger_than_frames(marked):
    root, _ = marked
    with pytest.raises(DataError, match="smaller than the 168 px crop"):
        TrainingClips(root, gt_crop=160)


def test_bi_training_needs_lr_frames(marked):
    root, _ = marked
    with pytest.raises(DataError, match="Bicubic4xLR"):
        TrainingClips(root, degradation="BI")


def test_sequence_filter(marked):
    root, _ = marked
    ds = TrainingClips(root, gt_crop=64, sequences=["s2"])
    assert {s for s, _ in ds.index} == {"s2"} and len(ds) == T_SRC
    with pytest.raises(DataError, match="s9"):
        TrainingClips(root, gt_crop=64, sequences=["s9"])


# ---------------------------------------------------------------- LMDB

def test_lmdb_round_trip_and_same_clips(marked, tmp_path):
    root, _ = marked
    out = build_lmdb(root, tmp_path / "GT.lmdb")
    store = LmdbFrames(out)
    assert store.keys[0] == "s1_6x150x160_0000" and len(store.keys) == 2 * T_SRC
    folder = TrainingClips(root, tempo_extent=5, gt_crop=64, seed=2)
    lmdb_ds = TrainingClips(out, tempo_extent=5, gt_crop=64, seed=2)
    assert all(torch.equal(folder[i], lmdb_ds[i]) for i in range(len(folder)))
    dl = DataLoader(lmdb_ds, batch_size=6, num_workers=2)
    assert torch.equal(torch.cat(list(dl)), torch.stack([lmdb_ds[i] for i in range(len(lmdb_ds))]))
    from prunekit.errors import OutputError

    with pytest.raises(OutputError, match="already exists"):
        build_lmdb(root, out)


def test_lmdb_refuses_pickled_meta(tmp_path):
    d = tmp_path / "old.lmdb"
    d.mkdir()
    (d / "meta_info.pkl").write_bytes(pickle.dumps({"keys": []}))
    with pytest.raises(DataError, match="never unpickles.*tecogan-lmdb"):
        LmdbFrames(d)


def test_lmdb_cli(marked, tmp_path, capsys):
    from prunekit.cli import main

    root, _ = marked
    lst = tmp_path / "train.txt"
    lst.write_text("s2\n")
    assert main(["tecogan-lmdb", str(root), str(tmp_path / "x.lmdb"), "--sequences-file", str(lst)]) == 0
    assert list(LmdbFrames(tmp_path / "x.lmdb").sequences) == ["s2"]
    assert main(["tecogan-lmdb", str(tmp_path / "missing"), str(tmp_path / "y.lmdb")]) == 2
    assert "missing" in capsys.readouterr().err


# ---------------------------------------------------------------- builtin + registry

@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> Path:
    from tecogan_plugin.data.synthetic import ensure_builtin

    return ensure_builtin(tmp_path_factory.getbasetemp() / "tecogan-builtin")  # shared by both files


def test_bi_pairs_are_aligned(builtin):
    ds = TrainingClips(builtin / "train", degradation="BI", tempo_extent=3, seed=0)
    for i in (0, 25, 77):
        lr, gt = ds[i]
        assert lr.shape == (3, 3, 32, 32) and gt.shape == (3, 3, 128, 128)
        # the stored LR is BI of the full frame, so away from the crop edge it equals BI of the crop
        ref = bi_downsample(gt.double() / 255, 4)
        diff = (lr.double() / 255 - ref)[..., 3:-3, 3:-3].abs().max()
        assert diff <= 0.6 / 255, (i, float(diff))


def test_registered_datasets(builtin):
    from prunekit.registry import DATASETS

    assert {"builtin", "vid4", "tos3", "reds", "folder"} <= set(DATASETS.names())
    test = DATASETS.get("builtin")(root=builtin)
    assert len(test) == 3 and test[0].lr.shape[1:] == (36, 52, 3)
    train = DATASETS.get("builtin")(root=builtin, split="train", tempo_extent=4)
    assert isinstance(train, TrainingClips) and train[0].shape == (4, 3, 136, 136)
    with pytest.raises(DataError, match="not bundled"):
        DATASETS.get("vid4")()


def test_dataset_factories_share_one_signature(marked, tmp_path):
    import shutil

    from prunekit.registry import DATASETS

    root, _ = marked
    for src, dst in (("s1", "REDS/Raw/000"), ("s2", "REDS/Raw/011"), ("s1", "V/GT/a")):
        shutil.copytree(root / src, tmp_path / dst)
    reds = DATASETS.get("reds")
    assert [s.name for s in reds(tmp_path / "REDS", split="test", sequences=["000", "011"])] == ["000", "011"]
    with pytest.raises(DataError, match="015"):  # REDS4 by default
        reds(tmp_path / "REDS")
    train = reds(tmp_path / "REDS", split="train", sequences=["011"], tempo_extent=3, gt_crop=64, seed=1)
    assert len(train) == T_SRC and train[0].shape == (3, 3, 72, 72)
    vid4 = DATASETS.get("vid4")
    assert vid4(tmp_path / "V", sequences=["a"])[0].lr.shape == (T_SRC, 3, 38, 40)
    with pytest.raises(DataError, match="calendar"):
        vid4(tmp_path / "V")
    assert len(vid4(tmp_path / "V", split="train", sequences=["a"], gt_crop=64)) == T_SRC
    folder = DATASETS.get("folder")
    assert len(folder(tmp_path / "REDS" / "Raw")) == 2
    assert len(folder(tmp_path / "REDS" / "Raw", split="train", sequences=["000"], gt_crop=64)) == T_SRC


def test_builtin_train_honours_sequences_and_folder_checks_split(builtin, marked):
    from prunekit.registry import DATASETS

    full = DATASETS.get("builtin")(root=builtin, split="train", tempo_extent=4)
    one = DATASETS.get("builtin")(root=builtin, split="train", tempo_extent=4, sequences=["00_chelsea"])
    assert {s for s, _ in one.index} == {"00_chelsea"} and len(one) < len(full)
    root, _ = marked
    with pytest.raises(DataError, match="split must be"):
        DATASETS.get("folder")(root, split="val")
