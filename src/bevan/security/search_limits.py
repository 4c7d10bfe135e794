"""Searches limited to what the caller may see, through every type they pass.

A chain (`subject:Patient.name=x`) or `_has` (`_has:Condition:patient:code=y`) looks
into resources of other types. Each type it passes is limited as if the caller had
searched it directly: refused if the caller may not search that type at all, and
otherwise narrowed by that type's search restrictions inside the chain or `_has`, so
the answer never depends on a resource a read would refuse.

A patient's Slot search is also held to a window of days (booking_rights).

Conditional matching (If-None-Exist, conditional update and delete, Bundle
`ifNoneExist`, conditional references) runs through the same function, so a match the
caller may not see is no match at all: the answer is the one for nothing matching.
"""

from __future__ import annotations

from dataclasses import replace

from bevan.fhir.errors import Forbidden, Issue
from bevan.fhir.search import (
    AnyOf,
    Chain,
    Criterion,
    Has,
    IdMatch,
    LastUpdatedMatch,
    Restriction,
    SearchQuery,
)
from bevan.security.access import AccessContext, AccessPolicy
from bevan.security.booking_rights import check_patient_slot_window


def limited_view_query(
    policy: AccessPolicy, context: AccessContext, query: SearchQuery
) -> SearchQuery:
    """Return query (a view's resources in the stored record) narrowed to what the caller
    may analyse; Forbidden for a caller who may not run views over the record (see
    AccessPolicy.check_analytics). A view's query has no chains or `_has` to limit."""
    policy.check_analytics(context, query.resource_type)
    restrictions = policy.analytics_restrictions(context, query.resource_type)
    return replace(query, criteria=(*query.criteria, *restrictions))


def limited_search(
    policy: AccessPolicy,
    context: AccessContext,
    query: SearchQuery,
    interaction: str = "search-type",
) -> SearchQuery:
    """Return query narrowed to what the caller may see: the restrictions of its own type
    ANDed on, and every chain and `_has` restricted as a search of the type it passes.

    interaction is first checked against the query's own type: a search, or the write a
    conditional match serves (a conditional create matches only for one who may create).
    Raises Forbidden, naming the parameter, for a chain or `_has` through a type the
    caller may not search.
    """
    policy.check_type(context, query.resource_type, interaction)
    if context.role == "patient" and query.resource_type == "Slot":
        check_patient_slot_window(query)
    limiter = _Limiter(policy, context, query.resource_type)
    criteria = tuple(limiter.top_level(c) for c in query.criteria)
    restrictions = policy.search_restrictions(context, query.resource_type)
    return replace(query, criteria=(*criteria, *restrictions))


class _Limiter:
    """Walks one query's criteria, limiting each type a chain or `_has` passes."""

    def __init__(self, policy: AccessPolicy, context: AccessContext, searched: str) -> None:
        self.policy = policy
        self.context = context
        self.searched = searched
        self.known: dict[str, tuple[Criterion, ...]] = {}  # a type passed twice is asked once
        self.parameter: Criterion | None = None  # the query's criterion being limited

    def top_level(self, criterion: Criterion) -> Criterion:
        """Return one of the query's own criteria, limited (refusals name it)."""
        self.parameter = criterion
        return self.limited(self.searched, criterion)

    def limited(self, resource_type: str, criterion: Criterion) -> Criterion:
        """Return criterion (on resource_type) with its chains and `_has` limited."""
        if isinstance(criterion, Restriction):
            return criterion  # the policy's own criteria look where the caller cannot
        if isinstance(criterion, AnyOf):
            return AnyOf(tuple(self.limited(resource_type, c) for c in criterion.criteria))
        if isinstance(criterion, Chain):
            chains = tuple(
                Chain(
                    criterion.param,
                    (target,),
                    self.limited(target, criterion.inner),
                    (*criterion.limits, *self.restrictions(target)),
                )
                for target in criterion.target_types
            )
            return chains[0] if len(chains) == 1 else AnyOf(chains)
        if isinstance(criterion, Has):
            source = criterion.source_type
            return Has(
                source,
                criterion.param,
                self.limited(source, criterion.inner),
                (*criterion.limits, *self.restrictions(source)),
            )
        return criterion

    def restrictions(self, passed: str) -> tuple[Criterion, ...]:
        """Return the restrictions on a type a chain or `_has` passes; Forbidden if the
        caller may not search it."""
        try:
            self.policy.check_type(self.context, passed, "search-type")
        except Forbidden as refused:
            name = _name(self.parameter) if self.parameter is not None else passed
            reason = "; ".join(issue.diagnostics for issue in refused.issues)
            raise Forbidden(
                Issue(
                    f"the search parameter {name!r} looks into {passed} records, and you may "
                    f"not search those: {reason}",
                    code="forbidden",
                    expression=(f"{self.searched}?{name}",),
                )
            ) from None
        if passed not in self.known:
            self.known[passed] = self.policy.search_restrictions(self.context, passed)
        return self.known[passed]


def _name(criterion: Criterion) -> str:
    """Return a parameter name for criterion as a client would write it."""
    if isinstance(criterion, Chain):
        targets = ",".join(criterion.target_types)
        return f"{criterion.param}:{targets}.{_name(criterion.inner)}"
    if isinstance(criterion, Has):
        return f"_has:{criterion.source_type}:{criterion.param}:{_name(criterion.inner)}"
    if isinstance(criterion, AnyOf | Restriction):
        inner = criterion.criteria[0] if isinstance(criterion, AnyOf) else criterion.inner
        return _name(inner)
    if isinstance(criterion, IdMatch):
        return "_id"
    if isinstance(criterion, LastUpdatedMatch):
        return "_lastUpdated"
    return criterion.param
