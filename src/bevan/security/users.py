"""User accounts: who may sign in, in which role, for which organisation or patient.

Passwords are kept only as Argon2id hashes (argon2-cffi's defaults, which follow RFC
9106). Checking a password for an unknown username still runs one hash, so the time a
sign-in takes does not say whether the username exists.
"""

from __future__ import annotations

import builtins
import re
import time
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine

from bevan.security.tokens import ROLES
from bevan.store.identity import IdentityStore, UserAccount, UsernameTaken

STAFF_ROLES = ("clinician", "nurse", "receptionist", "analyst", "privacy-officer")
# Roles that never sign in with a password: they use client credentials.
SERVICE_ROLES = ("system", "device")
MIN_PASSWORD_LENGTH = 12
RBAC_SYSTEM = "https://fhir.nhs.uk/Id/sds-role-code"


@dataclass(frozen=True)
class RoleCode:
    """A national RBAC role (NHS Spine National RBAC Database) for audit and tokens."""

    code: str
    display: str
    system: str = RBAC_SYSTEM


# From the National RBAC Database rationalised access roles (and the NCRS role subset
# for the privacy officer). Patients, devices and systems hold no RBAC role.
ROLE_CODES: dict[str, RoleCode] = {
    "clinician": RoleCode("R8000", "Clinical Practitioner Access Role"),
    "nurse": RoleCode("R8001", "Nurse Access Role"),
    "receptionist": RoleCode("R8009", "Receptionist Access Role"),
    "analyst": RoleCode("R8012", "Information Officer Access Role"),
    "privacy-officer": RoleCode("R0001", "Privacy Officer"),
}

# The most each role may be granted (SMART v2 scopes); a client and the user's request
# can only narrow this. Which patients a user may see is decided per request, not here.
ROLE_SCOPES: dict[str, str] = {
    "system": "system/*.cruds",
    "clinician": "user/*.cruds offline_access online_access",
    "nurse": "user/*.cruds offline_access online_access",
    "receptionist": " ".join(
        [
            "user/Patient.cruds",
            "user/RelatedPerson.cruds",
            "user/Appointment.cruds",
            "user/AppointmentResponse.cruds",
            "user/Slot.crus",
            "user/Schedule.rs",
            "user/Encounter.rs",
            "user/Practitioner.rs",
            "user/PractitionerRole.rs",
            "user/Organization.rs",
            "user/Location.rs",
            "user/HealthcareService.rs",
            "offline_access",
            "online_access",
        ]
    ),
    "analyst": "user/*.rs offline_access online_access",
    "privacy-officer": " ".join(
        [
            "user/AuditEvent.rs",
            "user/Consent.cruds",
            "user/Patient.rs",
            "user/Practitioner.rs",
            "user/Organization.rs",
            "offline_access",
            "online_access",
        ]
    ),
    "patient": " ".join(
        [
            "patient/*.rs",
            "patient/Observation.c",
            "patient/QuestionnaireResponse.cru",
            "launch/patient",
            "offline_access",
            "online_access",
        ]
    ),
    "device": "patient/Observation.cru patient/Device.rs patient/Patient.r",
}

_ODS_CODE = re.compile(r"^[A-Z0-9]{3,10}$")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{1,199}$")


class UserError(ValueError):
    """The account asked for cannot be made as given; the text says why."""


@dataclass(frozen=True)
class User:
    """A user account as the rest of Bevan sees it (never with its password hash)."""

    id: str
    username: str
    role: str
    organisation: str | None = None  # ODS code
    patient_id: str | None = None
    device_id: str | None = None
    display_name: str | None = None
    disabled: bool = False
    created: float = 0.0

    @property
    def rbac(self) -> RoleCode | None:
        """Return the national RBAC role for this user's role, if it has one."""
        return ROLE_CODES.get(self.role)

    @property
    def signs_in_with_password(self) -> bool:
        return self.role not in SERVICE_ROLES


def _public(account: UserAccount) -> User:
    return User(
        id=account.id,
        username=account.username,
        role=account.role,
        organisation=account.organisation,
        patient_id=account.patient_id,
        device_id=account.device_id,
        display_name=account.display_name,
        disabled=account.disabled,
        created=account.created,
    )


