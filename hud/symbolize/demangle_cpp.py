"""Itanium C++ ABI demangler printing exactly what binutils' `c++filt -i` prints.

`demangle_cpp(name)` parses a `_Z` symbol into a tree (demangle_cpp_nodes describes the
node shapes; names and templates here, types in demangle_cpp_types, expressions in
demangle_cpp_expr) and prints it with demangle_cpp_print, which follows binutils'
non-verbose layout rules, quirks included. Anything we cannot reproduce exactly (C++20
constraints, modules, explicit lambda templates, fold expressions, some `sr` forms binutils
reads by trial) returns None: the caller keeps the mangled name, which never misleads.

Hostile input is bounded: nesting depth (MAX_DEPTH), printing steps (MAX_STEPS) and
output size (_MAX_OUT); substitutions share subtrees, so a name whose substitutions
expand each other trips a cap instead of growing exponentially.
"""
from __future__ import annotations

import re
from typing import Optional

from hud.symbolize.demangle_cpp_expr import ExprParser
from hud.symbolize.demangle_cpp_nodes import FNQUALS, Fail, Qual, Std, kind
from hud.symbolize.demangle_cpp_print import print_tree
from hud.symbolize.demangle_cpp_tables import (
    OPERATORS,
    SPECIAL_NAME,
    SPECIAL_TYPE,
    STD_SUBS,
)
from hud.symbolize.demangle_cpp_types import MAX_DEPTH, TypeParser

_MAX_IN = 4096
_MAX_OUT = 1 << 14

_STD = {k: (Std(a), Std(b), c) for k, (a, b, c) in STD_SUBS.items()}
_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"n?[0-9]*")
_SEQ_ID = re.compile(r"[0-9A-Z]*_")
# binutils' clone suffix: "." then [a-z0-9_]+, then any ".<digits>" groups (greedy,
# no backtracking: ".pa.0rt" is not a suffix).
_CLONE = re.compile(r"\.[a-z0-9_]+(?:\.[0-9]+)*")
_ANON_NS = re.compile(r"_GLOBAL_[._$]N")
_CTOR_KINDS = "12345"
_DTOR_KINDS = "01245"


def demangle_cpp(name: str) -> Optional[str]:
    """The readable form of the C++ symbol `name` as `c++filt -i` prints it, or None when
    it is not a symbol we can demangle exactly."""
    if not name.startswith("_Z") or len(name) > _MAX_IN:
        return None
    version = ""
    if "@" in name:
        # `nm` shows symbol versions (foo@@GLIBCXX_3.4): c++filt keeps them as text.
        name, at, version = name.partition("@")
        version = at + version
    p = _Parser(name)
    try:
        tree = p.encoding(True)
        pos = p.pos
        while pos < len(name):
            m = _CLONE.match(name, pos)
            if m is None:
                return None
            tree = ("clone", tree, m.group())
            pos = m.end()
        return print_tree(tree, _MAX_OUT) + version
    except (Fail, RecursionError):
        return None
    except (IndexError, KeyError, TypeError, ValueError):
        return None   # a malformed name we did not foresee: left mangled, never raised


def _has_return_type(dc) -> bool:
    k = kind(dc)
    if k == "z":
        return _has_return_type(dc[2])
    if k == "t":
        return not _is_ctor_dtor_conv(dc[1])
    if k in FNQUALS:
        return _has_return_type(dc[1])
    return False


def _is_ctor_dtor_conv(dc) -> bool:
    k = kind(dc)
    if k == "q" or k == "z":
        return _is_ctor_dtor_conv(dc[2])
    return k in ("ctor", "dtor", "cv")


