"""Node shapes of the C++ demangler's tree, shared by its parser and printer.

A node is a plain str (a source name), a str subclass (a builtin type, a std
abbreviation or a vendor type, which print the same but differ in meaning), or a tuple
whose first item says what it is; lists hold sequences (template arguments, parameter
types). The tuples, by first item:

  q (scope, name)  z (function, entity)  da (n, entity)  t (name, args)  J (args)
  p (index, argument)  ctor/dtor (class name)  op (code, printed, arity)  cv (type)
  li (name)  ext (arity, name)  abi (name, tag)  lam (params, n)  ut (n)  sb (names)
  N (name, function type)  F (return or None, params)  A (dimension, element)
  M (class, member)  U (type, qualifier)  vec (dimension, element)  Dp (pattern)
  dt (expression)  K V r (type)  * & && Cx Im (type)
  Kt Vt rt Rt Ot tx (function)  nx (function[, expression])  tw (function[, types])
  sp (text, operand)  ctv (base, derived)  gr (name, number)  clone (encoding, suffix)
  lit (type, digits, negative)  fp (n)  un (operator, operand)  suf (operator, operand)
  bin (operator, left, right)  tri (operator, a, b, c)  el (expressions)  cast (type)
"""
from __future__ import annotations


class Fail(Exception):
    """The name is malformed or uses grammar we do not print exactly."""


class Builtin(str):
    __slots__ = ()


class Std(str):
    __slots__ = ()


class Vendor(str):
    __slots__ = ()


class Qual(str):
    """`a::b` of plain names, joined while parsing: prints as a q node would."""
    __slots__ = ()


# Qualifiers of a function type (of `this`, ref-qualifiers, exception specs): printed
# after the parameter list.
FNQUALS = frozenset({"Kt", "Vt", "rt", "Rt", "Ot", "tx", "nx", "tw"})
CVQUALS = frozenset({"K", "V", "r"})


def kind(node) -> object:
    """A tuple node's tag, None for the str nodes."""
    return node[0] if type(node) is tuple else None
