"""LMDB training store in the reference key format: key `{seq}_{T}x{H}x{W}_{i:04d}`, value the
raw HWC RGB uint8 buffer. The index is `meta_info.json`; pickled `meta_info.pkl` files (what the
reference writes) are refused, because loading a pickle can run arbitrary code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import lmdb
import numpy as np

from prunekit.errors import DataError
from prunekit.fileio import atomic_dir, check_output
from tecogan_plugin.data.frames import list_frames, png_info, read_frame, sequence_dirs

__all__ = ["build_lmdb", "LmdbFrames", "frame_key", "parse_key", "sequence_folders"]

META = "meta_info.json"


def frame_key(seq: str, frames: int, height: int, width: int, index: int) -> str:
    return f"{seq}_{frames}x{height}x{width}_{index:04d}"


def parse_key(key: str) -> tuple[str, int, int, int, int]:
    """(seq, frames, height, width, index); sequence names may themselves contain '_'."""
    try:
        seq, dims, idx = key.rsplit("_", 2)
        t, h, w = (int(v) for v in dims.split("x"))
        return seq, t, h, w, int(idx)
    except (ValueError, AttributeError):  # AttributeError: a non-string key in meta_info.json
        raise DataError(f"LMDB key {key!r} is not in the '{{seq}}_{{T}}x{{H}}x{{W}}_{{i:04d}}' format") from None


def sequence_folders(src_root: str | Path, sequences: Sequence[str] | None = None) -> list[Path]:
    """Sequence folders under `src_root` (or under `src_root/GT` when that exists)."""
    root = Path(src_root)
    if not root.is_dir():
        raise DataError(f"{root}: source root does not exist")
    return sequence_dirs(root / "GT" if (root / "GT").is_dir() else root, sequences)


def build_lmdb(src_root: str | Path, out_path: str | Path, sequences: Sequence[str] | None = None,
               overwrite: bool = False) -> Path:
    """Pack every frame of every sequence into an LMDB at `out_path` (written to a temp folder and
    renamed into place when complete). `out_path` may not be, hold or sit inside `src_root`; an existing
    non-empty folder is replaced only with `overwrite` and only when it is a store of ours (it holds
    meta_info.json); the old store is removed only after the new one is complete."""
    out = check_output(out_path, [src_root], kind="folder", allow_existing=overwrite, marker=META)
    plan = []
    total = 0
    for d in sequence_folders(src_root, sequences):
        paths = list_frames(d)
        if not paths:
            raise DataError(f"{d}: empty sequence (no .png frames)")
        info = png_info(paths[0])
        plan.append((d.name, paths, info.height, info.width))
        total += len(paths) * info.height * info.width * 3
    with atomic_dir(out) as tmp:
        keys = []
        env = lmdb.open(str(tmp), map_size=int(total * 1.5) + (64 << 20))
        try:
            for seq, paths, h, w in plan:
                # one transaction per sequence keeps memory bounded on REDS/Vimeo-sized sources
                with env.begin(write=True) as txn:
                    for i, p in enumerate(paths):
                        img = read_frame(p)
                        if img.shape != (h, w, 3):
                            raise DataError(f"{p}: frame size {img.shape[1]}x{img.shape[0]} differs from "
                                            f"{w}x{h} of {paths[0].name}")
                        key = frame_key(seq, len(paths), h, w, i)
                        txn.put(key.encode("ascii"), img.tobytes())
                        keys.append(key)
        finally:
            env.close()
        meta = {"name": out.stem, "color": "RGB", "keys": keys}
        (tmp / META).write_text(json.dumps(meta))
    return out


class LmdbFrames:
    """Read-only access to a store built by `build_lmdb`; safe to use inside DataLoader workers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / META
        if not self.path.is_dir():
            raise DataError(f"{self.path}: LMDB folder does not exist")
        if not meta_path.is_file():
            if (self.path / "meta_info.pkl").is_file():
                raise DataError(f"{self.path}: has only meta_info.pkl; prunekit never unpickles data files. "
                                f"Rebuild the store with `prunekit tecogan-lmdb <frames root> {self.path}`")
            raise DataError(f"{meta_path}: missing (not an LMDB built by prunekit tecogan-lmdb)")
        try:
            meta = json.loads(meta_path.read_text())
            keys = list(meta["keys"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{meta_path}: unreadable meta info ({exc})") from None
        if meta.get("color", "RGB") != "RGB":
            raise DataError(f"{meta_path}: color is {meta.get('color')!r}, expected 'RGB'")
        self.keys = keys
        self.sequences: dict[str, tuple[int, int, int]] = {}
        for k in keys:
            seq, t, h, w, _ = parse_key(k)
            self.sequences[seq] = (t, h, w)

    def frames(self, seq: str, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames of `seq` as HWC RGB uint8. The environment is opened and closed per call: an
        LMDB handle must not cross a fork, and py-lmdb refuses a second handle on one path in a
        process, so nothing is kept open between calls (and DataLoader workers stay safe)."""
        t, h, w = self.sequences[seq]
        out = []
        env = lmdb.open(str(self.path), readonly=True, lock=False, readahead=False, meminit=False)
        try:
            with env.begin(write=False) as txn:
                for i in indices:
                    key = frame_key(seq, t, h, w, i)
                    buf = txn.get(key.encode("ascii"))
                    if buf is None:
                        raise DataError(f"{self.path}: key {key!r} listed in {META} is missing from the store")
                    if len(buf) != h * w * 3:
                        raise DataError(f"{self.path}: value of {key!r} has {len(buf)} bytes, expected {h * w * 3}")
                    out.append(np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3).copy())
        finally:
            env.close()
        return out


def _add_arguments(p) -> None:
    p.add_argument("src_root", help="folder of sequences <root>/<seq>/*.png (or <root>/GT/<seq>)")
    p.add_argument("out", help="output LMDB folder, e.g. GT.lmdb")
    p.add_argument("--sequences-file", help="text file listing the sequences to include, one per line")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing store built by this command (a folder holding meta_info.json)")


def _run(args) -> int:
    seqs = None
    # the sequences file is an input too: --overwrite may not replace a folder holding it
    check_output(args.out, [args.src_root, args.sequences_file], kind="folder", allow_existing=args.overwrite,
                 marker=META)
    if args.sequences_file:
        try:
            seqs = [s.strip() for s in Path(args.sequences_file).read_text().splitlines() if s.strip()]
        except OSError as exc:
            raise DataError(f"{args.sequences_file}: cannot read ({exc.strerror})") from None
    out = build_lmdb(args.src_root, args.out, seqs, overwrite=args.overwrite)
    store = LmdbFrames(out)
    print(f"wrote {out}: {len(store.sequences)} sequences, {len(store.keys)} frames")
    return 0
