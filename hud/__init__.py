"""hud: find what blocks a running Tokio runtime's worker threads."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
