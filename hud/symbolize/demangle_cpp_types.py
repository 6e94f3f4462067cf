"""Types of the C++ demangler's grammar: builtins, qualifiers, function, array and vector types.

A mixin of the parser in demangle_cpp (names, template arguments and substitutions live
there). What is a substitution candidate follows the ABI as binutils applies it.
"""
from __future__ import annotations

import re

from hud.symbolize.demangle_cpp_nodes import FNQUALS, Builtin, Fail, Std, Vendor, kind
from hud.symbolize.demangle_cpp_tables import BUILTIN, DBUILTIN

MAX_DEPTH = 128
_BUILTINS = {k: Builtin(v) for k, v in BUILTIN.items()}
_DBUILTINS = {k: Builtin(v) for k, v in DBUILTIN.items()}
_VOID = _BUILTINS["v"]
_DIGITS = re.compile(r"[0-9]+")
_MODS = {"P": "*", "R": "&", "O": "&&", "C": "Cx", "G": "Im"}


class TypeParser:
    __slots__ = ()

    def bare_function_type(self, has_return: bool):
        if self.peek() == "J":
            self.pos += 1
            has_return = True
        ret = self.type() if has_return else None
        return ("F", ret, self.parmlist())

    def parmlist(self) -> list:
        s = self.s
        params = []
        while True:
            c = s[self.pos:self.pos + 1]
            if c == "" or c == "E" or c == "." or c == "Q":
                break
            if (c == "R" or c == "O") and s[self.pos + 1:self.pos + 2] == "E":
                break
            params.append(self.type())
        if not params:
            raise Fail("empty parameter list")
        if len(params) == 1 and params[0] is _VOID:
            return []
        return params

    def function_type(self):
        self.pos += 1
        if self.peek() == "Y":
            self.pos += 1
        ret = self.bare_function_type(True)
        c = self.peek()
        if c == "R" or c == "O":
            self.pos += 1
            ret = (c + "t", ret)
        self.expect("E")
        return ret

    def cv_type(self):
        s = self.s
        quals = []
        while True:
            c = s[self.pos:self.pos + 1]
            if c == "r" or c == "V" or c == "K":
                quals.append((c, None))
                self.pos += 1
            elif c == "D" and s[self.pos + 1:self.pos + 2] in ("x", "o", "O", "w"):
                c2 = s[self.pos + 1]
                self.pos += 2
                if c2 == "x":
                    quals.append(("tx", None))
                elif c2 == "o":
                    quals.append(("nx", None))
                elif c2 == "O":
                    e = self.expression()
                    self.expect("E")
                    quals.append(("nx", e))
                else:
                    params = self.parmlist()
                    self.expect("E")
                    quals.append(("tw", params))
            else:
                break
        if self.peek() == "F":
            # Qualifiers of a function type qualify `this`; the unqualified function
            # type is not a substitution candidate.
            inner = self.function_type()
            quals = [(q + "t" if q in ("r", "V", "K") else q, a) for q, a in quals]
        else:
            if any(q not in ("r", "V", "K") for q, _ in quals):
                raise Fail("exception spec on a non-function")
            inner = self.type()
        rq = None
        if kind(inner) in ("Rt", "Ot"):
            rq = inner[0]
            inner = inner[1]
        ret = inner
        for q, a in reversed(quals):
            ret = (q, ret) if a is None else (q, ret, a)
        if rq is not None:
            ret = (rq, ret)
        self.subs.append(ret)
        return ret

    def type(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Fail("depth")
        s = self.s
        c = s[self.pos:self.pos + 1]
        b = _BUILTINS.get(c)
        if b is not None:
            self.pos += 1
            self.depth -= 1
            return b
        if c == "P" or c == "R" or c == "O" or c == "C" or c == "G":
            self.pos += 1
            ret = (_MODS[c], self.type())
        elif "0" <= c <= "9" or c == "N" or c == "Z":
            ret = self.name()
            if kind(ret) in FNQUALS:
                raise Fail("qualified class name")
        elif c == "K" or c == "V" or c == "r" or (
                c == "D" and s[self.pos + 1:self.pos + 2] in ("x", "o", "O", "w")):
            ret = self.cv_type()
            self.depth -= 1
            return ret
        elif c == "S":
            c2 = s[self.pos + 1:self.pos + 2]
            if c2 == "_" or "0" <= c2 <= "9" or "A" <= c2 <= "Z":
                ret = self.substitution(False)
                if s[self.pos:self.pos + 1] != "I":
                    self.depth -= 1
                    return ret
                ret = ("t", ret, self.template_args())
            else:
                ret = self.name()
                if type(ret) is Std:
                    self.depth -= 1
                    return ret
        elif c == "T":
            ret = self.template_param()
            if s[self.pos:self.pos + 1] == "I":
                if not self.in_conversion:
                    self.subs.append(ret)
                    ret = ("t", ret, self.template_args())
                else:
                    # `cv T_ I..E`: the args are the template template parameter's
                    # only if more args (the operator's) follow; else the operator's.
                    pos, nsubs, last = self.pos, len(self.subs), self.last_name
                    args = self.template_args()
                    if s[self.pos:self.pos + 1] == "I":
                        self.subs.append(ret)
                        ret = ("t", ret, args)
                    else:
                        self.pos, self.last_name = pos, last
                        del self.subs[nsubs:]
        elif c == "F":
            ret = self.function_type()
        elif c == "A":
            ret = self.array_type()
        elif c == "M":
            self.pos += 1
            cls = self.type()
            ret = ("M", cls, self.type())
        elif c == "D":
            c2 = s[self.pos + 1:self.pos + 2]
            b = _DBUILTINS.get(c2)
            if b is not None:
                self.pos += 2
                self.depth -= 1
                return b
            self.pos += 2
            if c2 == "T" or c2 == "t":
                ret = ("dt", self.expression())
                self.expect("E")
            elif c2 == "p":
                ret = ("Dp", self.type())
            elif c2 == "F":
                self.depth -= 1
                return self.float_type()
            elif c2 == "v":
                ret = self.vector_type()
            else:
                raise Fail("D type")
        elif c == "u":
            self.pos += 1
            ret = Vendor(self.source_name())
            if self.peek() == "I":
                raise Fail("vendor type with template args")
        elif c == "U":
            self.pos += 1
            q = self.source_name()
            if self.peek() == "I":
                q = ("t", q, self.template_args())
            ret = ("U", self.type(), q)
        else:
            raise Fail("type")
        self.subs.append(ret)
        self.depth -= 1
        return ret

    def float_type(self):
        m = _DIGITS.match(self.s, self.pos)
        if m is None:
            raise Fail("DF")
        self.pos = m.end()
        c = self.peek()
        self.pos += 1
        if c == "_":
            return Builtin("_Float" + m.group())
        if c == "x":
            return Builtin("_Float" + m.group() + "x")
        if c == "b" and m.group() == "16":
            return Builtin("std::bfloat16_t")
        raise Fail("DF")

    def vector_type(self):
        if self.peek() == "_":
            self.pos += 1
            dim = self.expression()
        else:
            m = _DIGITS.match(self.s, self.pos)
            if m is None:
                raise Fail("vector size")
            self.pos = m.end()
            dim = m.group()
        self.expect("_")
        return ("vec", dim, self.type())

    def array_type(self):
        s = self.s
        self.pos += 1
        c = s[self.pos:self.pos + 1]
        if c == "_":
            dim = None
        elif "0" <= c <= "9":
            m = _DIGITS.match(s, self.pos)
            self.pos = m.end()
            dim = m.group()
        else:
            dim = self.expression()
        self.expect("_")
        return ("A", dim, self.type())
