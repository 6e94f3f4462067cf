"""bpf layer."""
