"""Kernel-side building blocks: UAPI constants, eBPF encoding and programs (stdlib only)."""