def normalise_username(username: str) -> str:
    """Return the stored form of a username: usernames are not case-sensitive."""
    return username.strip().lower()


class UserDirectory:
    """Adds, finds, checks and disables user accounts."""

    def __init__(self, store: IdentityStore, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        # Compared against when the username is unknown, so the answer takes as long.
        self._decoy_hash = self.hasher.hash(uuid.uuid4().hex)

    @classmethod
    def on(cls, engine: Engine) -> UserDirectory:
        """Return the directory kept in engine's database."""
        return cls(IdentityStore(engine))

    def add(
        self,
        username: str,
        role: str,
        *,
        password: str | None = None,
        organisation: str | None = None,
        patient_id: str | None = None,
        device_id: str | None = None,
        display_name: str | None = None,
    ) -> User:
        """Return a new account; UserError if the details do not fit the role."""
        username = normalise_username(username)
        if not _USERNAME.match(username):
            raise UserError(
                "a username is 2 to 200 letters, digits or . _ @ + -, starting with a "
                f"letter or digit (not {username!r})"
            )
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if organisation is not None:
            organisation = organisation.strip().upper()
            if not _ODS_CODE.match(organisation):
                raise UserError(f"{organisation!r} is not an ODS code (3 to 10 letters or digits)")
        if role in STAFF_ROLES and organisation is None:
            raise UserError(f"a {role} needs an organisation (the ODS code they work for)")
        if role in ("patient", "device") and not patient_id:
            raise UserError(f"a {role} account needs the id of its Patient")
        if role == "device" and not device_id:
            raise UserError("a device account needs the id of its Device")
        if role not in ("patient", "device") and patient_id:
            raise UserError("only patient and device accounts belong to a Patient")
        if role != "device" and device_id:
            raise UserError("only device accounts name a Device")
        if role in SERVICE_ROLES:
            if password is not None:
                raise UserError(
                    f"a {role} account signs in with client credentials, not a password"
                )
        else:
            check_password_strength(password)
        account = UserAccount(
            id=str(uuid.uuid4()),
            username=username,
            password_hash=self.hasher.hash(password) if password is not None else None,
            role=role,
            organisation=organisation,
            patient_id=patient_id,
            device_id=device_id,
            display_name=display_name,
            disabled=False,
            created=time.time(),
        )
        try:
            self.store.add_user(account)
        except UsernameTaken:
            raise UserError(f"the username {username!r} is taken") from None
        return _public(account)

    def authenticate(self, username: str, password: str) -> User | None:
        """Return the user if the password is theirs and the account may sign in, else None.

        Disabled accounts and accounts without a password (systems, devices) are refused.
        A hash made with weaker parameters than today's is replaced on success.
        """
        account = self.store.user_by_username(normalise_username(username))
        if account is None or account.password_hash is None:
            self._verify(self._decoy_hash, password)
            return None
        if not self._verify(account.password_hash, password) or account.disabled:
            return None
        if self.hasher.check_needs_rehash(account.password_hash):
            self.store.set_password_hash(account.id, self.hasher.hash(password))
        return _public(account)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def set_password(self, username: str, password: str) -> None:
        """Replace a user's password; UserError if there is no such user or it is too weak."""
        account = self.store.user_by_username(normalise_username(username))
        if account is None:
            raise UserError(f"there is no user {username!r}")
        if account.role in SERVICE_ROLES:
            raise UserError(f"a {account.role} account signs in with client credentials")
        check_password_strength(password)
        self.store.set_password_hash(account.id, self.hasher.hash(password))

    def by_username(self, username: str) -> User | None:
        account = self.store.user_by_username(normalise_username(username))
        return _public(account) if account else None

    def by_id(self, user_id: str) -> User | None:
        account = self.store.user_by_id(user_id)
        return _public(account) if account else None

    def list(self) -> builtins.list[User]:
        """Return every account, by username."""
        return [_public(account) for account in self.store.users()]

    def disable(self, username: str) -> bool:
        """Stop an account signing in or refreshing tokens; False if there is no such user."""
        return self.store.set_user_disabled(normalise_username(username), True)

    def enable(self, username: str) -> bool:
        return self.store.set_user_disabled(normalise_username(username), False)


def check_password_strength(password: str | None) -> None:
    """Raise UserError unless password is long enough to be a sign-in password."""
    if password is None or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
