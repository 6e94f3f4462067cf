"""Colours of the live view: one per episode kind, worker state and frame class.

Few colours, each with one meaning everywhere (table, bars, timeline, stack): red is a
worker blocked, amber a long poll on CPU, violet a worker waiting for a CPU.
"""
from __future__ import annotations

from hud.model import (
    CLASS_KERNEL,
    CLASS_RUNTIME,
    CLASS_STD,
    CLASS_THIRD_PARTY,
    CLASS_UNKNOWN,
    CLASS_USER,
    KIND_BLOCKING,
    KIND_CPU,
    KIND_SCHED_DELAY,
)

BLOCKED = "#e06c75"
CPU = "#e5c07b"
WAITING = "#c678dd"
RUNNING = "#98c379"
PARKED = "#5c6370"
OTHER = "#3e4451"
DIM = "#7f848e"
USER = "bold #61afef"
ALERT = "bold #e06c75"
GOOD = "#98c379"

KIND_STYLE = {KIND_BLOCKING: BLOCKED, KIND_CPU: CPU, KIND_SCHED_DELAY: WAITING}

CLASS_STYLE = {
    CLASS_USER: USER,
    CLASS_THIRD_PARTY: "",
    CLASS_STD: DIM,
    CLASS_RUNTIME: DIM,
    CLASS_KERNEL: DIM,
    CLASS_UNKNOWN: "italic " + DIM,
}
