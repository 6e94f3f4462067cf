"""A small Itanium C++ demangler for the common cases, printed as `c++filt -i` does.

Covered: nested and unscoped names, namespaces and classes, constructors, destructors,
template arguments (types and integer literals), substitutions (S_, St, Sa, Ss...),
template parameters, builtin, pointer, reference and cv-qualified parameter types,
const methods, and clone suffixes. Anything else (operators, local names, function
types, expressions, ABI tags...) returns None and the caller keeps the mangled name:
readable where cheap, never wrong on purpose. Tests compare with c++filt.
"""
from __future__ import annotations

import re
from typing import Optional

_MAX_DEPTH = 64
_MAX_OUT = 1 << 14

_BUILTIN = {
    "v": "void", "w": "wchar_t", "b": "bool", "c": "char", "a": "signed char",
    "h": "unsigned char", "s": "short", "t": "unsigned short", "i": "int",
    "j": "unsigned int", "l": "long", "m": "unsigned long", "x": "long long",
    "y": "unsigned long long", "n": "__int128", "o": "unsigned __int128", "f": "float",
    "d": "double", "e": "long double", "g": "__float128", "z": "...",
}
_DBUILTIN = {"Di": "char32_t", "Ds": "char16_t", "Du": "char8_t", "Dn": "decltype(nullptr)"}
_STD_SUBS = {
    "Sa": "std::allocator", "Sb": "std::basic_string",
    "Ss": "std::string", "Si": "std::istream", "So": "std::ostream",
    "Sd": "std::iostream",
}
_CTOR = {"C1", "C2", "C3", "CI1", "CI2"}
_SPECIAL = {"TV": "vtable for ", "TI": "typeinfo for ", "TS": "typeinfo name for ",
            "TT": "VTT for "}
_OPERATORS = {
    "nw": " new", "na": " new[]", "dl": " delete", "da": " delete[]", "ps": "+", "ng": "-",
    "ad": "&", "de": "*", "co": "~", "pl": "+", "mi": "-", "ml": "*", "dv": "/", "rm": "%",
    "an": "&", "or": "|", "eo": "^", "aS": "=", "pL": "+=", "mI": "-=", "mL": "*=",
    "dV": "/=", "rM": "%=", "aN": "&=", "oR": "|=", "eO": "^=", "ls": "<<", "rs": ">>",
    "lS": "<<=", "rS": ">>=", "eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=",
    "ge": ">=", "nt": "!", "aa": "&&", "oo": "||", "pp": "++", "mm": "--", "cm": ",",
    "pm": "->*", "pt": "->", "cl": "()", "ix": "[]",
}
_DTOR = {"D0", "D1", "D2"}
_CLONE = re.compile(r"^((?:\.[A-Za-z_][A-Za-z0-9_]*(?:\.[0-9]+)*)+)$")
_NUM = re.compile(r"[0-9]+")


class _Unsupported(Exception):
    pass


def demangle_cpp(name: str) -> Optional[str]:
    """Demangle simple `_Z` symbols; None when the symbol uses unsupported grammar."""
    if not name.startswith("_Z") or len(name) > 4096:
        return None
    body = name[2:]
    # Clone suffixes (".cold", ".constprop.0", ".isra.0") follow the encoding.
    suffix = ""
    dot = body.find(".")
    if dot > 0:
        body, suffix = body[:dot], body[dot:]
        if not _CLONE.match(suffix):
            return None
    p = _Parser(body)
    try:
        out = p.encoding()
        if p.pos != len(body):
            return None
    except (_Unsupported, IndexError, ValueError, RecursionError):
        return None
    if len(out) > _MAX_OUT:
        return None
    if suffix:
        out += "".join(f" [clone {c}]" for c in _clones(suffix))
    return out


def _clones(suffix: str) -> list[str]:
    # ".constprop.0.isra.0" prints as " [clone .constprop.0] [clone .isra.0]".
    parts = re.findall(r"\.[A-Za-z_][A-Za-z0-9_]*(?:\.[0-9]+)*", suffix)
    return parts


