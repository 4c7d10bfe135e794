"""User accounts: Argon2id passwords, roles and their details, disabling; and the CLI."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from bevan.security.users import ROLE_CODES, UserDirectory, UserError
from bevan.store.identity import IdentityStore
from tests.conftest import RunningServer

PASSWORD = "correct horse battery staple"


@pytest.fixture
def users(server: RunningServer) -> UserDirectory:
    return UserDirectory.on(server.store.engine)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_password_is_stored_only_as_an_argon2id_hash(
    server: RunningServer, users: UserDirectory
) -> None:
    user = users.add(unique("nurse"), "nurse", password=PASSWORD, organisation="RX1")
    stored = IdentityStore(server.store.engine).user_by_id(user.id)
    assert stored is not None and stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert not hasattr(user, "password_hash")  # the rest of Bevan never sees the hash


def test_the_right_password_signs_in_and_a_wrong_one_does_not(users: UserDirectory) -> None:
    name = unique("dr")
    users.add(name, "clinician", password=PASSWORD, organisation="RX1", display_name="Dr Who")
    signed_in = users.authenticate(name, PASSWORD)
    assert signed_in is not None
    assert (signed_in.username, signed_in.role, signed_in.organisation) == (
        name,
        "clinician",
        "RX1",
    )
    assert users.authenticate(name, PASSWORD + "!") is None
    assert users.authenticate(unique("nobody"), PASSWORD) is None


def test_usernames_are_not_case_sensitive(users: UserDirectory) -> None:
    name = unique("Reception")
    users.add(name, "receptionist", password=PASSWORD, organisation="rx1")
    assert users.authenticate(name.upper(), PASSWORD) is not None
    found = users.by_username(name.upper())
    assert found is not None and found.organisation == "RX1"


def test_a_disabled_user_cannot_sign_in(users: UserDirectory) -> None:
    name = unique("analyst")
    users.add(name, "analyst", password=PASSWORD, organisation="RX1")
    assert users.disable(name)
    assert users.authenticate(name, PASSWORD) is None
    found = users.by_username(name)
    assert found is not None and found.disabled
    assert not users.disable(unique("nobody"))


def test_a_hash_made_with_weaker_settings_is_replaced_on_sign_in(
    server: RunningServer, users: UserDirectory
) -> None:
    weak = UserDirectory(users.store, PasswordHasher(time_cost=1, memory_cost=8192))
    user = weak.add(unique("nurse"), "nurse", password=PASSWORD, organisation="RX1")
    before = IdentityStore(server.store.engine).user_by_id(user.id)
    assert before is not None and before.password_hash is not None
    assert users.authenticate(user.username, PASSWORD) is not None
    after = IdentityStore(server.store.engine).user_by_id(user.id)
    assert after is not None and after.password_hash is not None
    assert after.password_hash != before.password_hash
    assert not users.hasher.check_needs_rehash(after.password_hash)


def test_each_role_carries_what_it_needs(users: UserDirectory) -> None:
    patient = users.add(unique("pat"), "patient", password=PASSWORD, patient_id="p1")
    assert patient.patient_id == "p1"
    device = users.add(unique("dev"), "device", patient_id="p1", device_id="d1")
    assert (device.patient_id, device.device_id) == ("p1", "d1")
    system = users.add(unique("sys"), "system")
    assert not system.signs_in_with_password
    with pytest.raises(UserError, match="organisation"):
        users.add(unique("dr"), "clinician", password=PASSWORD)
    with pytest.raises(UserError, match="Patient"):
        users.add(unique("pat"), "patient", password=PASSWORD)
    with pytest.raises(UserError, match="Device"):
        users.add(unique("dev"), "device", patient_id="p1")
    with pytest.raises(UserError, match="client credentials"):
        users.add(unique("sys"), "system", password=PASSWORD)
    with pytest.raises(UserError, match="unknown role"):
        users.add(unique("x"), "wizard", password=PASSWORD)
    with pytest.raises(UserError, match="at least"):
        users.add(unique("dr"), "clinician", password="short", organisation="RX1")


def test_a_system_account_cannot_sign_in_with_a_password(users: UserDirectory) -> None:
    name = unique("sys")
    users.add(name, "system")
    assert users.authenticate(name, "") is None


def test_a_username_is_taken_once(users: UserDirectory) -> None:
    name = unique("dr")
    users.add(name, "clinician", password=PASSWORD, organisation="RX1")
    with pytest.raises(UserError, match="taken"):
        users.add(name, "nurse", password=PASSWORD, organisation="RX1")


def test_staff_roles_map_to_national_rbac_codes(users: UserDirectory) -> None:
    assert ROLE_CODES["clinician"].code == "R8000"
    assert ROLE_CODES["nurse"].code == "R8001"
    nurse = users.add(unique("nurse"), "nurse", password=PASSWORD, organisation="RX1")
    assert nurse.rbac is not None
    assert (nurse.rbac.code, nurse.rbac.display) == ("R8001", "Nurse Access Role")
    patient = users.add(unique("pat"), "patient", password=PASSWORD, patient_id="p9")
    assert patient.rbac is None


def test_list_shows_every_account_by_username(users: UserDirectory) -> None:
    names = sorted(unique("zz-list") for _ in range(2))
    for name in names:
        users.add(name, "analyst", password=PASSWORD, organisation="RX1")
    listed = [u.username for u in users.list()]
    assert [n for n in listed if n in names] == names
    assert listed == sorted(listed)


def bevan(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bevan.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_adds_lists_and_disables_users_and_adds_clients(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    added = bevan(
        "user", "add", *data, "--username", "asha", "--role", "clinician",
        "--organisation", "RX1", "--name", "Dr Asha Patel", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert bevan("user", "add", *data, "--username", "feed", "--role", "system").returncode == 0
    refused = bevan(
        "user", "add", *data, "--username", "nia", "--role", "nurse", "--password-stdin"
    )
    assert refused.returncode == 2 and "organisation" in refused.stderr

    listed = bevan("user", "list", *data)
    assert "asha" in listed.stdout and "RX1" in listed.stdout and "feed" in listed.stdout
    assert PASSWORD not in listed.stdout

    assert bevan("user", "disable", *data, "asha").returncode == 0
    assert "disabled" in bevan("user", "list", *data).stdout

    public = bevan(
        "client", "add", *data, "--name", "Portal", "--public",
        "--redirect-uri", "https://portal.example.nhs.uk/callback",
    )  # fmt: skip
    assert public.returncode == 0, public.stderr
    assert "client_id:" in public.stdout and "client_secret" not in public.stdout
    confidential = bevan("client", "add", *data, "--name", "Feed", "--user", "feed")
    assert confidential.returncode == 0, confidential.stderr
    assert "client_secret:" in confidential.stdout
    wrong = bevan("client", "add", *data, "--name", "Bad", "--user", "asha")
    assert wrong.returncode == 2
