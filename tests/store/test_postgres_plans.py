"""On PostgreSQL a search runs the plan Bevan chose for it: the driving criterion's rows
listed once, each other criterion checked per candidate through the index on rid, and
estimates of a type's parameter values taken from statistics of the columns together,
and no transaction held open around its reads. (The same searches on SQLite are covered
by test_search_plans.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.pq import TransactionStatus

from bevan.fhir.search import Cursor, parse_search
from bevan.records.service import RecordService
from bevan.store.budget import time_budget
from bevan.store.migrate import upgrade
from bevan.store.record_store import RecordStore
from tests.conftest import database_url

pytestmark = pytest.mark.postgres

LOINC = "http://loinc.org"


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[RecordStore]:
    store = RecordStore.from_url(database_url("postgres", tmp_path))
    upgrade(store.engine)
    try:
        yield store
    finally:
        store.close()


def _observation(code: str, status: str = "final", subject: str | None = None) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": "2024-05-01",
    }
    if subject:
        observation["subject"] = {"reference": subject}
    return observation


def _created_observation(store: RecordStore) -> str:
    """Store one Observation of code 8867-4; return its id."""
    created = RecordService(store).create(_observation("8867-4")).stored
    assert created is not None
    return created.id


def _backend(connection: Any) -> int:
    """The process id of the PostgreSQL backend serving connection."""
    return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())


def _plan(store: RecordStore, resource_type: str, query: str) -> str:
    with store.read() as session:
        return "\n".join(session.explain(parse_search(resource_type, query)))


def test_the_driving_rows_are_listed_once_and_the_rest_checked_per_candidate(
    postgres: RecordStore,
) -> None:
    service = RecordService(postgres)
    for n in range(40):
        service.create(
            _observation("8867-4" if n % 4 else "29463-7", "amended" if n % 3 else "final")
        )
    postgres.analyse()
    found = service.search(parse_search("Observation", "code=29463-7&status=final&date=ge2024"))
    assert len(found.matches) == 4  # n = 0, 12, 24, 36

    plan = _plan(postgres, "Observation", "code=29463-7&status=final&date=ge2024")
    # The code's rows, listed before the page (not looked up while walking every key)
    assert "InitPlan" in plan and "ANY" in plan
    # status and date: one lookup by rid for each candidate, not joins or hashes of
    # every row of their values
    assert plan.count("SubPlan") >= 2
    assert "Semi Join" not in plan and "Anti Join" not in plan and "Merge" not in plan


def test_a_chain_looks_up_references_target_by_target(postgres: RecordStore) -> None:
    service = RecordService(postgres)
    patients = []
    for n in range(6):
        created = service.create(
            {"resourceType": "Patient", "name": [{"family": "Roberts" if n % 2 else "Ali"}]}
        ).stored
        assert created is not None
        patients.append(created.id)
    for n in range(30):
        service.create(_observation("8867-4", subject=f"Patient/{patients[n % 6]}"))
    postgres.analyse()
    found = service.search(parse_search("Observation", "subject:Patient.name=roberts&_count=100"))
    assert len(found.matches) == 15

    plan = _plan(postgres, "Observation", "subject:Patient.name=roberts&_count=20")
    # Each target's references are looked up by its id, in a subquery of their own
    # (a plain join lets the planner hash every reference of the kind first).
    lookup = plan.split("Subquery Scan", 1)[1]
    assert "index_reference" in lookup and "target_id = (resource" in lookup


def test_a_common_value_of_one_parameter_is_estimated_from_the_columns_together(
    postgres: RecordStore,
) -> None:
    rows = (
        [(n, "Encounter", "status", "finished") for n in range(1000)]
        + [(1000 + n, "Observation", "status", "final") for n in range(1000)]
        + [(2000 + n, "Observation", "category", "vital-signs") for n in range(1000)]
    )
    with postgres.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO index_token (rid, resource_type, param, code, grp) "
            "VALUES (%s, %s, %s, %s, 0)",
            rows,
        )
    postgres.analyse()
    with postgres.engine.connect() as connection:
        plan = connection.exec_driver_sql(
            "EXPLAIN (FORMAT JSON) SELECT rid FROM index_token WHERE resource_type = "
            "'Encounter' AND param = 'status' AND code = 'finished'"
        ).scalar_one()
    # Taken as independent columns: 1/3 * 2/3 * 1/3 of 3,000, about 220.
    assert plan[0]["Plan"]["Plan Rows"] >= 800


def test_a_plan_kept_for_every_value_finds_what_each_value_matches(
    postgres: RecordStore,
) -> None:
    # The driver prepares a statement after five runs, and PostgreSQL may then keep one
    # plan for all values. A search's SQL fixes how it runs, so the kept plan must serve
    # a surname shared by many as well as one held by a single Patient, and a prefix.
    service = RecordService(postgres)
    families = ["Roberts"] * 12 + ["Robinson", "Ali", "Alison", "Okafor"]
    patients: dict[str, list[str]] = {}
    for family in families:
        created = service.create({"resourceType": "Patient", "name": [{"family": family}]})
        assert created.stored is not None
        patients.setdefault(family, []).append(created.stored.id)
        service.create(_observation("8867-4", subject=f"Patient/{created.stored.id}"))
    postgres.analyse()

    asked = ["roberts", "robinson", "ali", "okafor", "rob", "al", "nobody"] * 3
    with postgres.read() as session:  # one connection: its prepared statements

        def found(name: str) -> int:
            query = parse_search("Observation", f"subject:Patient.name={name}")
            return len(service.search(query, session).matches)

        counts = [found(name) for name in asked]
        kept = session.connection.exec_driver_sql(
            "SELECT sum(generic_plans) FROM pg_prepared_statements"
        ).scalar()
    assert counts[:7] == [12, 1, 2, 1, 13, 2, 0]
    assert counts == counts[:7] * 3
    assert kept and kept > 0  # the searches ran on plans kept for every value


def test_a_read_holds_no_transaction_open(postgres: RecordStore) -> None:
    # Each statement reads what was committed when it began, as it would inside a READ
    # COMMITTED transaction; without one, a search needs no BEGIN and COMMIT round
    # trips, and a slow reader never holds back what VACUUM may clean up.
    created = _created_observation(postgres)
    with postgres.read() as session:
        hits = session.search(parse_search("Observation", "code=8867-4"), 10)
        status = session.connection.connection.driver_connection.info.transaction_status
    assert [h.id for h in hits] == [created]
    assert status == TransactionStatus.IDLE


def test_reads_one_after_another_reuse_a_connection_and_prepare_early(
    postgres: RecordStore,
) -> None:
    # The pool hands back the connection returned last, so a process's reads keep a few
    # connections busy, each preparing a statement after its second run (not its fifth):
    # spread over every connection in turn, statements were planned again and again.
    _created_observation(postgres)
    backends = set()
    for _ in range(3):
        with postgres.read() as session:
            backends.add(_backend(session.connection))
            assert [h.id for h in session.search(parse_search("Observation", "code=8867-4"), 10)]
    with postgres.read() as session:
        prepared = session.connection.exec_driver_sql(
            "SELECT count(*) FROM pg_prepared_statements WHERE strpos(statement, 'index_token') > 0"
        ).scalar()
    assert len(backends) == 1
    assert prepared and prepared >= 1


def test_a_page_by_three_letters_of_a_name_reads_only_its_bucket(
    postgres: RecordStore,
) -> None:
    # What each page finds, on both engines: test_search_plans.py. A few rows would be
    # read fastest whole, but reads plan without sequential scans, as for many rows.
    service = RecordService(postgres)
    for family in ("Smith", "Smyth", "Jones") * 4:
        service.create({"resourceType": "Patient", "name": [{"family": family}]})
    postgres.analyse()
    with postgres.read() as session:
        by_three = "\n".join(session.explain(parse_search("Patient", "name=smi&_count=10")))
        by_four = "\n".join(session.explain(parse_search("Patient", "name=smit&_count=10")))
        first = session.search(parse_search("Patient", "name=smi&_count=2"), 3)
        later = f"name=smi&_count=2&_cursor={Cursor((), first[1].rid).encode()}"
        page_two = "\n".join(session.explain(parse_search("Patient", later)))
    assert "ix_string_bucket" in by_three and "Sort Key: index_string.rid" not in by_three
    assert "ix_string_bucket" not in by_four
    assert "ix_string_bucket" in page_two and "Sort Key: index_string.rid" not in page_two


def test_no_session_compiles_its_statements_to_machine_code(postgres: RecordStore) -> None:
    # JIT compilation added hundreds of milliseconds to each run of a search whose
    # estimated cost passed PostgreSQL's threshold; every connection Bevan opens turns
    # it off.
    def jit(connection: Any) -> str:
        return str(connection.exec_driver_sql("SHOW jit").scalar())

    with postgres.read() as session:
        assert jit(session.connection) == "off"
    with time_budget(5.0), postgres.read() as session:
        assert jit(session.connection) == "off"
    with postgres.transaction() as connection:
        assert jit(connection) == "off"


def test_a_read_that_failed_leaves_its_connection_fit_for_the_next(
    postgres: RecordStore,
) -> None:
    # Read connections go back to the pool without a rollback: there is no transaction
    # to end, even after a statement failed.
    created = _created_observation(postgres)
    with pytest.raises(Exception, match="division by zero"), postgres.read() as session:
        failed_on = _backend(session.connection)
        session.connection.exec_driver_sql("SELECT 1 / 0")
    with postgres.read() as session:
        assert _backend(session.connection) == failed_on
        hits = session.search(parse_search("Observation", "code=8867-4"), 10)
    assert [h.id for h in hits] == [created]


def test_everything_looks_up_each_referenced_resource_by_its_key(postgres: RecordStore) -> None:
    # Left to choose, the planner expected every reference of a long record to name a
    # different resource and hashed them against a scan of every resource (94 ms for a
    # Patient with 403 resources at 222,449). Each target is a probe of the key, kept
    # apart (LIMIT 1) so that the planner cannot fold it back into a join.
    service = RecordService(postgres)
    patient = service.create({"resourceType": "Patient", "name": [{"family": "Long"}]}).stored
    assert patient is not None
    for _ in range(30):
        service.create(_observation("8867-4", subject=f"Patient/{patient.id}"))
    postgres.analyse()
    with postgres.read() as session:
        members = session.compartment("Patient", patient.id, {"Observation": ("subject",)}, 100)
        rids = [rid for rid, _ in members]
        statement, bound = session.hot.target_versions.bind(rids, {"t": "Patient", "i": patient.id})
        cursor = session.indexed._cursor
        cursor.execute("EXPLAIN " + statement.sql, bound)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        found = session.versions_referenced(rids, "Patient", patient.id)
    assert len(rids) == 30
    assert [(v.resource_type, v.id) for v in found] == [("Patient", patient.id)]
    hashed = [line for line in plan.splitlines() if "Hash Cond" in line and "target_" in line]
    assert not hashed, plan  # not every resource hashed against the targets
    assert "->  Limit" in plan, plan  # a lookup per target, whatever the table's size


def test_counting_a_quantitys_matches_asks_each_units_index_apart(
    postgres: RecordStore,
) -> None:
    """Choosing a plan counts a criterion's matches up to a limit. A weight in kg is
    matched as kg and as grams: asked as one condition, a count estimated to stop early
    read the whole quantity table; each alternative is now its own scan of its index."""
    service = RecordService(postgres)
    for value, unit in ((40, "kg"), (40000, "g"), (90, "kg")) * 3:
        weight = {
            **_observation("29463-7"),
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }
        service.create(weight)
    postgres.analyse()
    query = parse_search("Observation", "value-quantity=lt47.9|http://unitsofmeasure.org|kg")
    with postgres.read() as session:
        driver = session.compiler.driver(query)
        counted = session._driving_count(("Observation", driver, 1000))
        compiled = counted.compile(
            dialect=postgres.engine.dialect, compile_kwargs={"literal_binds": True}
        )
        session.connection.exec_driver_sql("SET enable_seqscan = off")
        try:
            plan = "\n".join(
                row[0] for row in session.connection.exec_driver_sql(f"EXPLAIN {compiled}")
            )
            count = session.connection.exec_driver_sql(str(compiled)).scalar()
        finally:
            session.connection.exec_driver_sql("RESET enable_seqscan")
    assert "Append" in plan and "BitmapOr" not in plan
    assert "ix_quantity_canonical" in plan and "ix_quantity_value" in plan
    # 40 kg matches as kg and as grams, 40,000 g as grams: a row per way it matches
    assert count == 3 * 2 + 3


def test_reads_never_plan_a_scan_of_a_whole_table(postgres: RecordStore) -> None:
    """Every read is planned with sequential scans off: the statements that choose a
    search's plan as well as its page. Misjudging how many rows a condition matches, the
    planner had chosen to scan a whole index table to count them. Writes keep the
    default."""
    for _ in range(3):
        _created_observation(postgres)
    postgres.analyse()

    def seqscan(connection: Any) -> str:
        return str(connection.exec_driver_sql("SHOW enable_seqscan").scalar())

    query = parse_search("Observation", "code=8867-4,8310-5&_count=2")
    with postgres.read() as session:
        assert seqscan(session.connection) == "off"
        choice = session.explain_choice(query)
    with time_budget(5.0), postgres.read() as session:
        assert seqscan(session.connection) == "off"
    with postgres.transaction() as connection:
        assert seqscan(connection) == "on"
    assert choice[0] == "choosing the plan, the driving matches:"
    assert "ix_token_lookup" in "\n".join(choice) and "Seq Scan" not in "\n".join(choice)