class _Parser(TypeParser, ExprParser):
    __slots__ = (
        "depth",
        "in_conversion",
        "is_expression",
        "last_name",
        "pos",
        "s",
        "subs",
    )

    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 2
        self.subs: list = []
        self.last_name = None               # constructors are named after it
        self.depth = 0
        self.is_expression = False
        self.in_conversion = False   # parsing the type of a conversion operator

    def peek(self) -> str:
        return self.s[self.pos:self.pos + 1]

    def expect(self, c: str) -> None:
        if self.s[self.pos:self.pos + 1] != c:
            raise Fail(c)
        self.pos += 1

    def number(self) -> int:
        m = _NUMBER.match(self.s, self.pos)
        self.pos = m.end()
        text = m.group()
        if text in ("", "n"):
            return 0
        return -int(text[1:]) if text[0] == "n" else int(text)

    def compact_number(self) -> int:
        """`_` is 0, `<n>_` is n+1."""
        if self.peek() == "_":
            self.pos += 1
            return 0
        m = _DIGITS.match(self.s, self.pos)
        if m is None:
            raise Fail("compact number")
        self.pos = m.end()
        self.expect("_")
        return int(m.group()) + 1

    def discriminator(self) -> None:
        """Optional `_<digit>` or `__<number>_`: binutils reads and drops it."""
        if self.peek() != "_":
            return
        self.pos += 1
        two = self.peek() == "_"
        if two:
            self.pos += 1
        n = self.number()
        if n < 0:
            raise Fail("negative discriminator")
        if two and n >= 10:
            self.expect("_")

    # <encoding> ::= <name> <bare-function-type> | <name> | <special-name>
    def encoding(self, top: bool):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Fail("depth")
        c = self.peek()
        if c == "G" or c == "T":
            out = self.special()
            self.depth -= 1
            return out
        name = self.name()
        c = self.peek()
        if c == "" or c == "E":
            self.depth -= 1
            return name
        ftype = self.bare_function_type(_has_return_type(name))
        if not top and kind(name) == "z":
            ftype = ("F", None, ftype[2])
        self.depth -= 1
        return ("N", name, ftype)

    def special(self):
        s = self.s
        two = s[self.pos:self.pos + 2]
        self.pos += 2
        text = SPECIAL_TYPE.get(two)
        if text is not None:
            return ("sp", text, self.type())
        text = SPECIAL_NAME.get(two)
        if text is not None:
            return ("sp", text, self.name())
        if two == "Th" or two == "Tv":
            self.pos -= 1
            self.call_offset()
            return ("sp", "non-virtual thunk to " if two == "Th" else "virtual thunk to ",
                    self.encoding(False))
        if two == "Tc":
            self.call_offset()
            self.call_offset()
            return ("sp", "covariant return thunk to ", self.encoding(False))
        if two == "TC":
            derived = self.type()
            if self.number() < 0:
                raise Fail("construction vtable offset")
            self.expect("_")
            return ("ctv", self.type(), derived)
        if two == "TA":
            return ("sp", "template parameter object for ", self.template_arg())
        if two == "GR":
            name = self.name()
            return ("gr", name, str(self.number()))
        if two == "GA":
            return ("sp", "hidden alias for ", self.encoding(False))
        if two == "GT":
            c = self.peek()
            self.pos += 1
            if c == "n":
                return ("sp", "non-transaction clone for ", self.encoding(False))
            if c == "t":
                return ("sp", "transaction clone for ", self.encoding(False))
        raise Fail("special name")

    def call_offset(self) -> None:
        c = self.peek()
        self.pos += 1
        if c == "h":
            self.number()
        elif c == "v":
            self.number()
            self.expect("_")
            self.number()
        else:
            raise Fail("call offset")
        self.expect("_")

    # <name> ::= <nested-name> | <unscoped-name> | <unscoped-template-name> <template-args>
    #          | <local-name>
    def name(self):
        c = self.peek()
        if c == "N":
            return self.nested_name()
        if c == "Z":
            return self.local_name()
        if c == "U":
            return self.unqualified(None)
        scope = None
        if c == "S":
            if self.s[self.pos + 1:self.pos + 2] == "t":
                self.pos += 2
                scope = "std"
            if self.peek() == "S":
                if scope is not None:
                    raise Fail("std::S")
                dc = self.substitution(False)
                if self.peek() == "I":
                    return ("t", dc, self.template_args())
                return dc
        dc = self.unqualified(scope)
        if self.peek() == "I":
            # An unscoped template name is a substitution candidate on its own.
            self.subs.append(dc)
            dc = ("t", dc, self.template_args())
        return dc

    def nested_name(self):
        self.pos += 1
        quals = []
        while True:
            c = self.peek()
            if c == "r" or c == "V" or c == "K":
                quals.append(c + "t")
                self.pos += 1
            elif c == "D" and self.s[self.pos + 1:self.pos + 2] in ("x", "o", "O", "w"):
                raise Fail("exception spec on a method")
            else:
                break
        rq = None
        c = self.peek()
        if c == "R" or c == "O":
            rq = c + "t"
            self.pos += 1
        ret = self.prefix()
        for q in reversed(quals):
            ret = (q, ret)
        if rq is not None:
            ret = (rq, ret)
        self.expect("E")
        return ret

    def prefix(self):
        s = self.s
        subs = self.subs
        ret = None
        while True:
            c = s[self.pos:self.pos + 1]
            if c == "D" and s[self.pos + 1:self.pos + 2] in ("T", "t"):
                if ret is not None:
                    raise Fail("decltype in prefix")
                ret = self.type()
            elif c == "I":
                if ret is None:
                    raise Fail("template args without a name")
                ret = ("t", ret, self.template_args())
            elif c == "T":
                if ret is not None:
                    raise Fail("template param in prefix")
                ret = self.template_param()
            elif c == "M":
                self.pos += 1   # a lambda's initializer scope, already a candidate
                continue
            elif c == "S":
                sub = self.substitution(True)
                if ret is not None:
                    raise Fail("substitution in prefix")
                ret = sub
                continue
            else:
                ret = self.unqualified(ret)
            if s[self.pos:self.pos + 1] == "E":
                return ret
            subs.append(ret)

    def unqualified(self, scope):
        s = self.s
        pos = self.pos
        c = s[pos:pos + 1]
        if "0" <= c <= "9":
            ret = self.source_name()
        elif "a" <= c <= "z":
            was = self.is_expression
            if c == "o" and s[self.pos + 1:self.pos + 2] == "n":
                self.pos += 2
                self.is_expression = False   # `on cv`: a conversion operator's name
            ret = self.operator_name()
            self.is_expression = was
            k = kind(ret)
            if k == "op" and ret[1] == "li":
                ret = ("li", self.source_name())
            elif k == "cast":
                raise Fail("cast as a name")
        elif c == "D" and s[self.pos + 1:self.pos + 2] == "C":
            self.pos += 2
            names = []
            while True:
                names.append(self.source_name())
                if self.peek() == "E":
                    break
            self.pos += 1
            ret = ("sb", names)
        elif c == "C" or c == "D":
            ret = self.ctor_dtor()
        elif c == "L":
            self.pos += 1
            ret = self.source_name()
            self.discriminator()
        elif c == "U":
            c2 = s[self.pos + 1:self.pos + 2]
            if c2 == "l":
                ret = self.lambda_()
            elif c2 == "t":
                self.pos += 2
                ret = ("ut", self.compact_number())
                # binutils adds the bare unnamed type, before the prefix adds it again.
                self.subs.append(ret)
            else:
                raise Fail("U name")
        else:
            raise Fail("unqualified name")
        if s[self.pos:self.pos + 1] == "B":
            hold = self.last_name
            while s[self.pos:self.pos + 1] == "B":
                self.pos += 1
                ret = ("abi", ret, self.source_name())
            self.last_name = hold
        if scope is not None:
            if type(ret) is str and isinstance(scope, str):
                ret = Qual(scope + "::" + ret)
            else:
                ret = ("q", scope, ret)
        return ret

    def source_name(self) -> str:
        s = self.s
        m = _DIGITS.match(s, self.pos)
        if m is None:
            raise Fail("source name")
        n = int(m.group())
        start = m.end()
        end = start + n
        if n <= 0 or end > len(s):
            raise Fail("source name length")
        self.pos = end
        ident = s[start:end]
        if n >= 10 and _ANON_NS.match(ident):
            ident = "(anonymous namespace)"
        self.last_name = ident
        return ident

    def ctor_dtor(self):
        s = self.s
        c = s[self.pos]
        if c == "C":
            if s[self.pos + 1:self.pos + 2] == "I":
                self.pos += 1
                inheriting = True
            else:
                inheriting = False
            k = s[self.pos + 1:self.pos + 2]
            if not k or k not in _CTOR_KINDS:
                raise Fail("ctor kind")
            self.pos += 2
            if inheriting:
                self.type()
            if self.last_name is None:
                raise Fail("ctor without a class")
            return ("ctor", self.last_name)
        k = s[self.pos + 1:self.pos + 2]
        if not k or k not in _DTOR_KINDS:
            raise Fail("dtor kind")
        self.pos += 2
        if self.last_name is None:
            raise Fail("dtor without a class")
        return ("dtor", self.last_name)

    def operator_name(self):
        s = self.s
        code = s[self.pos:self.pos + 2]
        self.pos += 2
        if code == "cv":
            was = self.in_conversion
            self.in_conversion = not self.is_expression
            t = self.type()
            conversion = self.in_conversion
            self.in_conversion = was
            return ("cv", t) if conversion else ("cast", t)
        if len(code) == 2 and code[0] == "v" and "0" <= code[1] <= "9":
            return ("ext", int(code[1]), self.source_name())
        op = OPERATORS.get(code)
        if op is None:
            raise Fail("operator")
        text, nargs = op
        if "a" <= text[0] <= "z":
            printed = "operator " + text.rstrip(" ") if text[-1] == " " else "operator " + text
        else:
            printed = "operator" + text
        return ("op", code, printed, nargs)

    def lambda_(self):
        self.pos += 2
        if self.peek() == "T" and self.s[self.pos + 1:self.pos + 2] in ("y", "n", "t", "p"):
            raise Fail("explicit lambda template parameters")
        params = self.parmlist()
        self.expect("E")
        return ("lam", params, self.compact_number())

    def local_name(self):
        self.pos += 1
        enc = self.encoding(False)
        self.expect("E")
        if self.peek() == "s":
            self.pos += 1
            self.discriminator()
            ent = "string literal"
        else:
            num = -1
            if self.peek() == "d":
                self.pos += 1
                num = self.compact_number()
            ent = self.name()
            if kind(ent) not in ("lam", "ut"):
                self.discriminator()
            if num >= 0:
                ent = ("da", num, ent)
        # binutils drops the enclosing function's return type.
        if kind(enc) == "N" and kind(enc[2]) == "F":
            enc = ("N", enc[1], ("F", None, enc[2][2]))
        return ("z", enc, ent)

    def substitution(self, prefix: bool):
        s = self.s
        c = s[self.pos + 1:self.pos + 2]
        if c == "_" or "0" <= c <= "9" or "A" <= c <= "Z":
            m = _SEQ_ID.match(s, self.pos + 1)
            if m is None:
                raise Fail("seq-id")
            self.pos = m.end()
            seq = m.group()[:-1]
            idx = int(seq, 36) + 1 if seq else 0
            if idx >= len(self.subs):
                raise Fail("substitution out of range")
            return self.subs[idx]
        std = _STD.get(c)
        if std is None:
            raise Fail("std substitution")
        self.pos += 2
        simple, full, last = std
        if last is not None:
            self.last_name = last
        if prefix and s[self.pos:self.pos + 1] in ("C", "D"):
            return full
        return simple

    def template_param(self):
        s = self.s
        self.pos += 1
        c = s[self.pos:self.pos + 1]
        if c == "_":
            self.pos += 1
            idx = 0
        else:
            m = _DIGITS.match(s, self.pos)
            if m is None:
                raise Fail("template param")
            self.pos = m.end()
            self.expect("_")
            idx = int(m.group()) + 1
        # Resolved when printed, against the template being printed then.
        return ("p", idx)

    def template_args(self) -> list:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Fail("depth")
        self.pos += 1
        hold = self.last_name
        args = []
        if self.peek() == "E":
            self.pos += 1
            self.depth -= 1
            return args
        while True:
            args.append(self.template_arg())
            c = self.peek()
            if c == "E":
                break
            if c == "Q" or c == "":
                raise Fail("template args")
        self.pos += 1
        self.last_name = hold
        self.depth -= 1
        return args

    def template_arg(self):
        c = self.peek()
        if c == "X":
            self.pos += 1
            ret = self.expression()
            self.expect("E")
            return ret
        if c == "L":
            return self.expr_primary()
        if c == "I" or c == "J":
            return ("J", self.template_args())
        return self.type()
