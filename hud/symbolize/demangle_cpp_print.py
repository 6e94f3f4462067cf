"""The C++ demangler's printer: a parsed tree to text laid out as binutils lays it out.

Names, templates and template parameters print here; declarators (demangle_cpp_print_decl)
and expressions (demangle_cpp_print_expr) in mixins. Template parameters resolve as they
print, against the template whose signature is printing, as in binutils. The quirks kept
for byte-identical output: a qualifier already pending is not repeated, references
collapse through template parameters, empty packs drop their comma (but `> >` still
sees it), `operator< <`.
"""
from __future__ import annotations

from hud.symbolize.demangle_cpp_nodes import Fail, kind
from hud.symbolize.demangle_cpp_print_decl import MAX_STEPS, DeclPrinter
from hud.symbolize.demangle_cpp_print_expr import ExprPrinter


def print_tree(tree, max_out: int) -> str:
    """The text of `tree`; Fail if it is longer than `max_out` or cannot be printed."""
    p = _Printer(max_out)
    p.p(tree)
    text = "".join(p.out)
    if len(text) > max_out:
        raise Fail("too long")
    return text


class _Printer(DeclPrinter, ExprPrinter):
    __slots__ = (
        "current",
        "lambda_arg",
        "max_out",
        "mods",
        "out",
        "pack_index",
        "scopes",
        "size",
        "stack",
        "steps",
        "templates",
    )

    def __init__(self, max_out: int) -> None:
        self.out: list = []
        self.size = 0            # characters of names printed: the runaway guard
        self.max_out = max_out
        # Pending modifiers: [node, printed, next cell, templates when pushed] cells.
        self.mods = None
        # Templates whose arguments T_ means, innermost first: (template, outer) or None.
        self.templates = None
        self.current = None      # the template being printed (for conversion operators)
        self.stack: list = []    # T_ and references being printed, innermost last
        self.scopes: dict = {}   # id(T_ under a reference): templates it first printed in
        self.pack_index = 0
        self.lambda_arg = 0
        self.steps = 0

    def last(self) -> str:
        out = self.out
        i = len(out) - 1
        while i >= 0:
            s = out[i]
            if s:
                return s[-1]
            if s is _GONE:
                return " "   # binutils forgets to forget the removed ", "
            i -= 1
        return ""

    def p(self, dc) -> None:
        if isinstance(dc, str):
            self.out.append(dc)
            self.size += len(dc)
            if self.size > self.max_out:
                raise Fail("too long")
            return
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Fail("too much")
        _HANDLERS[dc[0]](self, dc)

    def plist(self, items: list) -> None:
        """Comma-separated; an element that prints nothing (an empty pack) at the end
        takes its comma with it, as in binutils."""
        out = self.out
        commas = []   # (where the comma is, whether the element after it was empty)
        ci = 0
        for i, it in enumerate(items):
            if i:
                out.append(", ")
                ci = len(out) - 1
            start = len(out)
            self.p(it)
            if i:
                commas.append((ci, _printed_nothing(out, start)))
        for ci, empty in reversed(commas):
            if not empty:
                break
            out[ci] = _GONE

    # -- names ---------------------------------------------------------------------------
    def qual(self, dc) -> None:
        self.p(dc[1])
        self.out.append("::")
        self.p(dc[2])

    def local(self, dc) -> None:
        self.p(dc[1])
        self.out.append("::")
        self.local_entity(dc[2])

    def local_entity(self, ent) -> None:
        if kind(ent) == "da":
            self.out.append(f"{{default arg#{ent[1] + 1}}}::")
            ent = ent[2]
        self.p(ent)

    def template(self, dc) -> None:
        hold = self.mods
        hold_current = self.current
        self.current = dc
        self.mods = None
        self.p(dc[1])
        self.angled(dc[2])
        self.mods = hold
        self.current = hold_current

    def angled(self, args) -> None:
        """`<args>`, spaced so that no `<<` or `>>` forms (as binutils prints)."""
        out = self.out
        if self.last() == "<":
            out.append(" ")
        out.append("<")
        self.plist(args)
        if self.last() == ">":
            out.append(" ")
        out.append(">")

    def tparam(self, dc) -> None:
        if self.lambda_arg:
            self.out.append(f"auto:{dc[1] + 1}")
            return
        a = self.targ(dc)
        # The argument may itself name a parameter of an enclosing template.
        hold = self.templates
        self.templates = hold[1]
        self.stack.append(dc)
        self.p(a)
        self.stack.pop()
        self.templates = hold

    def lookup(self, dc):
        """The template argument T_ `dc` means here (a pack for a pack)."""
        if self.templates is None:
            raise Fail("template param outside a template")
        args = self.templates[0][2]
        if dc[1] >= len(args):
            raise Fail("template param out of range")
        return args[dc[1]]

    def targ(self, dc):
        a = self.lookup(dc)
        if kind(a) == "J":
            items = a[1]
            if self.pack_index >= len(items):
                raise Fail("pack index")
            a = items[self.pack_index]
        return a

    def pack(self, dc) -> None:
        self.plist(dc[1])

    def ctor(self, dc) -> None:
        self.p(dc[1])

    def dtor(self, dc) -> None:
        self.out.append("~")
        self.p(dc[1])

    def op(self, dc) -> None:
        self.out.append(dc[2])

    def conversion(self, dc) -> None:
        self.out.append("operator ")
        # Its type's T_ are the enclosing template's; a templated operator's own
        # arguments print outside that scope.
        hold = self.templates
        if self.current is not None:
            self.templates = (self.current, hold)
        t = dc[1]
        if kind(t) != "t":
            self.p(t)
            self.templates = hold
            return
        self.p(t[1])
        self.templates = hold
        self.angled(t[2])

    def literal_op(self, dc) -> None:
        self.out.append('operator"" ')
        self.p(dc[1])

    def ext_op(self, dc) -> None:
        self.out.append("operator ")
        self.p(dc[2])

    def abi(self, dc) -> None:
        self.p(dc[1])
        self.out.append("[abi:")
        self.p(dc[2])
        self.out.append("]")

    def lambda_(self, dc) -> None:
        self.out.append("{lambda(")
        self.lambda_arg += 1
        self.plist(dc[1])
        self.lambda_arg -= 1
        self.out.append(f")#{dc[2] + 1}}}")

    def unnamed(self, dc) -> None:
        self.out.append(f"{{unnamed type#{dc[1] + 1}}}")

    def binding(self, dc) -> None:
        self.out.append("[")
        self.plist(dc[1])
        self.out.append("]")

    def special(self, dc) -> None:
        self.out.append(dc[1])
        self.p(dc[2])

    def ctor_vtable(self, dc) -> None:
        self.out.append("construction vtable for ")
        self.p(dc[1])
        self.out.append("-in-")
        self.p(dc[2])

    def reftemp(self, dc) -> None:
        self.out.append("reference temporary #")
        self.out.append(dc[2])
        self.out.append(" for ")
        self.p(dc[1])

    def clone(self, dc) -> None:
        self.p(dc[1])
        self.out.append(" [clone ")
        self.out.append(dc[2])
        self.out.append("]")

