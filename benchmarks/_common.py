"""What the benchmark scripts share: the description of the machine a measurement ran on, and size
arguments. (Run the scripts as `python benchmarks/NAME.py`; this folder is then on the import path.)"""

from __future__ import annotations

from typing import Any

from tecogan_plugin.bench.report import machine_info, machine_line

__all__ = ["machine_info", "machine_text", "parse_size"]


def machine_text(device: Any = "cpu", threads: int | None = None) -> str:
    """The machine, software and load average as one line of a report (`machine_info` for JSON)."""
    return machine_line(machine_info(device, threads))


def parse_size(text: str, order: str = "HxW") -> tuple[int, int]:
    """A size argument as (height, width). `order` is how it is written: "HxW" (`134x320`, tensor
    order) or "WxH" (`320x134`, as video sizes are written)."""
    first, sep, second = text.lower().partition("x")
    try:
        a, b = int(first), int(second)
    except ValueError:
        a = b = 0
    if not sep or a <= 0 or b <= 0:
        raise SystemExit(f"size {text!r}: expected {order} with two positive integers, e.g. "
                         f"{'134x320' if order == 'HxW' else '320x134'}")
    return (a, b) if order == "HxW" else (b, a)
