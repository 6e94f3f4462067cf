"""Expressions and literals for the C++ demangler's printer, parenthesized as binutils does.

A mixin of demangle_cpp_print's printer.
"""
from __future__ import annotations

from hud.symbolize.demangle_cpp_nodes import Builtin, Fail, Qual, kind
from hud.symbolize.demangle_cpp_tables import FLOAT_TYPES, INT_SUFFIX, NEW_CASTS, OPERATORS

_SIMPLE_EXPR = frozenset({"q", "fp"})


class ExprPrinter:
    __slots__ = ()

    def subexpr(self, dc) -> None:
        if type(dc) is str or type(dc) is Qual or kind(dc) in _SIMPLE_EXPR:
            self.p(dc)
        else:
            self.out.append("(")
            self.p(dc)
            self.out.append(")")

    def literal(self, dc) -> None:
        t, digits, neg = dc[1], dc[2], dc[3]
        out = self.out
        if type(t) is Builtin:
            sfx = INT_SUFFIX.get(t)
            if sfx is not None:
                if neg:
                    out.append("-")
                out.append(digits)
                out.append(sfx)
                return
            if t == "bool" and not neg and digits in ("0", "1"):
                out.append("true" if digits == "1" else "false")
                return
        out.append("(")
        self.p(t)
        out.append(")")
        if neg:
            out.append("-")
        if type(t) is Builtin and t in FLOAT_TYPES:
            out.append("[")
            out.append(digits)
            out.append("]")
        else:
            out.append(digits)
        self.size += len(digits)

    def fparam(self, dc) -> None:
        self.out.append("this" if dc[1] == 0 else f"{{parm#{dc[1]}}}")

    def exprlist(self, dc) -> None:
        self.plist(dc[1])

    def unary(self, dc) -> None:
        op, operand = dc[1], dc[2]
        code = op[1] if op[0] == "op" else None
        if code == "ad" and kind(operand) == "N" and kind(operand[2]) == "F" and (
                kind(operand[1]) == "q" or type(operand[1]) is Qual):
            operand = operand[1]   # &A::f, not &A::f(int)
        out = self.out
        if code == "sZ":
            # sizeof...(T) prints the length of the pack T stands for.
            a = self.find_pack(operand)
            if a is None:
                raise Fail("sizeof... without a pack")
            out.append(str(len(a[1])))
            return
        if op[0] == "cast":
            out.append("(")
            self.p(op[1])
            out.append(")")
        else:
            out.append(_op_text(op))
        if code == "st":
            out.append("(")
            self.p(operand)
            out.append(")")
        elif code == "gs":
            self.p(operand)
        else:
            self.subexpr(operand)

    def suffix_op(self, dc) -> None:
        self.subexpr(dc[2])
        self.out.append(_op_text(dc[1]))

    def binary(self, dc) -> None:
        op, left, right = dc[1], dc[2], dc[3]
        code = op[1]
        out = self.out
        if code in NEW_CASTS:
            out.append(_op_text(op))
            out.append("<")
            self.p(left)
            out.append(">(")
            self.p(right)
            out.append(")")
            return
        gt = code == "gt"
        if gt:
            out.append("(")
        if code == "cl" and kind(left) == "N":
            if kind(left[2]) != "F":
                raise Fail("call")
            self.subexpr(left[1])
        else:
            self.subexpr(left)
        if code == "ix":
            out.append("[")
            self.p(right)
            out.append("]")
        else:
            if code != "cl":
                out.append(_op_text(op))
            self.subexpr(right)
        if gt:
            out.append(")")

    def trinary(self, dc) -> None:
        self.subexpr(dc[2])
        self.out.append(_op_text(dc[1]))
        self.subexpr(dc[3])
        self.out.append(" : ")
        self.subexpr(dc[4])


def _op_text(op) -> str:
    """An operator as spelled inside an expression: `sizeof `, `+`, `static_cast`."""
    return OPERATORS[op[1]][0]
