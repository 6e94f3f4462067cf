"""Fixed vocabularies of the Itanium C++ mangling: builtin types, operators, std abbreviations.

The spellings are binutils' (what `c++filt -i` prints), which sometimes differ from the
ABI document's (e.g. a trailing space after `sizeof `, kept for expression printing).
"""
from __future__ import annotations

# One-letter builtin types (<builtin-type>); not substitution candidates.
BUILTIN = {
    "v": "void", "w": "wchar_t", "b": "bool", "c": "char", "a": "signed char",
    "h": "unsigned char", "s": "short", "t": "unsigned short", "i": "int",
    "j": "unsigned int", "l": "long", "m": "unsigned long", "x": "long long",
    "y": "unsigned long long", "n": "__int128", "o": "unsigned __int128", "f": "float",
    "d": "double", "e": "long double", "g": "__float128", "z": "...",
}

# D<letter> builtins.
DBUILTIN = {
    "a": "auto", "c": "decltype(auto)", "f": "decimal32", "d": "decimal64",
    "e": "decimal128", "h": "half", "u": "char8_t", "s": "char16_t", "i": "char32_t",
    "n": "decltype(nullptr)",
}

# How an integer literal of a builtin type prints: the suffix after the digits, or None
# when the type is printed in parentheses before the value: (short)4.
INT_SUFFIX = {"int": "", "unsigned int": "u", "long": "l", "unsigned long": "ul",
              "long long": "ll", "unsigned long long": "ull"}
FLOAT_TYPES = frozenset({"float", "double", "long double", "__float128"})

# S<letter>: (as a type or name, as the class of a constructor or destructor, the name a
# constructor then takes). binutils spells the long form only before C/D (non-verbose).
STD_SUBS = {
    "t": ("std", "std", None),
    "a": ("std::allocator", "std::allocator", "allocator"),
    "b": ("std::basic_string", "std::basic_string", "basic_string"),
    "s": ("std::string",
          "std::basic_string<char, std::char_traits<char>, std::allocator<char> >",
          "basic_string"),
    "i": ("std::istream", "std::basic_istream<char, std::char_traits<char> >",
          "basic_istream"),
    "o": ("std::ostream", "std::basic_ostream<char, std::char_traits<char> >",
          "basic_ostream"),
    "d": ("std::iostream", "std::basic_iostream<char, std::char_traits<char> >",
          "basic_iostream"),
}

# <operator-name> code: (spelling, operand count). Spellings ending in a space lose it
# when printed as a name (`operator sizeof`) but keep it inside expressions.
OPERATORS = {
    "aN": ("&=", 2), "aS": ("=", 2), "aa": ("&&", 2), "ad": ("&", 1), "an": ("&", 2),
    "at": ("alignof ", 1), "aw": ("co_await ", 1), "az": ("alignof ", 1),
    "cc": ("const_cast", 2), "cl": ("()", 2), "cm": (",", 2), "co": ("~", 1),
    "dV": ("/=", 2), "dX": ("[...]=", 3), "da": ("delete[] ", 1),
    "dc": ("dynamic_cast", 2), "de": ("*", 1), "di": ("=", 2), "dl": ("delete ", 1),
    "ds": (".*", 2), "dt": (".", 2), "dv": ("/", 2), "dx": ("]=", 2), "eO": ("^=", 2),
    "eo": ("^", 2), "eq": ("==", 2), "fL": ("...", 3), "fR": ("...", 3),
    "fl": ("...", 2), "fr": ("...", 2), "ge": (">=", 2), "gs": ("::", 1),
    "gt": (">", 2), "ix": ("[]", 2), "lS": ("<<=", 2), "le": ("<=", 2),
    "li": ('operator"" ', 1), "ls": ("<<", 2), "lt": ("<", 2), "mI": ("-=", 2),
    "mL": ("*=", 2), "mi": ("-", 2), "ml": ("*", 2), "mm": ("--", 1), "na": ("new[]", 3),
    "ne": ("!=", 2), "ng": ("-", 1), "nt": ("!", 1), "nw": ("new", 3),
"oR": ("|=", 2), "oo": ("||", 2), "or": ("|", 2),
    "pL": ("+=", 2), "pl": ("+", 2), "pm": ("->*", 2), "pp": ("++", 1), "ps": ("+", 1),
    "pt": ("->", 2), "qu": ("?", 3), "rM": ("%=", 2), "rS": (">>=", 2),
    "rc": ("reinterpret_cast", 2), "rm": ("%", 2), "rs": (">>", 2),
    "sP": ("sizeof...", 1), "sZ": ("sizeof...", 1), "sc": ("static_cast", 2),
    "ss": ("<=>", 2), "st": ("sizeof ", 1), "sz": ("sizeof ", 1), "tr": ("throw", 0),
    "tw": ("throw ", 1),
}
NEW_CASTS = frozenset({"dc", "sc", "cc", "rc"})

# Special names T<x> / G<x> whose operand is a type or a name, and what prefixes it.
SPECIAL_TYPE = {"TV": "vtable for ", "TT": "VTT for ", "TI": "typeinfo for ",
                "TS": "typeinfo name for ", "TF": "typeinfo fn for ",
                "TJ": "java Class for "}
SPECIAL_NAME = {"TH": "TLS init function for ", "TW": "TLS wrapper function for ",
                "GV": "guard variable for "}
