"""The built-in synthetic video set: real photographs shipped inside scikit-image, filmed by a
virtual camera with sub-pixel motion, with independently moving cut-outs (photo patches, thin
lines, text-like cards). Generated deterministically from a seed into a cache folder in the
Vid4 layout, so every command runs without a download and flow/warping/temporal metrics have
real motion to measure."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from prunekit.errors import DataError
from prunekit.fileio import temp_dir
from tecogan_plugin.data.degrade import bd_downsample, bi_downsample
from tecogan_plugin.data.frames import write_frame

__all__ = ["VERSION", "PARTS", "data_home", "default_root", "ensure_builtin", "generate", "load_manifest"]

VERSION = "tecogan-builtin-v2"
MARKER = "COMPLETE.json"
SCALE = 4


@dataclass(frozen=True)
class Part:
    """One split of the set: how many sequences of which size and which photographs they film."""

    name: str
    frames: int
    height: int
    width: int
    photos: tuple[str, ...]


# Train and test film different photographs (no test scene is seen in training; the stereo
# motorcycle pair counts as one scene). Train frames are 192 px so moving-first-frame windows (up to 36 px of drift) still hold a
# 136 px crop. Test frames are 144x208: the official crop_8x8 keeps a 128x192 centre (8 px border), LR 36x52.
PARTS = (
    Part("train", 20, 192, 192, ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                                 "retina", "camera", "chelsea", "rocket")),
    Part("test", 12, 144, 208, ("coffee", "astronaut", "stereo_motorcycle_left")),
)
CAMERA_KINDS = ("pan", "pan_zoom", "pan", "rotate")
GRAY_TEXTURES = ("brick", "grass", "gravel", "text", "page", "moon", "coins")


def data_home() -> Path:
    """Where prunekit keeps data: $PRUNEKIT_DATA, else ~/.cache/prunekit."""
    env = os.environ.get("PRUNEKIT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunekit"


def default_root() -> Path:
    return data_home() / VERSION


def _photo(name: str) -> np.ndarray:
    """An RGB uint8 photograph from skimage.data (all shipped in the wheel, no download)."""
    from skimage import data

    if name.startswith("stereo_motorcycle"):
        left, right, _ = data.stereo_motorcycle()
        return right if name.endswith("right") else left
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)


def _gray_texture(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)().astype(np.float32)


def _fit(img: np.ndarray, short_side: int) -> np.ndarray:
    """Resize (area filter) so the short side is `short_side`: a natural level of detail."""
    h, w = img.shape[:2]
    f = short_side / min(h, w)
    return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def _camera(kind: str, rng: np.random.Generator, frames: int, src: tuple[int, int], out: tuple[int, int]) -> list[np.ndarray]:
    """Per-frame 2x3 affine maps from output pixels to source pixels (sub-pixel translation,
    optionally a slow zoom or rotation about the frame centre)."""
    (sh, sw), (oh, ow) = src, out
    v = rng.uniform(0.6, 2.4, 2) * rng.choice([-1, 1], 2)  # px per frame
    wobble = rng.uniform(0.1, 0.4)
    zoom = rng.uniform(-0.006, 0.006) if kind == "pan_zoom" else 0.0
    spin = rng.uniform(-0.012, 0.012) if kind == "rotate" else 0.0
    span = np.abs(v) * frames + 8
    start = np.array([sw / 2, sh / 2]) - np.sign(v) * span / 2  # source centre of frame 0
    mats = []
    for t in range(frames):
        c = start + v * t + wobble * np.array([math.sin(0.9 * t), math.cos(0.7 * t)])
        s = 1.0 + zoom * t
        a = spin * t
        rot = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        m = np.zeros((2, 3))
        m[:, :2] = rot
        m[:, 2] = c - rot @ np.array([ow / 2, oh / 2])
        mats.append(m)
    return mats


def _soft_mask(h: int, w: int, shape: str) -> np.ndarray:
    """An anti-aliased ellipse or rounded-rectangle alpha mask in [0, 1]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (x + 0.5) / w * 2 - 1, (y + 0.5) / h * 2 - 1
    if shape == "ellipse":
        d = np.sqrt(u**2 + v**2) - 1
    else:
        d = np.maximum(np.abs(u), np.abs(v)) - 1
    edge = 2.0 / min(h, w)
    return np.clip(0.5 - d / edge, 0, 1)


