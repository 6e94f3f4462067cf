"""Test support: Tokio fixture builds (fixture_build) and their pytest API (fixtures)."""
