"""analysis layer: episodes -> findings, hotspots, per-worker shares, rolling windows (pure).

The entry point is `Analyzer` (hud.analysis.analyzer); the other modules are its parts.
"""
from __future__ import annotations

from hud.analysis.analyzer import Analyzer, PoolSummary
from hud.analysis.episodes import EpisodeBuilder, Resolver
from hud.analysis.findings import FindingsTable, rank
from hud.analysis.hotspots import BY_SELF, BY_USER, Hotspot
from hud.analysis.shares import WorkerShare

__all__ = ["BY_SELF", "BY_USER", "Analyzer", "EpisodeBuilder", "FindingsTable", "Hotspot",
           "PoolSummary", "Resolver", "WorkerShare", "rank"]
