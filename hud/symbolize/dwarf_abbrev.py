"""DWARF abbreviation tables: parsing, and plans to skip or read a DIE of each kind.

A DIE is decoded through its abbreviation; precomputing per abbreviation how many bytes a
DIE of that shape takes (or which variable-size attributes break the run) and how to read
the few attributes a walk needs in one struct unpack is what makes the DIE walks cheap.
"""
from __future__ import annotations

import struct
from typing import Optional

from hud.symbolize.dwarf_forms import (
    FORM_IMPLICIT_CONST,
    DwarfError,
    fixed_size,
    sleb,
    uleb,
)


class Abbrev:
    """One abbreviation: tag, children flag, attribute specs and a precomputed skip plan.

    `skip` is the fixed byte size of all attribute values, or -1 when some are variable;
    `plan` then alternates fixed runs (ints >= 0) and variable forms (negated form codes).
    """

    __slots__ = ("attrs", "children", "code", "plan", "skip", "steps", "tag")

    def __init__(self, code: int, tag: int, children: bool,
                 attrs: tuple[tuple[int, int, int], ...]) -> None:
        self.code = code
        self.tag = tag
        self.children = children
        self.attrs = attrs
        self.skip = -1
        self.plan: tuple[int, ...] = ()
        self.steps: tuple = ()

    def compile(self, addr_size: int, offset_size: int, version: int,
                roles: Optional[dict[int, int]] = None) -> None:
        """Precompute how to skip this DIE and, for tags in `roles`' users, how to read it.

        `steps` reads the attributes named in `roles` (attribute -> role number): runs of
        fixed-size values become one struct unpack, variable ones are read or skipped
        one by one. Each step is (struct, ((field, role, form), ...)) or
        (None, ((form, role, implicit),)).
        """
        if roles is not None:
            self.steps = compile_steps(self.attrs, roles, addr_size, offset_size, version)
        plan = []
        run = 0
        for _at, form, _imp in self.attrs:
            size = fixed_size(form, addr_size, offset_size, version)
            if size >= 0:
                run += size
            else:
                plan.append(run)
                plan.append(-form)
                run = 0
        if not plan:
            self.skip = run
        else:
            plan.append(run)
            self.plan = tuple(plan)


_STRUCT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


def compile_steps(attrs: tuple[tuple[int, int, int], ...], roles: dict[int, int],
                   addr_size: int, offset_size: int, version: int) -> tuple:
    steps = []
    fmt = ""
    fields: list[tuple[int, int, int]] = []
    nfield = 0
    for at, form, imp in attrs:
        size = fixed_size(form, addr_size, offset_size, version)
        role = roles.get(at, -1)
        if size == 0:
            if role >= 0:
                # No bytes: the value lives in the abbreviation (or is "present").
                steps.append((None, ((form, role, imp),)))
            continue
        if size > 0:
            code = _STRUCT_CODES.get(size)
            if code is None or role < 0:
                fmt += f"{size}x"
            else:
                fmt += code
                fields.append((nfield, role, form))
                nfield += 1
            continue
        if fmt:
            steps.append((struct.Struct("<" + fmt), tuple(fields)))
            fmt, fields, nfield = "", [], 0
        steps.append((None, ((form, role, imp),)))
    if fmt:
        steps.append((struct.Struct("<" + fmt), tuple(fields)))
    return tuple(steps)


def parse_abbrevs(data: bytes, offset: int, only: int = -1,
                  shared: Optional[dict] = None) -> dict[int, Abbrev]:
    """The abbreviation table at `offset` of .debug_abbrev; with `only`, the entries up
    to the one with that code (a unit's root DIE needs one, usually the first, and
    most units are only ever asked for their root).

    `shared` interns attribute specs and lists across the tables of one file: a Rust
    binary's tables repeat the same few hundred specs tens of thousands of times, and
    every distinct tuple is one more object to allocate, collect and free."""
    if shared is None:
        shared = {}
    out: dict[int, Abbrev] = {}
    pos = offset
    n = len(data)
    if not 0 <= pos < n:
        raise DwarfError(f"abbrev offset {offset:#x} out of range")
    try:
        while pos < n:
            code, pos = uleb(data, pos)
            if code == 0:
                break
            tag, pos = uleb(data, pos)
            if pos >= n:
                raise DwarfError("truncated abbreviation")
            children = data[pos] != 0
            pos += 1
            attrs = []
            while True:
                # Attribute and form codes are almost all below 0x80: one byte each.
                at = data[pos]
                if at < 0x80:
                    pos += 1
                else:
                    at, pos = uleb(data, pos)
                form = data[pos]
                if form < 0x80:
                    pos += 1
                else:
                    form, pos = uleb(data, pos)
                if at == 0 and form == 0:
                    break
                imp = 0
                if form == FORM_IMPLICIT_CONST:
                    imp, pos = sleb(data, pos)
                spec = (at, form, imp)
                attrs.append(shared.setdefault(spec, spec))
                if len(attrs) > 4096:
                    raise DwarfError("abbreviation with too many attributes")
            specs = tuple(attrs)
            out[code] = Abbrev(code, tag, children, shared.setdefault(specs, specs))
            if code == only:
                break
    except IndexError:
        raise DwarfError("truncated abbreviation table") from None
    return out
