"""DDP through the engine with two CPU processes (gloo): both ranks end with the same weights, and
they equal a single-process run whose batch is the two ranks' batches together."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from prunekit.schedule import run

STAGES = [
    {"kind": "train", "iterations": 4, "batch": 2, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}},
    {"kind": "prune", "strategy": "block_influence", "target": {"kind": "keep_blocks", "n": 2}, "calibration": 2},
    {"kind": "finetune", "iterations": 3, "batch": 2, "optimizer": {"name": "sgd", "lr": 0.05},
     "distill": {"weight": 0.5}},
]


def _config(out: Path, batch: int) -> dict:
    stages = [dict(s, batch=batch) if "batch" in s else s for s in STAGES]
    return {"task": {"name": "test_schedule:ToyTask", "options": {"n_blocks": 3}}, "seed": 1, "device": "cpu",
            "out_dir": str(out), "progress": False, "ckpt_every": 2, "stages": stages}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result = run(_config(Path(out) / "run", batch=2))
    state = {k: v.detach().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(Path(out) / f"rank{rank}.safetensors"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_match_one_process_with_the_combined_batch(tmp_path):
    torch.set_num_threads(1)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # import torch's lazy optimiser deps once
    # fork: the children inherit the imported modules (spawning re-imports torch, ~10 s per process here)
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    single = run(_config(tmp_path / "single", batch=4))
    ref = single.model.state_dict()
    assert ref.keys() == r0.keys()
    for k in r0:
        torch.testing.assert_close(r0[k], ref[k], rtol=1e-4, atol=1e-5)
    # rank 0 alone wrote the run folder
    assert (tmp_path / "run" / "final" / "plan.json").is_file()
    assert len(list((tmp_path / "run" / "checkpoints").iterdir())) >= 1
