"""Declarators for the C++ demangler's printer: function, pointer, array and member types.

C++ declarators are inside out (`void (*f(int))(char)`), so, as binutils does, types that
wrap another (pointers, references, qualifiers, arrays, function types, the function's
own name) go on a stack of pending modifiers while the type they wrap prints; whoever
can place them (a function type's parameter list, an array's bounds, or the wrapper
itself when nothing took it) prints them. A mixin of demangle_cpp_print's printer.
"""
from __future__ import annotations

from hud.symbolize.demangle_cpp_nodes import CVQUALS, FNQUALS, Fail, kind

_PAREN_MODS = frozenset({"*", "&", "&&"})
_SPACE_MODS = frozenset({"K", "V", "r", "U", "Cx", "Im", "M"})
_MOD_TEXT = {"r": " restrict", "rt": " restrict", "V": " volatile", "Vt": " volatile",
             "K": " const", "Kt": " const", "tx": " transaction_safe", "*": "*",
             "Rt": " &", "&": "&", "Ot": " &&", "&&": "&&", "Cx": " _Complex",
             "Im": " _Imaginary"}
_NO_PACK = frozenset({"lam", "abi", "op", "fp", "ut", "da", "ctor", "dtor", "ext", "sb", "Dp"})
MAX_STEPS = 100_000


