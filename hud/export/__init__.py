"""export layer: Chrome trace, hud-report/1 JSON, folded stacks (all written atomically)."""