class _Removed(str):
    __slots__ = ()


_GONE = _Removed("")


def _printed_nothing(out: list, start: int) -> bool:
    for i in range(start, len(out)):
        if out[i]:
            return False
    return True


_HANDLERS = {
    "q": _Printer.qual, "z": _Printer.local, "t": _Printer.template,
    "p": _Printer.tparam, "J": _Printer.pack, "ctor": _Printer.ctor,
    "dtor": _Printer.dtor, "op": _Printer.op, "cv": _Printer.conversion,
    "li": _Printer.literal_op, "ext": _Printer.ext_op, "abi": _Printer.abi,
    "lam": _Printer.lambda_, "ut": _Printer.unnamed, "sb": _Printer.binding,
    "sp": _Printer.special, "ctv": _Printer.ctor_vtable, "gr": _Printer.reftemp,
    "clone": _Printer.clone, "N": _Printer.typed_name, "F": _Printer.function,
    "A": _Printer.array, "M": _Printer.ptrmem, "vec": _Printer.vector,
    "K": _Printer.cv, "V": _Printer.cv, "r": _Printer.cv,
    "&": _Printer.reference, "&&": _Printer.reference,
    "*": _Printer.modifier, "Cx": _Printer.modifier, "Im": _Printer.modifier,
    "U": _Printer.modifier, "Kt": _Printer.modifier, "Vt": _Printer.modifier,
    "rt": _Printer.modifier, "Rt": _Printer.modifier, "Ot": _Printer.modifier,
    "tx": _Printer.modifier, "nx": _Printer.modifier, "tw": _Printer.modifier,
    "Dp": _Printer.expansion, "dt": _Printer.decltype, "lit": _Printer.literal,
    "fp": _Printer.fparam, "el": _Printer.exprlist, "un": _Printer.unary,
    "suf": _Printer.suffix_op, "bin": _Printer.binary, "tri": _Printer.trinary,
}
