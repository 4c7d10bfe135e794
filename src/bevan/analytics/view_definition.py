"""SQL on FHIR v2 ViewDefinitions compiled once into a function from resources to rows.

`compile_view(view_json)` checks the definition (every error names where it is, as a
FHIRPath into the ViewDefinition) and returns a `CompiledView` whose `.columns` say what
each row holds and whose `.rows(resources)` yields one tuple per row. Selects follow the
specification: a select's rows are its columns joined with the rows of each nested
select (a cross join) and then with the rows of its unionAll branches; `forEach`,
`forEachOrNull` and `repeat` make a row per item of their collection, and `%rowIndex` is
the item's place in it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bevan.analytics.fhirpath_compiler import (
    PRIMITIVES,
    SLOW,
    Compiled,
    Context,
    ExpressionCompiler,
    FhirPathCompileError,
    FhirPathRunError,
    reference_key,
    scalar_lines,
)
from bevan.analytics.fhirpath_grammar import FhirPathSyntaxError
from bevan.fhir.errors import BusinessRuleViolation, InvalidRequest, Issue
from bevan.fhir.resource_types import RESOURCE_TYPES

Row = tuple[Any, ...]
# The rows of one select for one focus item.
SelectRows = Callable[[Any, Context], list[Row]]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SELECT_KEYS = frozenset(
    ("column", "select", "forEach", "forEachOrNull", "repeat", "unionAll", "extension", "id")
)


class ViewDefinitionError(InvalidRequest):
    """The ViewDefinition itself is wrong; the issue's expression says where."""


class ViewRunError(BusinessRuleViolation):
    """The view cannot be run over this data (a column found several values, ...)."""

    default_code = "processing"


@dataclass(frozen=True)
class Column:
    """One column of a view: its name, its declared FHIR type, and whether it is a list."""

    name: str
    type: str | None
    collection: bool
    path: str
    description: str | None = None


def _fail(where: str, message: str) -> ViewDefinitionError:
    return ViewDefinitionError(Issue(message, "invalid", "error", (where,)))


