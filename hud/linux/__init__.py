"""linux layer."""
