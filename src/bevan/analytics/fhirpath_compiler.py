"""FHIRPath compiled, once per view, into Python closures typed against the R4 schema.

Each expression becomes a function from an input collection (a list of JSON values) to an
output collection. Types are followed statically from the view's resource type, so a
choice element under `ofType()` (`value.ofType(Quantity)`) compiles to its one JSON key
(`valueQuantity`) and a run of member accesses compiles to one loop over its keys, with a
fast path for the common case of one item at each step: these are what make a view's
columns cheap (benchmarks/views.py). Where the type cannot be known (an unknown element,
a function of mixed results), members are found by name at run time, choice keys
included, so the answer is the same, only slower.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bevan.analytics.boundaries import boundary
from bevan.analytics.fhirpath_grammar import (
    Binary,
    Call,
    EmptyLiteral,
    External,
    FhirPathSyntaxError,
    Index,
    Literal,
    Member,
    Node,
    This,
    TypeOperation,
    Unary,
    parse,
)
from bevan.fhir.schema import element_types


class FhirPathCompileError(ValueError):
    """The expression is valid FHIRPath but cannot be used here (unknown function, ...)."""


class FhirPathRunError(ValueError):
    """Evaluation failed on some data (a collection where one value was required, ...)."""


class Context:
    """What an expression may refer to besides its input: the resource, %rowIndex."""

    __slots__ = ("resource", "row_index")

    def __init__(self, resource: Any = None, row_index: int = 0) -> None:
        self.resource = resource
        self.row_index = row_index


Evaluate = Callable[[list[Any], Context], list[Any]]

PRIMITIVES = frozenset(
    [
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
        "integer64",
    ]
)
_STRING_TYPES = frozenset(
    [
        "string",
        "code",
        "id",
        "uri",
        "url",
        "canonical",
        "oid",
        "uuid",
        "markdown",
        "base64Binary",
        "xhtml",
    ]
)
_INTEGER_TYPES = frozenset(("integer", "positiveInt", "unsignedInt", "integer64"))
_SYSTEM_TYPES = {
    "String": "string",
    "Boolean": "boolean",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
    "Quantity": "Quantity",
}
_TIME_TEXT = re.compile(r"^\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?$")
_DATE_TEXT = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_DATETIME_TEXT = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?T")


@dataclass
class Compiled:
    """A compiled expression: its function and what is known of its results."""

    run: Evaluate
    type: str | None = None  # the FHIR type of every item, when known
    chain: tuple[str, ...] | None = None  # a pure member path from the input
    choice: dict[str, str] = field(default_factory=dict)  # type -> JSON key (choice member)
    choice_source: Compiled | None = None
    choice_name: str = ""
    constant: list[Any] | None = None  # the value, when it never depends on the input
    # The expression as simple steps from one input item (member keys, first(), resource
    # and reference keys), when it is no more than that: see scalar_lines.
    steps: tuple[tuple[str, str | None], ...] | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.chain is not None:
            self.steps = tuple(("key", key) for key in self.chain)


def normalise_type(name: str) -> str:
    """Return a FHIR type name from a type specifier (FHIR.x, System.X, x)."""
    namespace, _, local = name.rpartition(".")
    if namespace == "System" or (not namespace and local in _SYSTEM_TYPES):
        return _SYSTEM_TYPES.get(local, local)
    return local


def _member_step(items: list[Any], key: str) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if type(item) is dict:
            value = item.get(key)
            if value is not None:
                if type(value) is list:
                    out.extend(value)
                else:
                    out.append(value)
    return out


def _chain(keys: tuple[str, ...]) -> Evaluate:
    if len(keys) == 1:
        (key,) = keys

        def one(focus: list[Any], context: Context) -> list[Any]:
            if len(focus) == 1:
                item = focus[0]
                if type(item) is not dict:
                    return []
                value = item.get(key)
                if value is None:
                    return []
                return value if type(value) is list else [value]
            return _member_step(focus, key)

        return one

    def many(focus: list[Any], context: Context) -> list[Any]:
        items = focus
        for key in keys:
            if len(items) == 1:
                item = items[0]
                if type(item) is not dict:
                    return []
                value = item.get(key)
                if value is None:
                    return []
                items = value if type(value) is list else [value]
            else:
                items = _member_step(items, key)
                if not items:
                    return items
        return items

    return many


def _dynamic_member(name: str) -> Callable[[list[Any]], list[Any]]:
    """Return a step that finds name, or a choice key name[X], in items of unknown type."""
    length = len(name)

    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if type(item) is not dict:
                continue
            value = item.get(name)
            if value is None:
                for key, candidate in item.items():
                    if len(key) > length and key.startswith(name) and key[length].isupper():
                        value = candidate
                        break
            if value is not None:
                if type(value) is list:
                    out.extend(value)
                else:
                    out.append(value)
        return out

    return step


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _matches_type(value: Any, fhir_type: str) -> bool:
    """Say whether a value of unknown static type is of fhir_type, judged from its form."""
    kind = type(value)
    if fhir_type == "boolean":
        return kind is bool
    if fhir_type in _INTEGER_TYPES:
        return kind is int
    if fhir_type == "decimal":
        return kind is float or kind is int
    if fhir_type in _STRING_TYPES:
        return kind is str
    if fhir_type == "time":
        return kind is str and bool(_TIME_TEXT.match(value))
    if fhir_type == "date":
        return kind is str and bool(_DATE_TEXT.match(value))
    if fhir_type in ("dateTime", "instant"):
        return kind is str and bool(_DATETIME_TEXT.match(value) or _DATE_TEXT.match(value))
    if kind is dict:
        resource_type = value.get("resourceType")
        return resource_type == fhir_type if resource_type else fhir_type[:1].isupper()
    return False


def _type_conforms(static: str, wanted: str) -> bool:
    if static == wanted:
        return True
    return wanted == "string" and static in _STRING_TYPES


def _singleton_boolean(values: list[Any], what: str) -> bool | None:
    if not values:
        return None
    if len(values) > 1:
        raise FhirPathRunError(f"{what} needs one value, found {len(values)}")
    value = values[0]
    if type(value) is bool:
        return value
    return True  # a single non-boolean value counts as true (FHIRPath 4.5)


def _equal(left: Any, right: Any) -> bool:
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type(left) is not type(right):
        return False
    return bool(left == right)


def _equivalent(left: Any, right: Any) -> bool:
    if type(left) is str and type(right) is str:
        return " ".join(left.lower().split()) == " ".join(right.lower().split())
    return _equal(left, right)


class ExpressionCompiler:
    """Compile FHIRPath for one view: its resource type and its constants."""

    def __init__(self, constants: dict[str, tuple[Any, str]]) -> None:
        self.constants = constants

    def compile(self, text: Any, input_type: str | None) -> Compiled:
        """Return the compiled expression, or raise FhirPathSyntaxError/FhirPathCompileError."""
        if not isinstance(text, str):
            raise FhirPathSyntaxError("an expression must be a string")
        return self.node(parse(text), input_type)

    # -- terms ---------------------------------------------------------------------------

    def node(self, node: Node, input_type: str | None) -> Compiled:
        if isinstance(node, Literal):
            value = float(node.value) if isinstance(node.value, Decimal) else node.value
            return self.constant_value([value], normalise_type(node.type))
        if isinstance(node, EmptyLiteral):
            return self.constant_value([], None)
        if isinstance(node, External):
            return self.external(node.name)
        if isinstance(node, This):
            return Compiled(lambda focus, context: focus, input_type, chain=())
        if isinstance(node, Member):
            return self.member(node, input_type)
        if isinstance(node, Call):
            return self.call(node, input_type)
        if isinstance(node, Index):
            return self.index(node, input_type)
        if isinstance(node, Unary):
            return self.negate(self.node(node.operand, input_type))
        if isinstance(node, TypeOperation):
            return self.type_operation(
                node.operator, self.node(node.operand, input_type), node.type_name
            )
        return self.binary(node, input_type)

    def constant_value(self, value: list[Any], fhir_type: str | None) -> Compiled:
        return Compiled(lambda focus, context: value, fhir_type, constant=value)

    def external(self, name: str) -> Compiled:
        if name in self.constants:
            value, fhir_type = self.constants[name]
            return self.constant_value([value], fhir_type)
        if name == "rowIndex":
            return Compiled(lambda focus, context: [context.row_index], "integer")
        if name in ("resource", "rootResource", "context"):
            return Compiled(lambda focus, context: [context.resource], None)
        known = {"ucum": "http://unitsofmeasure.org", "sct": "http://snomed.info/sct"}
        known["loinc"] = "http://loinc.org"
        if name in known:
            return self.constant_value([known[name]], "uri")
        raise FhirPathCompileError(f"%{name} is not a constant of this view")

    def source(self, node: Node | None, input_type: str | None) -> Compiled:
        if node is None:
            return Compiled(lambda focus, context: focus, input_type, chain=())
        return self.node(node, input_type)

    def member(self, node: Member, input_type: str | None) -> Compiled:
        name = node.name
        if node.source is None and name[:1].isupper():
            # A leading type name (Patient.name) keeps the resources of that type.
            def of_type(focus: list[Any], context: Context) -> list[Any]:
                return [i for i in focus if type(i) is dict and i.get("resourceType") == name]

            return Compiled(of_type, name)
        source = self.source(node.source, input_type)
        properties = element_types(source.type) if source.type else {}
        if name in properties:
            return self.then_keys(source, (name,), properties[name])
        choice = {
            _choice_type(key[len(name) :]): key
            for key in properties
            if len(key) > len(name) and key.startswith(name) and key[len(name)].isupper()
        }
        if choice:
            keys = tuple(choice.values())
            step = _keys_step(keys)
            run = source.run
            compiled = Compiled(lambda focus, context: step(run(focus, context)), None)
            compiled.choice, compiled.choice_source, compiled.choice_name = choice, source, name
            return compiled
        dynamic = _dynamic_member(name)
        run = source.run
        compiled = Compiled(lambda focus, context: dynamic(run(focus, context)), None)
        compiled.choice_source, compiled.choice_name = source, name
        return compiled

    def then_keys(self, source: Compiled, keys: tuple[str, ...], fhir_type: str | None) -> Compiled:
        if source.chain is not None:
            chain = source.chain + keys
            return Compiled(_chain(chain), fhir_type, chain=chain)
        run, step = source.run, _chain(keys)
        steps = None if source.steps is None else source.steps + tuple(("key", k) for k in keys)
        return Compiled(
            lambda focus, context: step(run(focus, context), context), fhir_type, steps=steps
        )

    def index(self, node: Index, input_type: str | None) -> Compiled:
        source = self.node(node.source, input_type)
        position = self.node(node.index, input_type)
        run, where = source.run, position.run

        def indexed(focus: list[Any], context: Context) -> list[Any]:
            items = run(focus, context)
            at = where(focus, context)
            if not at:
                return []
            number = at[0]
            if type(number) is not int:
                raise FhirPathRunError("an index must be an integer")
            return [items[number]] if 0 <= number < len(items) else []

        return Compiled(indexed, source.type)

    def negate(self, operand: Compiled) -> Compiled:
        run = operand.run

        def negated(focus: list[Any], context: Context) -> list[Any]:
            values = run(focus, context)
            if not values:
                return []
            if len(values) > 1 or not _is_number(values[0]):
                raise FhirPathRunError("unary minus needs one number")
            return [-values[0]]

        return Compiled(negated, operand.type)

    # -- types ---------------------------------------------------------------------------

    def of_type(self, source: Compiled, type_name: str) -> Compiled:
        wanted = normalise_type(type_name)
        if source.choice:
            key = source.choice.get(wanted)
            if key is None:
                return self.constant_value([], wanted)
            inner = source.choice_source
            assert inner is not None
            return self.then_keys(inner, (key,), wanted)
        if source.choice_source is not None and source.choice_name:
            # A member of unknown type: ask for its choice key directly.
            key = source.choice_name + wanted[:1].upper() + wanted[1:]
            inner_run = source.choice_source.run
            direct = _keys_step((key,))
            return Compiled(lambda focus, context: direct(inner_run(focus, context)), wanted)
        if source.type is not None:
            if _type_conforms(source.type, wanted):
                return Compiled(source.run, wanted, chain=source.chain, steps=source.steps)
            return self.constant_value([], wanted)
        run = source.run

        def filtered(focus: list[Any], context: Context) -> list[Any]:
            return [v for v in run(focus, context) if _matches_type(v, wanted)]

        return Compiled(filtered, wanted)

    def type_operation(self, operator: str, source: Compiled, type_name: str) -> Compiled:
        typed = self.of_type(source, type_name)
        if operator == "as":
            return typed
        run, typed_run = source.run, typed.run

        def is_type(focus: list[Any], context: Context) -> list[Any]:
            values = run(focus, context)
            if not values:
                return []
            if len(values) > 1:
                raise FhirPathRunError("'is' needs one value")
            return [bool(typed_run(focus, context))]

        return Compiled(is_type, "boolean")

    # -- operators -----------------------------------------------------------------------

    def binary(self, node: Binary, input_type: str | None) -> Compiled:
        left = self.node(node.left, input_type)
        right = self.node(node.right, input_type)
        operator = node.operator
        lrun, rrun = left.run, right.run
        if operator in ("and", "or", "xor", "implies"):
            return Compiled(_logic(operator, lrun, rrun), "boolean")
        if operator in ("=", "!=", "~", "!~"):
            return Compiled(_equality(operator, lrun, rrun), "boolean")
        if operator in ("<", ">", "<=", ">="):
            return Compiled(_comparison(operator, lrun, rrun), "boolean")
        if operator == "|":

            def union(focus: list[Any], context: Context) -> list[Any]:
                out: list[Any] = []
                for value in [*lrun(focus, context), *rrun(focus, context)]:
                    if not any(_equal(value, seen) for seen in out):
                        out.append(value)
                return out

            same = left.type if left.type == right.type else None
            return Compiled(union, same)
        if operator in ("in", "contains"):
            item_run, list_run = (lrun, rrun) if operator == "in" else (rrun, lrun)

            def membership(focus: list[Any], context: Context) -> list[Any]:
                item = item_run(focus, context)
                if not item:
                    return []
                if len(item) > 1:
                    raise FhirPathRunError(f"'{operator}' needs one value")
                return [any(_equal(item[0], v) for v in list_run(focus, context))]

            return Compiled(membership, "boolean")
        return _arithmetic(operator, left, right)

    # -- functions -----------------------------------------------------------------------

    def call(self, node: Call, input_type: str | None) -> Compiled:
        source = self.source(node.source, input_type)
        name, arguments = node.name, node.arguments
        handler = _FUNCTIONS.get(name)
        if handler is None:
            raise FhirPathCompileError(f"{name}() is not supported in views")
        low, high = _ARITY[name]
        if not low <= len(arguments) <= high:
            raise FhirPathCompileError(f"{name}() takes {low} to {high} arguments")
        return handler(self, source, arguments, input_type)

    def type_argument(self, argument: Node) -> str:
        if isinstance(argument, Member) and argument.source is None:
            return argument.name
        if isinstance(argument, Member) and isinstance(argument.source, Member):
            return f"{argument.source.name}.{argument.name}"
        raise FhirPathCompileError("expected a type name")


def _choice_type(suffix: str) -> str:
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in PRIMITIVES else suffix


def _keys_step(keys: tuple[str, ...]) -> Callable[[list[Any]], list[Any]]:
    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if type(item) is dict:
                for key in keys:
                    value = item.get(key)
                    if value is not None:
                        if type(value) is list:
                            out.extend(value)
                        else:
                            out.append(value)
        return out

    return step


def _logic(operator: str, lrun: Evaluate, rrun: Evaluate) -> Evaluate:
    def evaluate(focus: list[Any], context: Context) -> list[Any]:
        left = _singleton_boolean(lrun(focus, context), f"'{operator}'")
        if operator == "and" and left is False:
            return [False]
        if operator == "or" and left is True:
            return [True]
        if operator == "implies" and left is False:
            return [True]
        right = _singleton_boolean(rrun(focus, context), f"'{operator}'")
        if operator == "and":
            if right is False:
                return [False]
            return [True] if left is True and right is True else []
        if operator == "or":
            if right is True:
                return [True]
            return [False] if left is False and right is False else []
        if operator == "xor":
            return [] if left is None or right is None else [left != right]
        if right is True:
            return [True]
        return [False] if left is True and right is False else []

    return evaluate


def _equality(operator: str, lrun: Evaluate, rrun: Evaluate) -> Evaluate:
    same = _equal if operator in ("=", "!=") else _equivalent
    negate = operator in ("!=", "!~")
    equivalence = operator in ("~", "!~")

    def evaluate(focus: list[Any], context: Context) -> list[Any]:
        left, right = lrun(focus, context), rrun(focus, context)
        if not left or not right:
            if equivalence:
                return [(not left and not right) != negate]
            return []
        if len(left) != len(right):
            return [negate]
        result = all(same(a, b) for a, b in zip(left, right, strict=True))
        return [result != negate]

    return evaluate


def _comparison(operator: str, lrun: Evaluate, rrun: Evaluate) -> Evaluate:
    def evaluate(focus: list[Any], context: Context) -> list[Any]:
        left, right = lrun(focus, context), rrun(focus, context)
        if not left or not right:
            return []
        if len(left) > 1 or len(right) > 1:
            raise FhirPathRunError(f"'{operator}' compares one value with one value")
        a, b = left[0], right[0]
        comparable = (_is_number(a) and _is_number(b)) or (type(a) is str and type(b) is str)
        if not comparable:
            raise FhirPathRunError(f"'{operator}' cannot compare {a!r} with {b!r}")
        if operator == "<":
            return [a < b]
        if operator == ">":
            return [a > b]
        if operator == "<=":
            return [a <= b]
        return [a >= b]

    return evaluate


def _arithmetic(operator: str, left: Compiled, right: Compiled) -> Compiled:
    lrun, rrun = left.run, right.run

    def evaluate(focus: list[Any], context: Context) -> list[Any]:
        a_values, b_values = lrun(focus, context), rrun(focus, context)
        if operator == "&":
            a = a_values[0] if a_values else ""
            b = b_values[0] if b_values else ""
            return [f"{a}{b}"]
        if not a_values or not b_values:
            return []
        if len(a_values) > 1 or len(b_values) > 1:
            raise FhirPathRunError(f"'{operator}' needs one value on each side")
        a, b = a_values[0], b_values[0]
        if operator == "+" and type(a) is str and type(b) is str:
            return [a + b]
        if not (_is_number(a) and _is_number(b)):
            raise FhirPathRunError(f"'{operator}' needs numbers, found {a!r} and {b!r}")
        if operator == "+":
            return [a + b]
        if operator == "-":
            return [a - b]
        if operator == "*":
            return [a * b]
        if b == 0:
            return []
        if operator == "/":
            return [a / b]
        if operator == "div":
            return [int(a / b)]
        return [a - b * int(a / b)]

    both = {left.type, right.type}
    fhir_type = "integer" if both <= _INTEGER_TYPES and operator != "/" else "decimal"
    if operator == "&" or (operator == "+" and both <= _STRING_TYPES):
        fhir_type = "string"
    return Compiled(evaluate, fhir_type)


# -- the functions views may call -----------------------------------------------------------

Handler = Callable[[ExpressionCompiler, Compiled, tuple[Node, ...], str | None], Compiled]
_FUNCTIONS: dict[str, Handler] = {}
_ARITY: dict[str, tuple[int, int]] = {}


def _function(name: str, low: int = 0, high: int = 0) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _FUNCTIONS[name] = handler
        _ARITY[name] = (low, high)
        return handler

    return register


def _then(
    source: Compiled, step: str, argument: str | None
) -> tuple[tuple[str, str | None], ...] | None:
    return None if source.steps is None else (*source.steps, (step, argument))


def _map(source: Compiled, fhir_type: str | None, f: Callable[[list[Any]], list[Any]]) -> Compiled:
    run = source.run
    return Compiled(lambda focus, context: f(run(focus, context)), fhir_type)


@_function("first")
def _first(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    run = s.run

    def first(focus: list[Any], context: Context) -> list[Any]:
        values = run(focus, context)
        return values[:1] if len(values) > 1 else values

    return Compiled(first, s.type, steps=_then(s, "first", None))


@_function("last")
def _last(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    return _map(s, s.type, lambda values: values[-1:])


@_function("tail")
def _tail(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    return _map(s, s.type, lambda values: values[1:])


@_function("single")
def _single(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    def single(values: list[Any]) -> list[Any]:
        if len(values) > 1:
            raise FhirPathRunError("single() found more than one value")
        return values

    return _map(s, s.type, single)


def _integer_argument(c: ExpressionCompiler, argument: Node, t: str | None) -> Evaluate:
    return c.node(argument, t).run


@_function("skip", 1, 1)
def _skip(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    run, count = s.run, _integer_argument(c, a[0], t)

    def skip(focus: list[Any], context: Context) -> list[Any]:
        n = count(focus, context)
        return run(focus, context)[n[0] if n else 0 :]

    return Compiled(skip, s.type)


@_function("take", 1, 1)
def _take(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    run, count = s.run, _integer_argument(c, a[0], t)

    def take(focus: list[Any], context: Context) -> list[Any]:
        n = count(focus, context)
        return run(focus, context)[: n[0] if n else 0]

    return Compiled(take, s.type)


@_function("count")
def _count(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    return _map(s, "integer", lambda values: [len(values)])


@_function("empty")
def _empty(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    return _map(s, "boolean", lambda values: [not values])


@_function("hasValue")
def _has_value(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    return _map(s, "boolean", lambda values: [len(values) == 1 and type(values[0]) is not dict])


@_function("not")
def _not(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    def negate(values: list[Any]) -> list[Any]:
        value = _singleton_boolean(values, "not()")
        return [] if value is None else [not value]

    return _map(s, "boolean", negate)


def _criteria(c: ExpressionCompiler, s: Compiled, argument: Node) -> Evaluate:
    return c.node(argument, s.type).run


@_function("where", 1, 1)
def _where(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    run, criteria = s.run, _criteria(c, s, a[0])

    def where(focus: list[Any], context: Context) -> list[Any]:
        kept = []
        for item in run(focus, context):
            if _singleton_boolean(criteria([item], context), "where()") is True:
                kept.append(item)
        return kept

    return Compiled(where, s.type)


@_function("select", 1, 1)
def _select(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    run = s.run
    projection = c.node(a[0], s.type)
    project = projection.run

    def select(focus: list[Any], context: Context) -> list[Any]:
        out: list[Any] = []
        for item in run(focus, context):
            out.extend(project([item], context))
        return out

    return Compiled(select, projection.type)


@_function("exists", 0, 1)
def _exists(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    if a:
        s = _where(c, s, a, t)
    return _map(s, "boolean", lambda values: [bool(values)])


@_function("all", 1, 1)
def _all(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    run, criteria = s.run, _criteria(c, s, a[0])

    def every(focus: list[Any], context: Context) -> list[Any]:
        return [
            all(_singleton_boolean(criteria([i], context), "all()") for i in run(focus, context))
        ]

    return Compiled(every, "boolean")


def _boolean_aggregate(name: str, test: Callable[[list[bool]], bool]) -> None:
    @_function(name)
    def aggregate(
        c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None
    ) -> Compiled:
        return _map(s, "boolean", lambda values: [test([v is True for v in values])])


_boolean_aggregate("allTrue", all)
_boolean_aggregate("anyTrue", any)
_boolean_aggregate("allFalse", lambda values: not any(values))
_boolean_aggregate("anyFalse", lambda values: not all(values))


@_function("distinct")
def _distinct(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    def distinct(values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for value in values:
            if not any(_equal(value, seen) for seen in out):
                out.append(value)
        return out

    return _map(s, s.type, distinct)


@_function("iif", 2, 3)
def _iif(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    condition = c.node(a[0], t).run
    then = c.node(a[1], t)
    otherwise = c.node(a[2], t) if len(a) > 2 else c.constant_value([], None)
    then_run, otherwise_run = then.run, otherwise.run

    def iif(focus: list[Any], context: Context) -> list[Any]:
        if _singleton_boolean(condition(focus, context), "iif()") is True:
            return then_run(focus, context)
        return otherwise_run(focus, context)

    return Compiled(iif, then.type if then.type == otherwise.type else None)


@_function("join", 0, 1)
def _join(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    run = s.run
    separator_run = c.node(a[0], t).run if a else None

    def join(focus: list[Any], context: Context) -> list[Any]:
        separator = ""
        if separator_run is not None:
            given = separator_run(focus, context)
            separator = str(given[0]) if given else ""
        return [separator.join(str(v) for v in run(focus, context))]

    return Compiled(join, "string")


@_function("ofType", 1, 1)
def _of_type(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    return c.of_type(s, c.type_argument(a[0]))


@_function("as", 1, 1)
def _as(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    return c.of_type(s, c.type_argument(a[0]))


@_function("is", 1, 1)
def _is(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    return c.type_operation("is", s, c.type_argument(a[0]))


@_function("extension", 1, 1)
def _extension(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    url = c.node(a[0], t)
    if url.constant is None or len(url.constant) != 1:
        raise FhirPathCompileError("extension() needs a literal url")
    wanted = url.constant[0]
    extensions = c.then_keys(s, ("extension",), "Extension").run

    def extension(focus: list[Any], context: Context) -> list[Any]:
        return [e for e in extensions(focus, context) if type(e) is dict and e.get("url") == wanted]

    return Compiled(extension, "Extension")


@_function("getResourceKey")
def _resource_key(
    c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None
) -> Compiled:
    def keys(values: list[Any]) -> list[Any]:
        return [v["id"] for v in values if type(v) is dict and "resourceType" in v and "id" in v]

    compiled = _map(s, "string", keys)
    compiled.steps = _then(s, "resource_key", None)
    return compiled


def reference_key(reference: dict[str, Any], wanted_type: str | None) -> str | None:
    """Return the key of the resource a Reference points at (its id), if of wanted_type."""
    text = reference.get("reference")
    if type(text) is not str or text.startswith("#"):
        return None
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if text.startswith(("urn:uuid:", "urn:oid:")):
        found_type, key = reference.get("type"), text
    elif len(parts) >= 2:
        found_type, key = parts[-2], parts[-1]
    else:
        return None
    if wanted_type is not None and found_type != wanted_type:
        return None
    return key


@_function("getReferenceKey", 0, 1)
def _reference_key(
    c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None
) -> Compiled:
    wanted = normalise_type(c.type_argument(a[0])) if a else None

    def keys(values: list[Any]) -> list[Any]:
        out = []
        for value in values:
            if type(value) is dict:
                key = reference_key(value, wanted)
                if key is not None:
                    out.append(key)
        return out

    compiled = _map(s, "string", keys)
    compiled.steps = _then(s, "reference_key", wanted)
    return compiled


def _boundary_function(name: str, high: bool) -> None:
    @_function(name, 0, 1)
    def bound(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
        static = s.type

        def bounds(values: list[Any]) -> list[Any]:
            out = [boundary(v, static, high) for v in values]
            return [v for v in out if v is not None]

        return _map(s, static, bounds)


_boundary_function("lowBoundary", False)
_boundary_function("highBoundary", True)


def _string_function(name: str, arity: int, f: Callable[..., Any], result_type: str) -> None:
    @_function(name, arity, arity)
    def string_function(
        c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None
    ) -> Compiled:
        run = s.run
        argument_runs = [c.node(argument, t).run for argument in a]

        def apply(focus: list[Any], context: Context) -> list[Any]:
            values = run(focus, context)
            if not values:
                return []
            if len(values) > 1 or type(values[0]) is not str:
                raise FhirPathRunError(f"{name}() needs one string")
            arguments = []
            for argument_run in argument_runs:
                given = argument_run(focus, context)
                if not given:
                    return []
                arguments.append(given[0])
            return [f(values[0], *arguments)]

        return Compiled(apply, result_type)


_string_function("startsWith", 1, lambda s, p: s.startswith(p), "boolean")
_string_function("endsWith", 1, lambda s, p: s.endswith(p), "boolean")
_string_function("contains", 1, lambda s, p: p in s, "boolean")
_string_function("lower", 0, str.lower, "string")
_string_function("upper", 0, str.upper, "string")
_string_function("length", 0, len, "integer")
_string_function("substring", 1, lambda s, start: s[start:], "string")


@_function("toString")
def _to_string(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    def text(values: list[Any]) -> list[Any]:
        if len(values) != 1 or type(values[0]) is dict:
            return []
        value = values[0]
        return ["true" if value is True else "false" if value is False else str(value)]

    return _map(s, "string", text)


@_function("toInteger")
def _to_integer(c: ExpressionCompiler, s: Compiled, a: tuple[Node, ...], t: str | None) -> Compiled:
    def integer(values: list[Any]) -> list[Any]:
        if len(values) != 1:
            return []
        value = values[0]
        if type(value) is bool:
            return [int(value)]
        if type(value) is int:
            return [value]
        if type(value) is str and re.fullmatch(r"[+-]?\d+", value):
            return [int(value)]
        return []

    return _map(s, "integer", integer)


class _Slow:
    """The answer of a scalar function that met more than one value: ask the evaluator."""

    def __repr__(self) -> str:
        return "SLOW"


SLOW: Any = _Slow()


def scalar_lines(steps: tuple[tuple[str, str | None], ...], source: str, target: str) -> list[str]:
    """Return Python lines setting target to the expression's one value for the item named
    source (None if empty), or to SLOW where a step finds several values and the general
    evaluator must decide. `reference_key` and `SLOW` must be in the lines' namespace.

    Straight-line code, because a view's columns are mostly paths like
    `code.coding.first().code`, and reading them with no intermediate lists or calls is
    what makes them cheap per row (benchmarks/views.py).
    """
    lines = [f"{target} = None", f"for v in ({source},):"]
    body: list[str] = []
    for index, (kind, argument) in enumerate(steps):
        following = steps[index + 1][0] if index + 1 < len(steps) else None
        if kind == "key":
            body += [
                "if type(v) is not dict: break",
                f"v = v.get({argument!r})",
                "if v is None: break",
                "if type(v) is list:",
            ]
            if following == "first":
                body += ["    if not v: break", "    v = v[0]"]
            else:
                body += [
                    "    if len(v) != 1:",
                    f"        if v: {target} = SLOW",
                    "        break",
                    "    v = v[0]",
                ]
        elif kind == "resource_key":
            body += [
                "if type(v) is not dict or 'resourceType' not in v: break",
                "v = v.get('id')",
            ]
        elif kind == "reference_key":
            body += ["if type(v) is not dict: break", f"v = reference_key(v, {argument!r})"]
        # first() of a single value is itself; lists were taken care of by the step before
    body.append(f"{target} = v")
    return lines + ["    " + line for line in body]
