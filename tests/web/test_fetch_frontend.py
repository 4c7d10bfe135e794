"""The install step's browser assets: a tarball is used only if its sha512 is the pinned
one, and the stylesheet loads no font from other sites."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from scripts.fetch_frontend import Package, check_integrity, in_place, unpack


def _tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_tarball_whose_digest_is_not_the_pinned_one_is_refused() -> None:
    data = b"the real release"
    pinned = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    check_integrity(data, pinned)
    with pytest.raises(ValueError, match="integrity mismatch"):
        check_integrity(b"a tampered release", pinned)
    with pytest.raises(ValueError, match="only sha512"):
        check_integrity(data, "sha1-abc")


def test_only_the_listed_files_are_unpacked_and_remote_fonts_are_taken_out(tmp_path: Path) -> None:
    css = (
        b"@font-face{font-family:F;src:url(https://assets.nhs.uk/f.woff2)}"
        b".nhsuk-body{color:#212b32}"
    )
    data = _tarball(
        {"dist/kit/kit.min.css": css, "dist/kit/kit.min.js": b"1", "src/other.scss": b"x"}
    )
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    package = Package(
        "kit", "1.0.0", digest, ("dist/kit/kit.min.css", "dist/kit/kit.min.js"), "kit"
    )
    assert not in_place(package, tmp_path)
    unpack(package, data, tmp_path)
    assert sorted(p.name for p in (tmp_path / "kit").iterdir()) == [
        "VERSION.json",
        "kit.min.css",
        "kit.min.js",
    ]
    assert (tmp_path / "kit" / "kit.min.css").read_bytes() == b".nhsuk-body{color:#212b32}"
    assert in_place(package, tmp_path)
