"""hud: find what blocks a running Tokio runtime's worker threads.

The Python API for ops tooling:

    import hud
    with hud.Profiler(pid=1234, threshold_ms=5) as prof:
        report = prof.run(duration_s=10)       # the hud-report/1 object
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Profiler", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m hud --help` and the zipapp start without loading the analysis.
    if name == "Profiler":
        from hud.session import Profiler
        return Profiler
    raise AttributeError(name)
