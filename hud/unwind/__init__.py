"""unwind layer."""