class DeclPrinter:
    __slots__ = ()

    def typed_name(self, dc) -> None:
        hold = self.mods
        # The name (with its method qualifiers) prints where the function type puts it.
        stack = []
        tn = dc[1]
        while True:
            stack.append(tn)
            if kind(tn) not in FNQUALS:
                break
            tn = tn[1]
        if kind(tn) == "z":
            tn = tn[2]
            if kind(tn) == "da":
                tn = tn[2]
            while kind(tn) in FNQUALS:
                stack.insert(len(stack) - 1, tn)
                tn = tn[1]
        if len(stack) > 4:
            raise Fail("too many qualifiers")
        cells = []
        top = None
        templates = self.templates
        for m in stack:
            top = [m, False, top, templates]
            cells.append(top)
        self.mods = top
        # A template's arguments are what T_ means in its signature.
        if kind(tn) == "t":
            self.templates = (tn, templates)
        self.p(dc[2])
        self.templates = templates
        for cell in reversed(cells):
            if not cell[1]:
                self.out.append(" ")
                self.mod(cell[0])
        self.mods = hold

    def function(self, dc) -> None:
        if dc[1] is not None:
            cell = [dc, False, self.mods, self.templates]
            self.mods = cell
            self.p(dc[1])
            self.mods = cell[2]
            if cell[1]:
                return
            self.out.append(" ")
        self.function_rest(dc, self.mods)

    def function_rest(self, dc, mods) -> None:
        need_paren = need_space = False
        m = mods
        while m is not None:
            if m[1]:
                break
            k = kind(m[0])
            if k in _PAREN_MODS:
                need_paren = True
                break
            if k in _SPACE_MODS:
                need_paren = need_space = True
                break
            m = m[2]
        out = self.out
        if need_paren:
            if not need_space:
                lc = self.last()
                if lc != "(" and lc != "*":
                    need_space = True
            if need_space and self.last() != " ":
                out.append(" ")
            out.append("(")
        hold = self.mods
        self.mods = None
        self.mod_list(mods, False)
        if need_paren:
            out.append(")")
        out.append("(")
        self.plist(dc[2])
        out.append(")")
        self.mod_list(mods, True)
        self.mods = hold

    def mod_list(self, mods, suffix: bool) -> None:
        while mods is not None:
            m = mods[0]
            k = kind(m)
            if mods[1] or (not suffix and k in FNQUALS):
                mods = mods[2]
                continue
            mods[1] = True
            hold_templates = self.templates
            self.templates = mods[3]
            if k == "F":
                self.function_rest(m, mods[2])
                self.templates = hold_templates
                return
            if k == "A":
                self.array_rest(m, mods[2])
                self.templates = hold_templates
                return
            if k == "z":
                hold = self.mods
                self.mods = None
                self.p(m[1])
                self.mods = hold
                self.out.append("::")
                ent = m[2]
                if kind(ent) == "da":
                    self.out.append(f"{{default arg#{ent[1] + 1}}}::")
                    ent = ent[2]
                while kind(ent) in FNQUALS:
                    ent = ent[1]
                self.p(ent)
                self.templates = hold_templates
                return
            self.mod(m)
            self.templates = hold_templates
            mods = mods[2]

    def mod(self, m) -> None:
        k = kind(m)
        text = _MOD_TEXT.get(k)
        if text is not None:
            self.out.append(text)
        elif k == "nx" or k == "tw":
            self.out.append(" noexcept" if k == "nx" else " throw")
            if len(m) > 2:
                self.out.append("(")
                if k == "nx":
                    self.p(m[2])
                else:
                    self.plist(m[2])
                self.out.append(")")
        elif k == "U":
            self.out.append(" ")
            self.p(m[2])
        elif k == "M":
            if self.last() != "(":
                self.out.append(" ")
            self.p(m[1])
            self.out.append("::*")
        elif k == "vec":
            self.out.append(" __vector(")
            self.p(m[1])
            self.out.append(")")
        else:
            self.p(m)

    def array(self, dc) -> None:
        hold = self.mods
        top = [dc, False, hold, self.templates]
        self.mods = top
        # Qualifiers of the array apply to its elements: copied below the array.
        copies = []
        m = hold
        while m is not None and kind(m[0]) in CVQUALS:
            if not m[1]:
                if len(copies) >= 3:
                    raise Fail("array qualifiers")
                self.mods = [m[0], False, self.mods, m[3]]
                copies.append(self.mods)
                m[1] = True
            m = m[2]
        self.p(dc[2])
        self.mods = hold
        if top[1]:
            return
        for c in reversed(copies):
            self.mod(c[0])
        self.array_rest(dc, self.mods)

    def array_rest(self, dc, mods) -> None:
        out = self.out
        need_space = True
        if mods is not None:
            need_paren = False
            m = mods
            while m is not None:
                if not m[1]:
                    if kind(m[0]) == "A":
                        need_space = False
                    else:
                        need_paren = need_space = True
                    break
                m = m[2]
            if need_paren:
                out.append(" (")
            self.mod_list(mods, False)
            if need_paren:
                out.append(")")
        if need_space:
            out.append(" ")
        out.append("[")
        if dc[1] is not None:
            self.p(dc[1])
        out.append("]")

    def modifier(self, dc, inner=None) -> None:
        cell = [dc, False, self.mods, self.templates]
        self.mods = cell
        self.p(dc[1] if inner is None else inner)
        if not cell[1]:
            self.mod(dc)
        self.mods = cell[2]

    def cv(self, dc) -> None:
        k = dc[0]
        m = self.mods
        while m is not None:
            if not m[1]:
                mk = kind(m[0])
                if mk not in CVQUALS:
                    break
                if mk == k:
                    self.p(dc[1])   # already pending: print it once
                    return
            m = m[2]
        self.modifier(dc)

    def reference(self, dc) -> None:
        sub = dc[1]
        inner = None
        hold = self.templates
        if not self.lambda_arg and kind(sub) == "p":
            # A reference to T_ reached again through a substitution means T_ of the
            # scope it first printed in (unless printed inside itself).
            scope = self.scopes.get(id(sub))
            if scope is None:
                self.scopes[id(sub)] = (hold, sub)
            else:
                stack = self.stack
                if not any(x is sub or x is dc for x in stack):
                    self.templates = scope[0]
            sub = self.targ(sub)
        ks = kind(sub)
        self.stack.append(dc)
        if ks == "&" or ks == dc[0]:
            dc = sub
        elif ks == "&&":
            inner = sub[1]
        self.modifier(dc, inner)
        self.stack.pop()
        self.templates = hold

    def ptrmem(self, dc) -> None:
        cell = [dc, False, self.mods, self.templates]
        self.mods = cell
        self.p(dc[2])
        if not cell[1]:
            self.mod(dc)
        self.mods = cell[2]

    def vector(self, dc) -> None:
        self.ptrmem(dc)

    def expansion(self, dc) -> None:
        a = self.find_pack(dc[1])
        if a is None:
            self.subexpr(dc[1])
            self.out.append("...")
            return
        n = len(a[1])
        for i in range(n):
            self.pack_index = i
            self.p(dc[1])
            if i < n - 1:
                self.out.append(", ")

    def find_pack(self, dc):
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Fail("too much")
        if type(dc) is list:
            for e in dc:
                r = self.find_pack(e)
                if r is not None:
                    return r
            return None
        if type(dc) is not tuple:
            return None
        k = dc[0]
        if k == "p":
            a = self.lookup(dc)
            return a if kind(a) == "J" else None
        if k in _NO_PACK:
            return None
        if k == "lit":
            return self.find_pack(dc[1])
        for ch in dc[1:]:
            if type(ch) is tuple or type(ch) is list:
                r = self.find_pack(ch)
                if r is not None:
                    return r
        return None

    def decltype(self, dc) -> None:
        self.out.append("decltype (")
        self.p(dc[1])
        self.out.append(")")
