"""The signing key: made once per data directory, even by processes starting together."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bevan.security.tokens import KEY_FILE, TokenAuthority


def test_a_process_that_finds_the_key_made_meanwhile_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers starting together both see no key and each make one: the one that
    comes second keeps the first one's, and tokens from either verify in both."""
    first = TokenAuthority.in_directory(tmp_path)
    key = (tmp_path / KEY_FILE).read_bytes()
    monkeypatch.setattr(Path, "exists", lambda self: False)  # it looked before the first wrote
    second = TokenAuthority.in_directory(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / KEY_FILE).read_bytes() == key
    assert second.verify(first.issue("clinician-1", "clinician")).subject == "clinician-1"
    assert first.verify(second.issue("clinician-2", "clinician")).subject == "clinician-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]  # nothing left aside
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
