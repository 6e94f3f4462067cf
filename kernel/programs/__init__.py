"""programs layer."""
