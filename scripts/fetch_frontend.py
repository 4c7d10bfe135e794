"""Fetch the web app's browser assets: the NHS.UK frontend's compiled CSS and JavaScript
and htmx, each a pinned npm release checked against its sha512 integrity, unpacked into
src/bevan/web/static/vendor (git-ignored: never committed, fetched by `make install`).

The FHIR API needs none of this; without it the pages still render, unstyled.

    python scripts/fetch_frontend.py            # fetch what is missing or out of date
    python scripts/fetch_frontend.py --check    # exit 1 if the assets are not in place
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "src" / "bevan" / "web" / "static" / "vendor"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity, "sha512-<base64>"
    # Paths inside the tarball's package/ folder, copied to VENDOR/<folder>/...
    files: tuple[str, ...]
    folder: str

    @property
    def tarball(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"


PACKAGES = (
    Package(
        "nhsuk-frontend",
        "10.6.1",
        "sha512-PZorqQZjZx/A26yJoskCL9z0ib6AtkAyF0o4K/RHr8zRrJyXrUOCnMbjy0VNXsGO4tfTNMwqlkwATKs4a0xayw==",
        (
            "dist/nhsuk/nhsuk-frontend.min.css",
            "dist/nhsuk/nhsuk-frontend.min.js",
            "dist/nhsuk/assets/",
        ),
        "nhsuk",
    ),
    Package(
        "htmx.org",
        "2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        ("dist/htmx.min.js",),
        "htmx",
    ),
)


def check_integrity(data: bytes, integrity: str) -> None:
    """Raise ValueError unless data's sha512 is the pinned integrity value."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise ValueError(f"only sha512 integrity is accepted, not {algorithm}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise ValueError(f"integrity mismatch: expected sha512-{expected}, got sha512-{actual}")


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (a fixed https URL)
        data: bytes = response.read()
    return data


def unpack(package: Package, data: bytes, vendor: Path) -> None:
    """Copy the package's listed dist files from its tarball into vendor/<folder>."""
    target = vendor / package.folder
    if target.exists():
        shutil.rmtree(target)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            inner = member.name.removeprefix("package/")
            if not member.isfile() or not any(
                inner == f or (f.endswith("/") and inner.startswith(f)) for f in package.files
            ):
                continue
            # Flatten dist/<folder>/ away: the files are served from /assets/vendor/<folder>/.
            relative = inner.removeprefix("dist/").removeprefix(f"{package.folder}/")
            destination = (target / relative).resolve()
            if not destination.is_relative_to(target.resolve()):
                raise ValueError(f"{member.name} would be unpacked outside {target}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            data_out = source.read()
            if destination.suffix == ".css":
                data_out = without_remote_fonts(data_out)
            destination.write_bytes(data_out)
    (target / "VERSION.json").write_text(
        json.dumps(
            {
                "name": package.name,
                "version": package.version,
                "integrity": package.integrity,
                "fonts": "local",  # remote @font-face rules taken out (see below)
            }
        )
    )


# The pages' Content-Security-Policy loads nothing from other sites. The NHS.UK
# frontend's web font (Frutiger) is served only from NHS England's asset host, so its
# @font-face rules are taken out of the stylesheet and text is set in the fallback
# (Arial), as the design system itself does wherever the font cannot load.
_REMOTE_FONT = re.compile(rb"@font-face\{[^}]*https://[^}]*\}")


def without_remote_fonts(css: bytes) -> bytes:
    """Return a stylesheet without the @font-face rules that load fonts from elsewhere."""
    return _REMOTE_FONT.sub(b"", css)


def in_place(package: Package, vendor: Path) -> bool:
    stamp = vendor / package.folder / "VERSION.json"
    if not stamp.exists():
        return False
    found = json.loads(stamp.read_text())
    return bool(found.get("integrity") == package.integrity and found.get("fonts") == "local")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether they are in place")
    parser.add_argument("--vendor", type=Path, default=VENDOR)
    args = parser.parse_args(argv)
    missing = [p for p in PACKAGES if not in_place(p, args.vendor)]
    if args.check:
        for package in missing:
            print(f"{package.name} {package.version} is not in {args.vendor}", file=sys.stderr)
        return 1 if missing else 0
    for package in missing:
        print(f"Fetching {package.name} {package.version} ...", flush=True)
        data = download(package.tarball)
        check_integrity(data, package.integrity)
        unpack(package, data, args.vendor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