class CompiledView:
    """A ViewDefinition ready to run: `.columns`, and `.rows(resources)`."""

    def __init__(
        self,
        name: str | None,
        resource: str,
        columns: tuple[Column, ...],
        select: SelectRows,
        where: tuple[Callable[[list[Any], Context], list[Any]], ...],
        definition: dict[str, Any],
    ) -> None:
        self.name = name
        self.resource = resource
        self.columns = columns
        self.definition = definition
        self._select = select
        self._where = where

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def rows(self, resources: Iterable[dict[str, Any]]) -> Iterator[Row]:
        """Yield the view's rows for resources (those of other types are passed over)."""
        resource_type, select, where = self.resource, self._select, self._where
        context = Context()
        if isinstance(select, _SingleRowSelect) and not where:
            single = select.single
            try:
                for resource in resources:
                    if resource.get("resourceType") == resource_type:
                        context.resource = resource
                        yield single(resource, context)
            except FhirPathRunError as error:
                raise ViewRunError(str(error)) from error
            return
        try:
            for resource in resources:
                if resource.get("resourceType") != resource_type:
                    continue
                context.resource = resource
                context.row_index = 0
                if where and not _kept(resource, where, context):
                    continue
                yield from select(resource, context)
        except FhirPathRunError as error:
            raise ViewRunError(str(error)) from error

    def rows_as_dicts(self, resources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield each row as {column name: value}."""
        names = self.column_names
        for row in self.rows(resources):
            yield dict(zip(names, row, strict=True))


def _kept(resource: Any, where: tuple[Any, ...], context: Context) -> bool:
    focus = [resource]
    for test in where:
        values = test(focus, context)
        if not values:
            return False
        if len(values) > 1 or type(values[0]) is not bool:
            raise FhirPathRunError("a where path must give one boolean")
        if values[0] is not True:
            return False
    return True


def compile_view(view: Any) -> CompiledView:
    """Return the compiled view, or raise ViewDefinitionError naming what is wrong where."""
    if not isinstance(view, dict):
        raise _fail("ViewDefinition", "a ViewDefinition must be a JSON object")
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise _fail("ViewDefinition.resource", "a ViewDefinition must name its resource type")
    if resource not in RESOURCE_TYPES:
        raise _fail("ViewDefinition.resource", f"{resource} is not an R4 resource type")
    select = view.get("select")
    if not isinstance(select, list) or not select:
        raise _fail("ViewDefinition.select", "a ViewDefinition needs at least one select")
    compiler = ExpressionCompiler(_constants(view.get("constant")))
    builder = _SelectCompiler(compiler)
    columns, rows = builder.selects(select, resource, "ViewDefinition.select")
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail("ViewDefinition.select", f"column names repeat: {', '.join(duplicates)}")
    where = view.get("where", [])
    if not isinstance(where, list):
        raise _fail("ViewDefinition.where", "where must be a list")
    tests = []
    for i, clause in enumerate(where):
        place = f"ViewDefinition.where[{i}].path"
        path = clause.get("path") if isinstance(clause, dict) else None
        compiled = builder.expression(path, resource, place)
        if compiled.type is not None and compiled.type != "boolean":
            raise _fail(place, f"a where path must give a boolean, not {compiled.type}")
        tests.append(compiled.run)
    name = view.get("name")
    return CompiledView(
        name if isinstance(name, str) else None,
        resource,
        tuple(columns),
        rows,
        tuple(tests),
        view,
    )


def _constants(constants: Any) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    if constants is None:
        return found
    if not isinstance(constants, list):
        raise _fail("ViewDefinition.constant", "constant must be a list")
    for i, constant in enumerate(constants):
        place = f"ViewDefinition.constant[{i}]"
        if not isinstance(constant, dict) or not isinstance(constant.get("name"), str):
            raise _fail(place, "a constant needs a name")
        values = [(k, v) for k, v in constant.items() if k.startswith("value")]
        if len(values) != 1:
            raise _fail(place, f"constant {constant['name']} needs exactly one value[x]")
        key, value = values[0]
        suffix = key[len("value") :]
        fhir_type = suffix[:1].lower() + suffix[1:]
        if fhir_type not in PRIMITIVES:
            raise _fail(f"{place}.{key}", f"{key} is not a primitive value")
        found[constant["name"]] = (value, fhir_type)
    return found


class _SelectCompiler:
    def __init__(self, compiler: ExpressionCompiler) -> None:
        self.compiler = compiler

    def expression(self, path: Any, input_type: str | None, place: str) -> Compiled:
        if not isinstance(path, str):
            raise _fail(place, "a path must be a FHIRPath string")
        try:
            return self.compiler.compile(path, input_type)
        except (FhirPathSyntaxError, FhirPathCompileError) as error:
            raise _fail(place, f"{path!r}: {error}") from error

    def selects(
        self, selects: Any, input_type: str | None, place: str
    ) -> tuple[list[Column], SelectRows]:
        """Compile sibling selects: their rows are cross-joined."""
        if not isinstance(selects, list):
            raise _fail(place, "select must be a list")
        columns: list[Column] = []
        parts: list[SelectRows] = []
        for i, select in enumerate(selects):
            found, rows = self.select(select, input_type, f"{place}[{i}]")
            columns.extend(found)
            parts.append(rows)
        return columns, _cross_join(parts)

    def select(
        self, select: Any, input_type: str | None, place: str
    ) -> tuple[list[Column], SelectRows]:
        if not isinstance(select, dict):
            raise _fail(place, "a select must be a JSON object")
        unknown = sorted(set(select) - _SELECT_KEYS)
        if unknown:
            raise _fail(place, f"unknown select element: {', '.join(unknown)}")
        iterators = [k for k in ("forEach", "forEachOrNull", "repeat") if k in select]
        if len(iterators) > 1:
            raise _fail(place, f"a select may have only one of {', '.join(iterators)}")
        iterator = iterators[0] if iterators else None
        focus_type = input_type
        items: Callable[[Any, Context], list[Any]] | None = None
        if iterator in ("forEach", "forEachOrNull"):
            compiled = self.expression(select[iterator], input_type, f"{place}.{iterator}")
            run = compiled.run
            focus_type = compiled.type

            def over(item: Any, context: Context) -> list[Any]:
                return run([item], context)

            items = over
        elif iterator == "repeat":
            items, focus_type = self.repeat(select["repeat"], input_type, f"{place}.repeat")
        columns, body = self.body(select, focus_type, place)
        if items is None:
            return columns, body
        return columns, _iterate(items, body, iterator == "forEachOrNull", columns)

    def repeat(
        self, paths: Any, input_type: str | None, place: str
    ) -> tuple[Callable[[Any, Context], list[Any]], str | None]:
        if not isinstance(paths, list) or not paths:
            raise _fail(place, "repeat must be a non-empty list of paths")
        first = [self.expression(p, input_type, f"{place}[{i}]") for i, p in enumerate(paths)]
        kinds = {c.type for c in first}
        element_type = kinds.pop() if len(kinds) == 1 else None
        deeper = [self.expression(p, element_type, f"{place}[{i}]") for i, p in enumerate(paths)]
        if element_type is not None and any(c.type != element_type for c in deeper):
            element_type = None
            deeper = [self.expression(p, None, f"{place}[{i}]") for i, p in enumerate(paths)]
        first_runs = [c.run for c in first]
        deeper_runs = [c.run for c in deeper]

        def walk(items: list[Any], context: Context, out: list[Any]) -> None:
            for item in items:
                out.append(item)
                for run in deeper_runs:
                    walk(run([item], context), context, out)

        def collect(item: Any, context: Context) -> list[Any]:
            out: list[Any] = []
            for run in first_runs:
                walk(run([item], context), context, out)
            return out

        return collect, element_type

    def body(
        self, select: dict[str, Any], focus_type: str | None, place: str
    ) -> tuple[list[Column], SelectRows]:
        columns: list[Column] = []
        parts: list[SelectRows] = []
        if "column" in select:
            own, row = self.columns(select["column"], focus_type, f"{place}.column")
            columns.extend(own)
            parts.append(row)
        if "select" in select:
            nested, rows = self.selects(select["select"], focus_type, f"{place}.select")
            columns.extend(nested)
            parts.append(rows)
        if "unionAll" in select:
            union, rows = self.union(select["unionAll"], focus_type, f"{place}.unionAll")
            columns.extend(union)
            parts.append(rows)
        if not parts:
            raise _fail(place, "a select needs a column, select or unionAll")
        return columns, _cross_join(parts)

    def union(
        self, branches: Any, focus_type: str | None, place: str
    ) -> tuple[list[Column], SelectRows]:
        if not isinstance(branches, list) or not branches:
            raise _fail(place, "unionAll must be a non-empty list of selects")
        compiled = [self.select(b, focus_type, f"{place}[{i}]") for i, b in enumerate(branches)]
        columns = compiled[0][0]
        for i, (other, _) in enumerate(compiled[1:], start=1):
            if [c.name for c in other] != [c.name for c in columns]:
                raise _fail(
                    f"{place}[{i}]",
                    "every unionAll branch must have the same columns in the same order: "
                    f"{[c.name for c in columns]} and {[c.name for c in other]}",
                )
        runs = [rows for _, rows in compiled]

        def union_rows(item: Any, context: Context) -> list[Row]:
            out: list[Row] = []
            row_index = context.row_index
            for run in runs:
                out.extend(run(item, context))
                context.row_index = row_index
            return out

        return columns, union_rows

    def columns(
        self, columns: Any, focus_type: str | None, place: str
    ) -> tuple[list[Column], SelectRows]:
        if not isinstance(columns, list) or not columns:
            raise _fail(place, "column must be a non-empty list")
        found: list[Column] = []
        getters = []
        paths: list[tuple[tuple[str, str | None], ...] | None] = []
        for i, column in enumerate(columns):
            where = f"{place}[{i}]"
            if not isinstance(column, dict):
                raise _fail(where, "a column must be a JSON object")
            name = column.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise _fail(
                    f"{where}.name", "a column name must be a letter then letters, digits or _"
                )
            compiled = self.expression(column.get("path"), focus_type, f"{where}.path")
            collection = column.get("collection") is True
            declared = column.get("type")
            found.append(
                Column(
                    name,
                    declared if isinstance(declared, str) else compiled.type,
                    collection,
                    column["path"],
                    column.get("description"),
                )
            )
            getters.append(_column_getter(compiled.run, collection, name))
            paths.append(None if collection else compiled.steps)
        return found, _own_row(getters, paths)


def _column_getter(
    run: Callable[[list[Any], Context], list[Any]], collection: bool, name: str
) -> Callable[[list[Any], Context], Any]:
    if collection:

        def many(focus: list[Any], context: Context) -> Any:
            return list(run(focus, context))

        return many

    def one(focus: list[Any], context: Context) -> Any:
        values = run(focus, context)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        raise FhirPathRunError(
            f"column {name} found {len(values)} values; set collection to true to keep a list"
        )

    return one


class _SingleRowSelect:
    """A select that gives exactly one row per item: called as SelectRows it gives a list
    of that row; `.single` gives the row itself, which a view of such selects uses."""

    def __init__(self, single: Callable[[Any, Context], Row]) -> None:
        self.single = single

    def __call__(self, item: Any, context: Context) -> list[Row]:
        return [self.single(item, context)]


def _own_row(
    getters: list[Callable[[list[Any], Context], Any]],
    steps: list[tuple[tuple[str, str | None], ...] | None],
) -> _SingleRowSelect:
    # One generated function per select rather than a loop over columns, because calls
    # and intermediate lists are most of a simple view's cost per row (benchmarks/views.py):
    # a column that is a plain path is read inline (scalar_lines), and only when that
    # meets several values (or for other expressions) by the general evaluator.
    namespace: dict[str, Any] = {"SLOW": SLOW, "reference_key": reference_key}
    lines = ["def row(item, context):"]
    for i, (getter, path) in enumerate(zip(getters, steps, strict=True)):
        namespace[f"g{i}"] = getter
        if path is None:
            lines.append(f"    a{i} = g{i}([item], context)")
        else:
            lines += ["    " + line for line in scalar_lines(path, "item", f"a{i}")]
            lines.append(f"    if a{i} is SLOW: a{i} = g{i}([item], context)")
    lines.append(f"    return ({', '.join(f'a{i}' for i in range(len(getters)))},)")
    exec("\n".join(lines), namespace)  # noqa: S102 - text built from keys quoted by repr
    return _SingleRowSelect(namespace["row"])


def _cross_join(parts: list[SelectRows]) -> SelectRows:
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, _SingleRowSelect) for part in parts):
        singles = [part.single for part in parts if isinstance(part, _SingleRowSelect)]

        def single(item: Any, context: Context) -> Row:
            return tuple(itertools.chain.from_iterable(one(item, context) for one in singles))

        return _SingleRowSelect(single)

    def joined(item: Any, context: Context) -> list[Row]:
        row_index = context.row_index
        found = []
        for part in parts:
            rows = part(item, context)
            context.row_index = row_index
            if not rows:
                return []
            found.append(rows)
        if all(len(rows) == 1 for rows in found):
            return [tuple(itertools.chain.from_iterable(rows[0] for rows in found))]
        return [
            tuple(itertools.chain.from_iterable(combination))
            for combination in itertools.product(*found)
        ]

    return joined


def _iterate(
    items: Callable[[Any, Context], list[Any]],
    body: SelectRows,
    or_null: bool,
    columns: list[Column],
) -> SelectRows:
    # The row of an empty forEachOrNull is null but for %rowIndex, which is 0 in it.
    nulls: Row = tuple(0 if c.path.strip() == "%rowIndex" else None for c in columns)

    def iterated(item: Any, context: Context) -> list[Row]:
        found = items(item, context)
        if not found:
            return [nulls] if or_null else []
        outer = context.row_index
        out: list[Row] = []
        for index, each in enumerate(found):
            context.row_index = index
            out.extend(body(each, context))
        context.row_index = outer
        return out

    return iterated
