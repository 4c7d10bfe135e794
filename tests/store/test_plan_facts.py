"""What search plans remember about the data: asked once, then reused for a while."""

from __future__ import annotations

from bevan.store.plan_facts import PlanFacts


def test_a_density_answer_is_reused_until_it_is_stale() -> None:
    asked: list[str] = []

    def count(answer: bool) -> bool:
        asked.append("count")
        return answer

    facts = PlanFacts(density_age=60.0)
    assert facts.dense(("Patient", "name=smi"), lambda: count(True)) is True
    assert facts.dense(("Patient", "name=smi"), lambda: count(False)) is True
    assert facts.dense(("Patient", "name=zzz"), lambda: count(False)) is False
    assert asked == ["count", "count"]

    stale = PlanFacts(density_age=0.0)
    stale.dense("key", lambda: count(True))
    assert stale.dense("key", lambda: count(False)) is False
    assert len(asked) == 4


def test_a_row_count_is_reused_apart_from_density_answers() -> None:
    asked: list[int] = []

    def count(n: int) -> int:
        asked.append(n)
        return n

    facts = PlanFacts(density_age=60.0)
    assert facts.rows_up_to(("Observation", "code=8462-4"), lambda: count(5000)) == 5000
    assert facts.rows_up_to(("Observation", "code=8462-4"), lambda: count(7)) == 5000
    # the same key asked as a density question is a question of its own
    assert facts.dense(("Observation", "code=8462-4"), lambda: bool(count(0))) is False
    assert asked == [5000, 0]
