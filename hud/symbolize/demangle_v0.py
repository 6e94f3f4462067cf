"""Rust v0 symbol demangling (RFC 2603), printed the way binutils' `addr2line -C` does.

Crate disambiguators and other hashes are left out (binutils' non-verbose form). Parsing
is a recursive descent over the mangled text with backreferences; recursion depth and
output size are capped so hostile symbols cannot blow up. Anything unexpected raises
_Invalid and the caller keeps the raw name.
"""
from __future__ import annotations

import re
from typing import Optional

_MAX_DEPTH = 200
_MAX_OUT = 1 << 16

_BASIC = {
    "a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8",
    "i": "isize", "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128",
    "s": "i16", "t": "u16", "u": "()", "v": "...", "x": "i64", "y": "u64", "z": "!",
    "p": "_",
}
_BASE62 = re.compile(r"([0-9a-zA-Z]*)_")
_B62 = {c: i for i, c in enumerate("0123456789abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
_DECIMAL = re.compile(r"[0-9]+")
# "s<base62>_" disambiguator, "u" punycode flag, decimal length, optional "_" separator.
_DIS_IDENT = re.compile(r"(?:s([0-9a-zA-Z]{0,11})_)?(u?)(0|[1-9][0-9]{0,8})_?")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LETTERS = _UPPER | frozenset("abcdefghijklmnopqrstuvwxyz")
_UNSIGNED = "htmyoj"
_SIGNED = "aslxni"


class _Invalid(Exception):
    pass


def demangle_v0(sym: str) -> Optional[str]:
    """Demangle a `_R...` symbol; None if it is not valid v0."""
    if not sym.startswith("_R"):
        return None
    body = sym[2:]
    # Vendor suffixes (".llvm.1234", ".cold") follow the path: keep them out of parsing.
    dot = body.find(".")
    suffix = ""
    if dot >= 0:
        body, suffix = body[:dot], body[dot:]
    if not body or not (body[0].isupper() or body[0].isdigit()):
        return None
    if not body.isascii():
        return None
    p = _Printer(body)
    try:
        if p.peek().isdigit():   # an encoding version: only 0 (implicit) exists
            return None
        p.path(True)
        # An instantiating crate may follow; it is not printed.
        out = "".join(p.out)
        if len(out) > _MAX_OUT:
            return None
    except (_Invalid, IndexError, RecursionError):
        return None
    # binutils prints no suffix at all (".llvm.N", ".0", ...): neither do we.
    del suffix
    return out


class _Printer:
    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 0
        self.out: list[str] = []
        self.size = 0
        self.depth = 0
        self.bound_lifetimes = 0
        self.memo: dict = {}

    # -- scanning ------------------------------------------------------------

    def peek(self) -> str:
        return self.s[self.pos] if self.pos < len(self.s) else ""

    def eat(self, c: str) -> bool:
        if self.pos < len(self.s) and self.s[self.pos] == c:
            self.pos += 1
            return True
        return False

    def next(self) -> str:
        if self.pos >= len(self.s):
            raise _Invalid
        c = self.s[self.pos]
        self.pos += 1
        return c

    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > _MAX_OUT:
            raise _Invalid
        self.out.append(text)

    def base62(self) -> int:
        """<base-62-number> = {<0-9a-zA-Z>} "_": "_" is 0, otherwise value + 1."""
        m = _BASE62.match(self.s, self.pos)
        if m is None:
            raise _Invalid
        self.pos = m.end()
        digits = m.group(1)
        if not digits:
            return 0
        if len(digits) > 11:
            raise _Invalid
        x = 0
        for c in digits:
            x = x * 62 + _B62[c]
        return x + 1

    def opt_integer62(self, tag: str) -> int:
        return self.base62() + 1 if self.eat(tag) else 0

    def disambiguator(self) -> int:
        return self.opt_integer62("s")

    def decimal(self) -> int:
        m = _DECIMAL.match(self.s, self.pos)
        if m is None:
            raise _Invalid
        digits = m.group()
        if digits[0] == "0":
            self.pos += 1
            return 0
        if len(digits) > 9:
            raise _Invalid
        self.pos = m.end()
        return int(digits)

    def ident(self) -> tuple[str, bool]:
        """(text, was_punycode) of an <undisambiguated-identifier>."""
        puny = self.eat("u")
        n = self.decimal()
        self.eat("_")
        start = self.pos
        self.pos += n
        if self.pos > len(self.s):
            raise _Invalid
        raw = self.s[start:self.pos]
        if puny:
            return _punycode(raw), True
        return raw, False

    def backref(self) -> int:
        start = self.pos - 1
        i = self.base62()
        if i >= start:
            raise _Invalid
        return i

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Invalid

    def _at_backref(self, target: int, fn, *args) -> None:
        # Generic-heavy symbols refer back to the same long paths many times: print each
        # (target, context) once and reuse the text instead of re-parsing it.
        key = (fn.__name__, target, args, self.bound_lifetimes)
        text = self.memo.get(key)
        if text is None:
            saved_out, saved_size, saved_pos = self.out, self.size, self.pos
            self.out = []
            self.pos = target
            fn(*args)
            text = "".join(self.out)
            self.out, self.size, self.pos = saved_out, saved_size, saved_pos
            self.memo[key] = text
        self.emit(text)

    # -- grammar -------------------------------------------------------------

    def dis_ident(self) -> tuple[object, str]:
        """[<disambiguator>] <undisambiguated-identifier>, in one regex step when plain.

        The disambiguator comes back raw (its base-62 digits, or None when absent): it
        is printed only for closures and shims, and computing it for every crate root
        (an 11-digit hash each) was a fifth of the demangling time. See _dis_value."""
        s = self.s
        m = _DIS_IDENT.match(s, self.pos)
        if m is None:
            return self.disambiguator(), self.ident()[0]
        dis, puny, digits = m.groups()
        if puny:                         # punycode: the general path
            return self.disambiguator(), self.ident()[0]
        start = m.end()
        end = start + int(digits)
        if end > len(s):
            raise _Invalid
        self.pos = end
        return dis, s[start:end]

    def path(self, in_value: bool) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Invalid
        s = self.s
        pos = self.pos
        tag = s[pos]   # past the end: IndexError, which makes the symbol invalid too
        self.pos = pos + 1
        # Tags by frequency in real symbols; plain text goes to the output directly (the
        # output-size cap is checked where text can multiply: backrefs, binders).
        if tag == "N":
            ns = s[pos + 1]
            if ns not in _LETTERS:
                raise _Invalid
            self.pos = pos + 2
            self.path(in_value)
            dis, name = self.dis_ident()
            if ns in _UPPER:
                label = "closure" if ns == "C" else "shim" if ns == "S" else ns
                self.out.append(f"::{{{label}:{name}#{_dis_value(dis)}}}" if name
                                else f"::{{{label}#{_dis_value(dis)}}}")
            elif name:
                self.out.append("::" + name)
        elif tag == "C":
            self.out.append(self.dis_ident()[1])
        elif tag == "I":
            self.path(in_value)
            self.out.append("::<" if in_value else "<")
            self._list(self.generic_arg)
            self.out.append(">")
        elif tag == "M":
            self.disambiguator()
            self._skip_path()
            self.out.append("<")
            self.type()
            self.out.append(">")
        elif tag == "X":
            self.disambiguator()
            self._skip_path()
            self.out.append("<")
            self.type()
            self.out.append(" as ")
            self.path(False)
            self.out.append(">")
        elif tag == "B":
            self._at_backref(self.backref(), self.path, in_value)
        elif tag == "Y":
            self.out.append("<")
            self.type()
            self.out.append(" as ")
            self.path(False)
            self.out.append(">")
        else:
            raise _Invalid
        self.depth -= 1

    def _skip_path(self) -> None:
        # Impl paths are not printed; parse them into a throwaway buffer.
        saved_out, saved_size = self.out, self.size
        self.out = []
        self.path(False)
        self.out, self.size = saved_out, saved_size

    def _list(self, item) -> None:
        first = True
        while not self.eat("E"):
            if not first:
                self.emit(", ")
            item()
            first = False
            if self.pos >= len(self.s):
                raise _Invalid

    def generic_arg(self) -> None:
        if self.eat("L"):
            self.lifetime(self.base62())
        elif self.eat("K"):
            self.const()
        else:
            self.type()

    def lifetime(self, i: int) -> None:
        if i == 0:
            self.emit("'_")
            return
        depth = self.bound_lifetimes - i
        if depth < 0:
            raise _Invalid
        self.emit("'" + (chr(97 + depth) if depth < 26 else f"_{depth}"))

    def binder(self) -> int:
        n = self.opt_integer62("G")
        if n:
            self.emit("for<")
            for i in range(n):
                if i:
                    self.emit(", ")
                self.bound_lifetimes += 1
                self.lifetime(1)
            self.emit("> ")
        return n

    def type(self) -> None:
        self._enter()
        c = self.next()
        basic = _BASIC.get(c)
        if basic is not None:
            self.emit(basic)
        elif c in "RQ":
            self.emit("&")
            if self.eat("L"):
                lt = self.base62()
                if lt:
                    self.lifetime(lt)
                    self.emit(" ")
            if c == "Q":
                self.emit("mut ")
            self.type()
        elif c in "PO":
            self.emit("*const " if c == "P" else "*mut ")
            self.type()
        elif c == "A":
            self.emit("[")
            self.type()
            self.emit("; ")
            self.const()
            self.emit("]")
        elif c == "S":
            self.emit("[")
            self.type()
            self.emit("]")
        elif c == "T":
            self.emit("(")
            n = 0
            while not self.eat("E"):
                if n:
                    self.emit(", ")
                self.type()
                n += 1
                if self.pos >= len(self.s):
                    raise _Invalid
            if n == 1:
                self.emit(",")
            self.emit(")")
        elif c == "F":
            saved = self.bound_lifetimes
            self.binder()
            if self.eat("U"):
                self.emit("unsafe ")
            if self.eat("K"):
                if self.eat("C"):
                    abi = "C"
                else:
                    abi, _ = self.ident()
                    abi = abi.replace("_", "-")
                self.emit(f'extern "{abi}" ')
            self.emit("fn(")
            self._list(self.type)
            self.emit(")")
            if self.eat("u"):
                pass   # -> () is not printed
            else:
                self.emit(" -> ")
                self.type()
            self.bound_lifetimes = saved
        elif c == "D":
            self.emit("dyn ")
            saved = self.bound_lifetimes
            self.binder()
            first = True
            while not self.eat("E"):
                if not first:
                    self.emit(" + ")
                self.dyn_trait()
                first = False
                if self.pos >= len(self.s):
                    raise _Invalid
            self.bound_lifetimes = saved
            if not self.eat("L"):
                raise _Invalid
            lt = self.base62()
            if lt:
                self.emit(" + ")
                self.lifetime(lt)
        elif c == "B":
            self._at_backref(self.backref(), self.type)
        else:
            self.pos -= 1
            self.path(False)
        self.depth -= 1

    def dyn_trait(self) -> None:
        # <path> {"p" <ident> <type>}: associated type bindings go inside the generics.
        start = len(self.out)
        open_generics = self._path_maybe_open_generics()
        first = True
        while self.eat("p"):
            if first:
                self.emit(", " if open_generics else "<")
                first = False
            else:
                self.emit(", ")
            name, _ = self.ident()
            self.emit(name + " = ")
            self.type()
            open_generics = True
        if open_generics:
            self.emit(">")
        del start

    def _path_maybe_open_generics(self) -> bool:
        """Print a dyn-trait path; for a generic one leave its "<..." open. True if open."""
        if self.eat("B"):
            target = self.backref()
            saved = self.pos
            self.pos = target
            result = self._path_maybe_open_generics()
            self.pos = saved
            return result
        if self.eat("I"):
            self.path(False)
            self.emit("<")
            self._list(self.generic_arg)
            return True
        self.path(False)
        return False

    def const(self) -> None:
        self._enter()
        if self.eat("B"):
            self._at_backref(self.backref(), self.const)
            self.depth -= 1
            return
        c = self.next()
        if c == "p":
            self.emit("_")
        elif c in _UNSIGNED:
            self.emit(str(self._const_int()))
        elif c in _SIGNED:
            neg = self.eat("n")
            v = self._const_int()
            self.emit(("-" if neg else "") + str(v))
        elif c == "b":
            v = self._const_int()
            if v not in (0, 1):
                raise _Invalid
            self.emit("true" if v else "false")
        elif c == "c":
            v = self._const_int()
            if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                raise _Invalid
            self.emit(repr(chr(v)))
        else:
            raise _Invalid   # structured constants: rare in symbols, keep the raw name
        self.depth -= 1

    def _const_int(self) -> int:
        start = self.pos
        while self.peek() != "_":
            c = self.next()
            if c not in "0123456789abcdef":
                raise _Invalid
            if self.pos - start > 32:
                raise _Invalid
        digits = self.s[start:self.pos]
        self.pos += 1
        return int(digits, 16) if digits else 0


def _dis_value(dis: object) -> int:
    """A disambiguator's value from dis_ident: None when absent (0), else its base-62
    digits ("" is 1, otherwise the number + 2), or already a number."""
    if dis is None:
        return 0
    if isinstance(dis, int):
        return dis
    x = 0
    for c in dis:
        x = x * 62 + _B62[c]
    return x + 2 if dis else 1


def _punycode(raw: str) -> str:
    """Decode Rust's punycode (RFC 3492 with "_" as the delimiter)."""
    base, tmin, tmax, skew, damp = 36, 1, 26, 38, 700
    delim = raw.rfind("_")
    output = list(raw[:delim]) if delim >= 0 else []
    rest = raw[delim + 1:] if delim >= 0 else raw
    if len(rest) > 256:
        raise _Invalid
    n, i, bias = 0x80, 0, 72
    pos = 0
    first = True
    while pos < len(rest):
        old_i, w, k = i, 1, base
        while True:
            if pos >= len(rest):
                raise _Invalid
            c = rest[pos]
            pos += 1
            if "a" <= c <= "z":
                digit = ord(c) - 97
            elif "0" <= c <= "9":
                digit = ord(c) - 48 + 26
            else:
                raise _Invalid
            i += digit * w
            t = tmin if k <= bias else tmax if k >= bias + tmax else k - bias
            if digit < t:
                break
            w *= base - t
            k += base
            if i > 1 << 32:
                raise _Invalid
        length = len(output) + 1
        bias = _adapt(i - old_i, length, first, base, tmin, tmax, skew, damp)
        first = False
        n += i // length
        i %= length
        if n > 0x10FFFF:
            raise _Invalid
        output.insert(i, chr(n))
        i += 1
    return "".join(output)


def _adapt(delta: int, points: int, first: bool, base: int, tmin: int, tmax: int,
           skew: int, damp: int) -> int:
    delta = delta // damp if first else delta // 2
    delta += delta // points
    k = 0
    while delta > ((base - tmin) * tmax) // 2:
        delta //= base - tmin
        k += base
    return k + ((base - tmin + 1) * delta) // (delta + skew)
