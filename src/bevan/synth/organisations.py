"""The shared services patients are registered with: GP practices, NHS trusts, their staff and sites.

One NHS trust per locality in data/places.json, each with a hospital site and a virtual
ward, and a fixed number of GP practices; the directory depends on the seed only, never
on the population size, so patient i always points at the same practice.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from itertools import accumulate
from typing import Any

from bevan.synth import codes
from bevan.synth.seeds import derived_seed

PRACTICES_PER_TRUST = 10
GPS_PER_PRACTICE = 4
WARD_CLINICIANS_PER_TRUST = 3
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward part of UK postcodes


@dataclass(frozen=True, slots=True)
class Locality:
    name: str
    county: str
    region_letter: str
    districts: tuple[str, ...]
    weight: int


@dataclass(frozen=True, slots=True)
class Practitioner:
    id: str
    family: str
    given: str
    prefix: str


@dataclass(frozen=True, slots=True)
class Practice:
    """A GP practice: an Organization with an ODS code, a surgery Location and GPs."""

    ods_code: str
    name: str
    locality: Locality
    address_line: str
    postcode: str
    trust_code: str
    gps: tuple[Practitioner, ...]
    list_weight: float

    @property
    def location_id(self) -> str:
        return f"{self.ods_code}-surgery"


@dataclass(frozen=True, slots=True)
class Trust:
    """An NHS trust: a hospital site, a virtual ward and the clinicians who run it."""

    ods_code: str
    name: str
    locality: Locality
    postcode: str
    clinicians: tuple[Practitioner, ...]

    @property
    def hospital_location_id(self) -> str:
        return f"{self.ods_code}-hospital"

    @property
    def virtual_ward_location_id(self) -> str:
        return f"{self.ods_code}-virtual-ward"


@dataclass(frozen=True, slots=True)
class ServiceDirectory:
    trusts: tuple[Trust, ...]
    practices: tuple[Practice, ...]
    practice_cum_weights: tuple[float, ...]

    def trust(self, ods_code: str) -> Trust:
        for trust in self.trusts:
            if trust.ods_code == ods_code:
                return trust
        raise KeyError(ods_code)

    def draw_practice(self, rng: random.Random) -> Practice:
        """Return a practice chosen in proportion to its list size."""
        return rng.choices(self.practices, cum_weights=self.practice_cum_weights)[0]


@cache
def load_data(name: str) -> dict[str, Any]:
    """Return one of the JSON tables in synth/data."""
    text = resources.files("bevan.synth").joinpath(f"data/{name}.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def localities() -> tuple[Locality, ...]:
    return tuple(
        Locality(
            name=row["name"],
            county=row["county"],
            region_letter=row["region_letter"],
            districts=tuple(row["districts"]),
            weight=row["weight"],
        )
        for row in load_data("places")["localities"]
    )


def postcode(rng: random.Random, district: str) -> str:
    """Return a postcode in the district, e.g. LS6 2QT."""
    return (
        f"{district} {rng.randint(1, 9)}{rng.choice(_INWARD_LETTERS)}{rng.choice(_INWARD_LETTERS)}"
    )


def _person(rng: random.Random, id_: str, prefix: str) -> Practitioner:
    names = load_data("names")
    given = rng.choice(names["given_female"] if rng.random() < 0.55 else names["given_male"])
    return Practitioner(id=id_, family=rng.choice(names["family"]), given=given, prefix=prefix)


@lru_cache(maxsize=8)
def service_directory(seed: int) -> ServiceDirectory:
    """Return the trusts and practices for a seed."""
    rng = random.Random(derived_seed("services", seed))
    places = load_data("places")
    streets = load_data("names")["streets"]
    trusts: list[Trust] = []
    practices: list[Practice] = []
    weights: list[float] = []
    used_trust_codes: set[str] = set()
    used_practice_codes: set[str] = set()
    for locality in localities():
        code = ""
        while not code or code in used_trust_codes:
            code = f"R{rng.choice('ABCDEFGHJKLMNPQTVWXY')}{rng.randint(1, 9)}"
        used_trust_codes.add(code)
        clinicians = tuple(
            _person(rng, f"{code}-clinician-{n}", "Dr" if n == 1 else "")
            for n in range(1, WARD_CLINICIANS_PER_TRUST + 1)
        )
        trusts.append(
            Trust(
                ods_code=code,
                name=rng.choice(places["trust_name_patterns"]).format(city=locality.name),
                locality=locality,
                postcode=postcode(rng, rng.choice(locality.districts)),
                clinicians=clinicians,
            )
        )
        for _ in range(PRACTICES_PER_TRUST):
            ods = ""
            while not ods or ods in used_practice_codes:
                ods = f"{locality.region_letter}{rng.randint(81001, 89999)}"
            used_practice_codes.add(ods)
            street = rng.choice(streets)
            name = rng.choice(places["practice_name_patterns"]).format(
                street=street,
                place=rng.choice(places["practice_places"]),
            )
            gps = tuple(_person(rng, f"{ods}-gp-{n}", "Dr") for n in range(1, GPS_PER_PRACTICE + 1))
            practices.append(
                Practice(
                    ods_code=ods,
                    name=name,
                    locality=locality,
                    address_line=f"{rng.randint(1, 120)} {street}",
                    postcode=postcode(rng, rng.choice(locality.districts)),
                    trust_code=code,
                    gps=gps,
                    list_weight=locality.weight * rng.uniform(0.5, 1.5),
                )
            )
            weights.append(practices[-1].list_weight)
    return ServiceDirectory(
        trusts=tuple(trusts),
        practices=tuple(practices),
        practice_cum_weights=tuple(accumulate(weights)),
    )


def _organization(
    ods_code: str, name: str, kind: tuple[str, str], line: str, city: str, postcode_: str
) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": ods_code,
        "identifier": [{"system": codes.ODS, "value": ods_code}],
        "active": True,
        "type": [
            codes.concept(
                "http://terminology.hl7.org/CodeSystem/organization-type", kind[0], kind[1]
            )
        ],
        "name": name,
        "address": [{"line": [line], "city": city, "postalCode": postcode_, "country": "GB"}],
    }


def _practitioner(person: Practitioner) -> dict[str, Any]:
    name: dict[str, Any] = {"use": "official", "family": person.family, "given": [person.given]}
    if person.prefix:
        name["prefix"] = [person.prefix]
    return {
        "resourceType": "Practitioner",
        "id": person.id,
        "identifier": [
            {
                "system": codes.SDS_USER,
                "value": str(derived_seed("sds", person.id) % 900_000_000_000 + 100_000_000_000),
            }
        ],
        "active": True,
        "name": [name],
    }


def _location(
    id_: str, name: str, organization: str, kind: tuple[str, str, str], mode_virtual: bool = False
) -> dict[str, Any]:
    location: dict[str, Any] = {
        "resourceType": "Location",
        "id": id_,
        "status": "active",
        "name": name,
        "mode": "instance",
        "type": [codes.concept(kind[0], kind[1], kind[2])],
        "managingOrganization": {"reference": f"Organization/{organization}"},
    }
    if mode_virtual:
        location["physicalType"] = codes.concept(
            "http://terminology.hl7.org/CodeSystem/location-physical-type", "vi", "Virtual"
        )
    return location


_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"


def directory_resources(directory: ServiceDirectory) -> list[dict[str, Any]]:
    """Return the Organization, Practitioner and Location resources of a directory."""
    out: list[dict[str, Any]] = []
    for trust in directory.trusts:
        out.append(
            _organization(
                trust.ods_code,
                trust.name,
                ("prov", "Healthcare Provider"),
                "Hospital Road",
                trust.locality.name,
                trust.postcode,
            )
        )
        out.append(
            _location(
                trust.hospital_location_id,
                f"{trust.locality.name} General Hospital",
                trust.ods_code,
                (_ROLE_CODE, "HOSP", "Hospital"),
            )
        )
        out.append(
            _location(
                trust.virtual_ward_location_id,
                f"{trust.locality.name} Virtual Ward",
                trust.ods_code,
                (_ROLE_CODE, "PTRES", "Patient's Residence"),
                mode_virtual=True,
            )
        )
        out.extend(_practitioner(person) for person in trust.clinicians)
    for practice in directory.practices:
        out.append(
            _organization(
                practice.ods_code,
                practice.name,
                ("prov", "Healthcare Provider"),
                practice.address_line,
                practice.locality.name,
                practice.postcode,
            )
        )
        out.append(
            _location(
                practice.location_id,
                practice.name,
                practice.ods_code,
                (_ROLE_CODE, "PC", "primary care clinic"),
            )
        )
        out.extend(_practitioner(person) for person in practice.gps)
    return out
