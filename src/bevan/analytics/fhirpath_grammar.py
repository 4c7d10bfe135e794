"""FHIRPath text parsed into a small syntax tree, for the compiler of views.

The grammar is FHIRPath's (N1, with the precedence table of its section 6): literals,
`%constants`, `$this`, member access, function calls, indexers and every operator.
Which functions a view may call is decided by the compiler, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal


class FhirPathSyntaxError(ValueError):
    """The text is not a FHIRPath expression."""


@dataclass(frozen=True)
class Literal:
    value: object  # str, bool, int, Decimal
    type: str  # FHIRPath type: String, Boolean, Integer, Decimal, Date, DateTime, Time


@dataclass(frozen=True)
class EmptyLiteral:
    pass


@dataclass(frozen=True)
class External:
    name: str  # %name, without the %


@dataclass(frozen=True)
class This:
    pass


@dataclass(frozen=True)
class Member:
    source: Node | None  # None: the input of the expression
    name: str


@dataclass(frozen=True)
class Call:
    source: Node | None
    name: str
    arguments: tuple[Node, ...]


@dataclass(frozen=True)
class Index:
    source: Node
    index: Node


@dataclass(frozen=True)
class Unary:
    operator: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    operator: str
    left: Node
    right: Node


@dataclass(frozen=True)
class TypeOperation:
    operator: str  # is, as
    operand: Node
    type_name: str


Node = (
    Literal
    | EmptyLiteral
    | External
    | This
    | Member
    | Call
    | Index
    | Unary
    | Binary
    | TypeOperation
)

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
    |(?P<datetime>@\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?(?:Z|[+-]\d{2}:\d{2})?)?)
    |(?P<time>@T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)
    |(?P<number>\d+(?:\.\d+)?)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<quoted>`(?:[^`\\]|\\.)*`)
    |(?P<external>%(?:[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))
    |(?P<special>\$(?:this|index|total))
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<operator><=|>=|!=|!~|[-+*/&|<>=~.,()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "r": "\r", "n": "\n", "t": "\t", "f": "\f", "\\": "\\"}

# Binary operators by precedence, loosest first (FHIRPath section 6, "Operator precedence").
_LEVELS: tuple[tuple[str, ...], ...] = (
    ("implies",),
    ("or", "xor"),
    ("and",),
    ("in", "contains"),
    ("=", "~", "!=", "!~"),
    ("<", ">", "<=", ">="),
    ("|",),
    ("is", "as"),
    ("+", "-", "&"),
    ("*", "/", "div", "mod"),
)
_WORD_OPERATORS = {"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"}


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and i + 5 < len(text):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise FhirPathSyntaxError(
                f"unexpected {text[position : position + 10]!r} at {position}"
            )
        position = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            found.append((kind, match.group()))
    return found


def parse(text: str) -> Node:
    """Return the syntax tree of a FHIRPath expression, or raise FhirPathSyntaxError."""
    if not isinstance(text, str) or not text.strip():
        raise FhirPathSyntaxError("an expression must be a non-empty string")
    parser = _Parser(_tokens(text))
    node = parser.expression(0)
    if parser.position != len(parser.tokens):
        raise FhirPathSyntaxError(f"unexpected {parser.tokens[parser.position][1]!r}")
    return node


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FhirPathSyntaxError("the expression ends too soon")
        if expected is not None and token[1] != expected:
            raise FhirPathSyntaxError(f"expected {expected!r}, found {token[1]!r}")
        self.position += 1
        return token

    def operator_at(self, level: int) -> str | None:
        token = self.peek()
        if token is None:
            return None
        kind, text = token
        is_operator = kind == "operator" or (kind == "name" and text in _WORD_OPERATORS)
        return text if is_operator and text in _LEVELS[level] else None

    def expression(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self.unary()
        left = self.expression(level + 1)
        while (operator := self.operator_at(level)) is not None:
            self.take()
            if operator in ("is", "as"):
                left = TypeOperation(operator, left, self.type_specifier())
            else:
                left = Binary(operator, left, self.expression(level + 1))
        return left

    def type_specifier(self) -> str:
        kind, text = self.take()
        if kind not in ("name", "quoted"):
            raise FhirPathSyntaxError(f"expected a type name, found {text!r}")
        name = text if kind == "name" else _unescape(text[1:-1])
        while self.peek() == ("operator", "."):
            self.take()
            name = name + "." + self.take()[1]
        return name

    def unary(self) -> Node:
        token = self.peek()
        if token is not None and token[0] == "operator" and token[1] in ("+", "-"):
            self.take()
            operand = self.unary()
            return operand if token[1] == "+" else Unary("-", operand)
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while (token := self.peek()) is not None:
            if token == ("operator", "."):
                self.take()
                node = self.invocation(node)
            elif token == ("operator", "["):
                self.take()
                index = self.expression(0)
                self.take("]")
                node = Index(node, index)
            else:
                break
        return node

    def invocation(self, source: Node | None) -> Node:
        kind, text = self.take()
        if kind == "name":
            name = text
        elif kind == "quoted":
            name = _unescape(text[1:-1])
        elif kind == "special" and text == "$this" and source is None:
            return This()
        else:
            raise FhirPathSyntaxError(f"expected a name, found {text!r}")
        if self.peek() == ("operator", "(") and kind == "name":
            self.take()
            arguments: list[Node] = []
            if self.peek() != ("operator", ")"):
                arguments.append(self.expression(0))
                while self.peek() == ("operator", ","):
                    self.take()
                    arguments.append(self.expression(0))
            self.take(")")
            return Call(source, name, tuple(arguments))
        return Member(source, name)

    def term(self) -> Node:
        token = self.peek()
        if token is None:
            raise FhirPathSyntaxError("the expression ends too soon")
        kind, text = token
        if kind == "operator" and text == "(":
            self.take()
            inner = self.expression(0)
            self.take(")")
            return inner
        if kind == "operator" and text == "{":
            self.take()
            self.take("}")
            return EmptyLiteral()
        if kind == "string":
            self.take()
            return Literal(_unescape(text[1:-1]), "String")
        if kind == "number":
            self.take()
            if "." in text:
                return Literal(Decimal(text), "Decimal")
            return Literal(int(text), "Integer")
        if kind == "datetime":
            self.take()
            value = text[1:]
            return Literal(value, "DateTime" if "T" in value else "Date")
        if kind == "time":
            self.take()
            return Literal(text[2:], "Time")
        if kind == "external":
            self.take()
            name = text[1:]
            if name[:1] in "`'":
                name = _unescape(name[1:-1])
            return External(name)
        if kind == "special":
            self.take()
            if text == "$this":
                return This()
            raise FhirPathSyntaxError(f"{text} is not supported in views")
        if kind == "name" and text in ("true", "false"):
            self.take()
            return Literal(text == "true", "Boolean")
        if kind in ("name", "quoted"):
            return self.invocation(None)
        raise FhirPathSyntaxError(f"unexpected {text!r}")