def _card(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A procedural card: thin lines at random angles and rows of text-like glyphs."""
    bg = rng.uniform(150, 240, 3)
    card = np.empty((h, w, 3), np.uint8)
    card[:] = np.rint(bg).astype(np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        p0 = tuple(int(q) for q in rng.integers(0, [w, h]))
        p1 = tuple(int(q) for q in rng.integers(0, [w, h]))
        cv2.line(card, p0, p1, tuple(float(c) for c in rng.uniform(0, 90, 3)), 1, cv2.LINE_AA)
    letters = "ABCDEFGHKMNPRSTUVWXYZabdeghkmnpqrstwxyz0123456789"
    y = 14
    while y < h - 4:
        word = "".join(rng.choice(list(letters), int(rng.integers(4, 9))))
        ink = tuple(float(c) for c in rng.uniform(0, 80, 3))
        cv2.putText(card, word, (3, y), cv2.FONT_HERSHEY_SIMPLEX, 0.38, ink, 1, cv2.LINE_AA)
        y += int(rng.integers(11, 16))
    return card.astype(np.float32)


def _objects(rng: np.random.Generator, photo: np.ndarray, out: tuple[int, int]) -> list[dict]:
    """2-3 cut-outs, each with its own texture, mask, velocity and spin."""
    oh, ow = out
    objs = []
    for k in range(int(rng.integers(2, 4))):
        h, w = (int(q) for q in rng.integers([24, 24], [56, 64]))
        kind = ("photo", "card", "texture")[k % 3]
        if kind == "photo":
            y0, x0 = (int(q) for q in rng.integers(0, [photo.shape[0] - h, photo.shape[1] - w]))
            tex = photo[y0 : y0 + h, x0 : x0 + w].astype(np.float32)[:, :, ::-1].copy()
        elif kind == "card":
            tex = _card(rng, h, w)
        else:
            g = _gray_texture(GRAY_TEXTURES[int(rng.integers(len(GRAY_TEXTURES)))])
            y0, x0 = (int(q) for q in rng.integers(0, [g.shape[0] - h, g.shape[1] - w]))
            patch = g[y0 : y0 + h, x0 : x0 + w] / 255.0
            tint = rng.uniform(60, 255, 3).astype(np.float32)
            tex = patch[:, :, None] * tint
        objs.append({
            "tex": tex,
            "mask": _soft_mask(h, w, "ellipse" if kind == "photo" else "rect"),
            "pos": rng.uniform([0.2 * ow, 0.2 * oh], [0.8 * ow, 0.8 * oh]),
            "vel": rng.uniform(-3.0, 3.0, 2),
            "angle": rng.uniform(-0.5, 0.5),
            "spin": rng.uniform(-0.04, 0.04),
        })
    return objs


def _composite(frame: np.ndarray, obj: dict, t: int) -> None:
    """Paste object `obj` at time t into `frame` (float, in place) with bilinear resampling."""
    h, w = obj["mask"].shape
    c = obj["pos"] + obj["vel"] * t
    a = obj["angle"] + obj["spin"] * t
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = np.zeros((2, 3))
    m[:, :2] = rot
    m[:, 2] = c - rot @ np.array([w / 2, h / 2])
    size = (frame.shape[1], frame.shape[0])
    tex = cv2.warpAffine(obj["tex"], m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(obj["mask"], m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    frame *= 1 - alpha[:, :, None]
    frame += tex * alpha[:, :, None]


def _render(part: Part, index: int, photo_name: str, seed: int) -> tuple[np.ndarray, dict]:
    """Frames (T,H,W,3) uint8 RGB of one sequence and a record of its camera motion."""
    rng = np.random.default_rng([seed, *part.name.encode(), index])
    out = (part.height, part.width)
    raw = _photo(photo_name)
    photo = _fit(raw, int(min(min(raw.shape[:2]), max(out) * rng.uniform(1.5, 2.0))))
    src = np.ascontiguousarray(photo[:, :, ::-1]).astype(np.float32)  # cv2 works in BGR
    kind = CAMERA_KINDS[index % len(CAMERA_KINDS)]
    mats = _camera(kind, rng, part.frames, photo.shape[:2], out)
    objs = _objects(rng, photo, out)
    frames = np.empty((part.frames, *out, 3), np.uint8)
    for t, m in enumerate(mats):
        f = cv2.warpAffine(src, m, (part.width, part.height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT_101)
        for obj in objs:
            _composite(f, obj, t)
        frames[t] = np.clip(np.rint(f), 0, 255).astype(np.uint8)[:, :, ::-1]
    record = {"photo": photo_name, "camera": kind, "frame_to_source": [m.round(6).tolist() for m in mats]}
    return frames, record


def _quantise(x: torch.Tensor) -> np.ndarray:
    """(T,3,h,w) float in [0,1] -> (T,h,w,3) uint8 with round(255x), as the reference LR PNGs."""
    return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def generate(root: str | Path, seed: int = 0) -> Path:
    """Write the set to `root` (which must not exist yet): `<root>/{train,test}/{GT,Gaussian4xLR,
    Bicubic4xLR}/<seq>/<i:04d>.png` plus `manifest.json` and the completion marker."""
    root = Path(root)
    manifest: dict = {"version": VERSION, "seed": seed, "scale": SCALE, "parts": {}}
    for part in PARTS:
        seqs = {}
        for i, photo in enumerate(part.photos):
            name = f"{i:02d}_{photo}"
            gt, record = _render(part, i, photo, seed)
            # float64 so that round(255x) cannot flip with BLAS blocking: same seed, same bytes
            gt_t = torch.from_numpy(gt).permute(0, 3, 1, 2)[None].double() / 255.0
            lrs = {
                "Gaussian4xLR": _quantise(bd_downsample(gt_t, SCALE, pad=True)[0]),
                "Bicubic4xLR": _quantise(bi_downsample(gt_t, SCALE)[0]),
            }
            for t in range(part.frames):
                write_frame(root / part.name / "GT" / name / f"{t:04d}.png", gt[t])
                for folder, lr in lrs.items():
                    write_frame(root / part.name / folder / name / f"{t:04d}.png", lr[t])
            seqs[name] = record
        manifest["parts"][part.name] = {"frames": part.frames, "height": part.height, "width": part.width,
                                        "sequences": seqs}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (root / MARKER).write_text(json.dumps({"version": VERSION, "seed": seed}))
    return root


def ensure_builtin(root: str | Path | None = None, seed: int = 0) -> Path:
    """The built-in set's folder, generated on first use (a few seconds). Idempotent and safe with
    concurrent callers: generation happens in a temp folder renamed into place when complete."""
    root = Path(root).expanduser() if root is not None else default_root()
    marker = root / MARKER
    if marker.is_file():
        have = json.loads(marker.read_text())
        if have.get("seed") != seed:
            raise DataError(f"{root}: built-in set was generated with seed {have.get('seed')}, asked for "
                            f"seed {seed}; pass another root")
        return root
    if root.exists():
        raise DataError(f"{root}: exists but holds no complete built-in set ({MARKER} missing); "
                        "remove it or pass another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(root.parent, f".{root.name}.partial.")  # mkdtemp, with the umask's mode
    try:
        generate(tmp, seed)
        try:
            os.rename(tmp, root)
        except OSError:
            if not marker.is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def load_manifest(root: str | Path) -> dict:
    """The JSON record of a generated set (sequence names, photos, camera matrices)."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; not a built-in set folder")
    return json.loads(path.read_text())
