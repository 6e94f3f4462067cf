"""Expressions and literals of the C++ demangler (decltype, array bounds, template args).

A mixin of the parser in demangle_cpp: it calls back into the type and name grammar.
Forms binutils prints in ways we have not checked (fold expressions, new, initializer
lists, designated initializers, `srN` qualified scopes, sizeof... of a pack) fail.
"""
from __future__ import annotations

from hud.symbolize.demangle_cpp_nodes import Builtin, Fail
from hud.symbolize.demangle_cpp_types import MAX_DEPTH

_DECLTYPE_NULLPTR = "decltype(nullptr)"


class ExprParser:
    __slots__ = ()

    def expression(self):
        was = self.is_expression
        self.is_expression = True
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Fail("depth")
        ret = self.expr1()
        self.depth -= 1
        self.is_expression = was
        return ret

    def expr1(self):
        s = self.s
        c = s[self.pos:self.pos + 1]
        c2 = s[self.pos + 1:self.pos + 2]
        if c == "L":
            return self.expr_primary()
        if c == "T":
            return self.template_param()
        if c == "s" and c2 == "r":
            self.pos += 2
            scope = self.unresolved_scope()
            name = self.unqualified(None)
            if self.peek() == "I":   # the arguments apply to the whole qualified name
                return ("t", ("q", scope, name), self.template_args())
            return ("q", scope, name)
        if c == "s" and c2 == "p":
            self.pos += 2
            return ("Dp", self.expression())
        if c == "f" and c2 == "p":
            self.pos += 2
            if self.peek() == "T":
                self.pos += 1
                return ("fp", 0)
            if self.peek() in ("r", "V", "K"):
                raise Fail("qualified function parameter")
            return ("fp", self.compact_number() + 1)
        if "0" <= c <= "9" or (c == "o" and c2 == "n"):
            if c == "o":
                self.pos += 2
            name = self.unqualified(None)
            if self.peek() == "I":
                return ("t", name, self.template_args())
            return name
        op = self.operator_name()
        k = op[0]
        if k == "op":
            code = op[1]
            if code == "st":
                return ("un", op, self.type())
            nargs = op[3]
        elif k == "cast":
            code = None
            nargs = 1
        else:
            raise Fail("expression operator")
        if nargs == 1:
            if code in ("sP", "nx", "li", "aw"):
                raise Fail("unchecked unary")
            if k == "cast" and self.peek() == "_":
                self.pos += 1
                return ("un", op, ("el", self.exprlist()))
            suffix = False
            if code == "pp" or code == "mm":
                if self.peek() == "_":
                    self.pos += 1
                else:
                    suffix = True
            operand = self.expression()
            return ("suf" if suffix else "un", op, operand)
        if nargs == 2:
            if code in ("dc", "sc", "cc", "rc"):
                left = self.type()
            elif code[0] == "f" or code in ("di", "dx", "dX"):
                raise Fail("fold or designated initializer")
            else:
                left = self.expression()
            if code == "cl":
                right = ("el", self.exprlist())
            elif code == "dt" or code == "pt":
                c = self.peek()
                c2 = self.s[self.pos + 1:self.pos + 2]
                if (c == "g" and c2 == "s") or (c == "s" and c2 == "r"):
                    right = self.expression()
                else:
                    right = self.unqualified(None)
                    if self.peek() == "I":
                        right = ("t", right, self.template_args())
            else:
                right = self.expression()
            return ("bin", op, left, right)
        if nargs == 3 and code == "qu":
            a = self.expression()
            b = self.expression()
            return ("tri", op, a, b, self.expression())
        raise Fail("unchecked expression")

    def unresolved_scope(self):
        """What `sr` qualifies: `N <type> <level>+ E`, `<level>+ E` or `<type>`."""
        c = self.peek()
        if c == "N":
            self.pos += 1
            ret = self.type()
            while True:
                ret = ("q", ret, self.source_name())
                self.subs.append(ret)
                if self.peek() == "I":
                    ret = ("t", ret, self.template_args())
                    self.subs.append(ret)
                if self.peek() == "E":
                    self.pos += 1
                    return ret
        if "0" <= c <= "9":
            # binutils reads `A B E c` as A::B::c when that parses, and as (type A)::B
            # followed by more when only that does: we read the first or give up.
            ret = None
            while True:
                level = self.source_name()
                if self.peek() == "I":
                    level = ("t", level, self.template_args())
                ret = level if ret is None else ("q", ret, level)
                c = self.peek()
                if c == "E":
                    self.pos += 1
                    return ret
                if not "0" <= c <= "9":
                    raise Fail("qualifier level")
        return self.type()

    def exprlist(self) -> list:
        out = []
        if self.peek() == "E":
            self.pos += 1
            return out
        while True:
            out.append(self.expression())
            c = self.peek()
            if c == "E":
                self.pos += 1
                return out
            if c == "":
                raise Fail("expression list")

    def expr_primary(self):
        s = self.s
        self.pos += 1
        c = s[self.pos:self.pos + 1]
        if c == "_" or c == "Z":
            # A mangled name: an external entity (its encoding prints).
            if c == "_":
                self.pos += 1
            self.expect("Z")
            ret = self.encoding(False)
        else:
            t = self.type()
            if type(t) is Builtin and t == _DECLTYPE_NULLPTR and self.peek() == "E":
                self.pos += 1
                return t
            neg = False
            if self.peek() == "n":
                neg = True
                self.pos += 1
            end = s.find("E", self.pos)
            if end <= self.pos:
                raise Fail("literal")
            ret = ("lit", t, s[self.pos:end], neg)
            self.pos = end
        self.expect("E")
        return ret