class _Parser:
    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 0
        self.subs: list[str] = []
        self.tparams: list[str] = []
        self.depth = 0

    def peek(self, n: int = 1) -> str:
        return self.s[self.pos:self.pos + n]

    def eat(self, tok: str) -> bool:
        if self.s.startswith(tok, self.pos):
            self.pos += len(tok)
            return True
        return False

    # <encoding> ::= <name> <bare-function-type> | <name> | <special-name>
    def encoding(self) -> str:
        special = _SPECIAL.get(self.peek(2))
        if special is not None:
            self.pos += 2
            return special + self.type()
        name, is_template, cv, is_ctor_dtor = self.name()
        if self.pos >= len(self.s):
            return name
        params = []
        ret = ""
        if is_template and not is_ctor_dtor:
            ret = self.type()
        while self.pos < len(self.s):
            params.append(self.type())
        if params == ["void"]:
            params = []
        text = f"{name}({', '.join(params)})"
        if cv:
            text += " " + cv
        return f"{ret} {text}" if ret else text

    # Returns (text, ends with template args, cv-qualifiers of a method, ctor/dtor).
    def name(self) -> tuple[str, bool, str, bool]:
        if self.eat("N"):
            return self.nested()
        if self.peek() == "Z":
            raise _Unsupported("local name")
        if self.eat("St"):
            text = "std::" + self.unqualified()[0]
            prefix_is_sub = True
        elif self.peek() == "S" and self.peek(2) not in ("St",):
            text = self.substitution()
            prefix_is_sub = False
            if self.peek() != "I":
                raise _Unsupported("substitution as a name")
        else:
            text = self.unqualified()[0]
            prefix_is_sub = True
        if self.peek() == "I":
            # An unscoped template name is itself a substitution candidate.
            if prefix_is_sub:
                self.subs.append(text)
            args = self.template_args()
            return text + args, True, "", False
        return text, False, "", False

    # N [<CV-qualifiers>] <prefix> <unqualified-name> E
    def nested(self) -> tuple[str, bool, str, bool]:
        cv = []
        while self.peek() in ("K", "V", "r"):
            c = self.s[self.pos]
            self.pos += 1
            cv.append({"K": "const", "V": "volatile", "r": "restrict"}[c])
        if self.peek() in ("R", "O"):
            raise _Unsupported("ref-qualified method")
        parts: list[str] = []
        last_template = False
        last_ctor = False
        prefix = ""
        while not self.eat("E"):
            if self.pos >= len(self.s):
                raise _Unsupported("unterminated nested name")
            c = self.peek()
            if c == "S" and self.peek(2) == "St":
                if parts:
                    raise _Unsupported("std:: inside a prefix")
                self.pos += 2
                name, _ = self.unqualified()
                prefix = "std::" + name
                parts.append(prefix)
                last_template = last_ctor = False
                if self.peek() != "E":
                    self.subs.append(prefix)
                continue
            if c == "S":
                if parts:
                    raise _Unsupported("substitution inside a prefix")
                if self.peek(2) in ("Ss", "Si", "So", "Sd"):
                    # As a prefix these print as the full basic_* template: not covered.
                    raise _Unsupported("std stream/string prefix")
                prefix = self.substitution()
                parts.append(prefix)
                last_template = last_ctor = False
                continue
            if c == "I":
                if not parts:
                    raise _Unsupported("template args without a name")
                args = self.template_args()
                prefix = prefix + args
                parts[-1] += args
                last_template = True
                if self.peek() != "E":
                    self.subs.append(prefix)
                continue
            if c == "T":
                t = self.template_param()
                prefix = t
                parts.append(t)
                self.subs.append(prefix)
                last_template = False
                continue
            if c in ("C", "D") and self.peek(2) in _CTOR | _DTOR | {"CI"}:
                tok = self.peek(2)
                if tok == "CI":
                    raise _Unsupported("inheriting constructor")
                self.pos += 2
                if not parts:
                    raise _Unsupported("constructor without a class")
                base = re.sub(r"<.*$", "", parts[-1]).rsplit("::", 1)[-1]
                name = ("~" if tok in _DTOR else "") + base
                prefix = f"{prefix}::{name}" if prefix else name
                parts.append(name)
                last_template = False
                last_ctor = True
                if self.peek() != "E":
                    raise _Unsupported("constructor not last")
                continue
            name, _ = self.unqualified()
            prefix = f"{prefix}::{name}" if prefix else name
            parts.append(name)
            last_template = False
            last_ctor = False
            if self.peek() != "E":
                self.subs.append(prefix)
        if not parts:
            raise _Unsupported("empty nested name")
        return "::".join(parts), last_template, " ".join(cv), last_ctor

    def unqualified(self) -> tuple[str, bool]:
        op = _OPERATORS.get(self.peek(2))
        if op is not None:
            self.pos += 2
            if self.peek() == "I":
                raise _Unsupported("templated operator")   # c++filt spaces these oddly
            return "operator" + op, False
        c = self.peek()
        if c.isdigit():
            m = _NUM.match(self.s, self.pos)
            n = int(m.group())
            start = m.end()
            end = start + n
            if n == 0 or end > len(self.s):
                raise _Unsupported("bad source name")
            self.pos = end
            ident = self.s[start:end]
            if ident.startswith("_GLOBAL__N"):
                return "(anonymous namespace)", False
            if self.peek() == "B":
                raise _Unsupported("abi tag")
            return ident, False
        raise _Unsupported(f"unqualified name {c!r}")

    def substitution(self) -> str:
        two = self.peek(2)
        if two in _STD_SUBS:
            self.pos += 2
            return _STD_SUBS[two]
        if two == "St":
            raise _Unsupported("std:: here")
        if not self.eat("S"):
            raise _Unsupported("not a substitution")
        m = re.compile(r"([0-9A-Z]*)_").match(self.s, self.pos)
        if m is None:
            raise _Unsupported("bad substitution")
        self.pos = m.end()
        seq = m.group(1)
        idx = 0 if not seq else _base36(seq) + 1
        if idx >= len(self.subs):
            raise _Unsupported("substitution out of range")
        return self.subs[idx]

    def template_param(self) -> str:
        if not self.eat("T"):
            raise _Unsupported("not a template param")
        m = re.compile(r"([0-9]*)_").match(self.s, self.pos)
        if m is None:
            raise _Unsupported("bad template param")
        self.pos = m.end()
        idx = 0 if not m.group(1) else int(m.group(1)) + 1
        if idx >= len(self.tparams):
            raise _Unsupported("template param out of range")
        return self.tparams[idx]

    def template_args(self) -> str:
        self.eat("I")
        args = []
        while not self.eat("E"):
            if self.pos >= len(self.s):
                raise _Unsupported("unterminated template args")
            if self.peek() == "L":
                args.append(self.literal())
            elif self.peek() in ("X", "J"):
                raise _Unsupported("expression or pack")
            else:
                args.append(self.type())
        self.tparams = list(args)
        text = ", ".join(args)
        return f"<{text} >" if text.endswith(">") else f"<{text}>"

    def literal(self) -> str:
        self.eat("L")
        if self.peek() == "_":
            raise _Unsupported("external name literal")
        t = self.s[self.pos]
        self.pos += 1
        m = re.compile(r"(n?)([0-9]+)E").match(self.s, self.pos)
        if t not in "bijlmxyst" or m is None:
            raise _Unsupported("literal")
        self.pos = m.end()
        v = ("-" if m.group(1) else "") + m.group(2)
        if t == "b":
            return "true" if v == "1" else "false"
        suffix = {"j": "u", "l": "l", "m": "ul", "x": "ll", "y": "ull"}.get(t, "")
        if t in "st":
            return f"({ {'s': 'short', 't': 'unsigned short'}[t]}){v}"
        return v + suffix

    def type(self) -> str:
        self._enter()
        try:
            return self._type()
        finally:
            self.depth -= 1

    def _type(self) -> str:
        c = self.peek()
        if c in _BUILTIN:
            self.pos += 1
            return _BUILTIN[c]
        if self.peek(2) in _DBUILTIN:
            t = _DBUILTIN[self.peek(2)]
            self.pos += 2
            return t
        if c in ("P", "R", "O"):
            self.pos += 1
            inner = self.type()
            if inner.endswith(")") and "(" in inner:
                raise _Unsupported("pointer to function")
            t = inner + {"P": "*", "R": "&", "O": "&&"}[c]
            self.subs.append(t)
            return t
        if c in ("K", "V"):
            quals = []
            while self.peek() in ("K", "V", "r"):
                quals.append({"K": "const", "V": "volatile", "r": "restrict"}[self.s[self.pos]])
                self.pos += 1
            inner = self.type()
            t = inner + " " + " ".join(reversed(quals))
            self.subs.append(t)
            return t
        if c == "N":
            self.pos += 1
            name, _tmpl, cv, _ctor = self.nested()
            if cv:
                raise _Unsupported("cv in a type name")
            self.subs.append(name)
            return name
        if c == "S":
            if self.peek(2) == "St":
                self.pos += 2
                name = "std::" + self.unqualified()[0]
                self.subs.append(name)
                if self.peek() == "I":
                    name += self.template_args()
                    self.subs.append(name)
                return name
            t = self.substitution()
            if self.peek() == "I":
                t += self.template_args()
                self.subs.append(t)
            return t
        if c == "T":
            t = self.template_param()
            self.subs.append(t)
            if self.peek() == "I":
                raise _Unsupported("template template param")
            return t
        if c.isdigit():
            name = self.unqualified()[0]
            self.subs.append(name)
            if self.peek() == "I":
                name += self.template_args()
                self.subs.append(name)
            return name
        raise _Unsupported(f"type {c!r}")

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Unsupported("too deep")


def _base36(s: str) -> int:
    v = 0
    for ch in s:
        v = v * 36 + (int(ch) if ch.isdigit() else ord(ch) - 55)
    return v
