"""The dependency audit's rules (tools/audit_dependencies.py), on made-up reports: no network."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tools.audit_dependencies import IGNORES, Ignore, audit, judge, load_ignores

TODAY = dt.date(2026, 12, 2)


def _report(*deps: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(deps), "fixes": []}


AUDITED_CLEAN = {"name": "jinja2", "version": "3.1.6", "vulns": []}
AUDITED_VULN = {
    "name": "urllib3",
    "version": "2.0.0",
    "vulns": [{"id": "GHSA-aaaa", "fix_versions": ["2.0.7"], "aliases": ["CVE-2023-1"]}],
}
SKIPPED = {"name": "numpy", "skip_reason": "Dependency not found on PyPI and could not be audited"}
EDITABLE = {"name": "softsensor-registry", "skip_reason": "distribution marked as editable"}


def _latest(version: str, vulns: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"info": {"version": version}, "vulnerabilities": vulns or []}


def test_a_vulnerability_fails_the_run_naming_it_and_its_fix() -> None:
    result = audit(_report(AUDITED_CLEAN, AUDITED_VULN), {}, lambda name: None)
    lines, failures = judge(result, [], today=TODAY, strict=False)
    assert failures == ["vulnerable: urllib3 2.0.0: GHSA-aaaa (CVE-2023-1), fixed in 2.0.7"]
    assert lines[0].startswith("audited 2 dependencies")


def test_a_skipped_dependency_at_its_latest_version_is_audited_from_its_record() -> None:
    vuln = {"id": "PYSEC-1", "aliases": ["CVE-2"], "fixed_in": [], "withdrawn": None}
    result = audit(
        _report(SKIPPED, EDITABLE), {"numpy": "2.5.5"}, lambda n: _latest("2.5.5", [vuln])
    )
    assert result.audited_by_latest_record == ["numpy"]
    _, failures = judge(result, [], today=TODAY, strict=False)
    assert failures == ["vulnerable: numpy 2.5.5: PYSEC-1 (CVE-2), no fix"]


def test_a_withdrawn_advisory_does_not_count() -> None:
    vuln = {"id": "PYSEC-1", "aliases": [], "fixed_in": [], "withdrawn": "2026-01-01"}
    result = audit(_report(SKIPPED), {"numpy": "2.5.5"}, lambda n: _latest("2.5.5", [vuln]))
    assert judge(result, [], today=TODAY, strict=False)[1] == []


def test_an_older_version_than_the_latest_is_named_not_audited_and_fails_only_strict() -> None:
    result = audit(_report(AUDITED_CLEAN, SKIPPED), {"numpy": "2.4.6"}, lambda n: _latest("2.5.5"))
    assert result.not_audited == [
        ("numpy", "2.4.6 installed, 2.5.5 latest: no record of 2.4.6 to ask")
    ]
    lines, failures = judge(result, [], today=TODAY, strict=False)
    assert "NOT audited: 1" in lines
    assert failures == []
    assert judge(result, [], today=TODAY, strict=True)[1] == ["1 dependencies could not be audited"]


def test_a_run_that_audited_nothing_fails() -> None:
    """pip-audit alone says "No known vulnerabilities found" and exits 0 when every lookup
    failed; that must not pass."""
    result = audit(_report(SKIPPED, EDITABLE), {"numpy": "2.5.5"}, lambda n: None)
    _, failures = judge(result, [], today=TODAY, strict=False)
    assert failures == ["no dependency could be audited: the result would mean nothing"]


def test_an_ignore_with_a_reason_and_a_date_to_come_lets_a_finding_pass() -> None:
    result = audit(_report(AUDITED_VULN), {}, lambda n: None)
    entry = Ignore("CVE-2023-1", "urllib3", "only used for PyPI lookups in CI", dt.date(2027, 1, 1))
    lines, failures = judge(result, [entry], today=TODAY, strict=False)
    assert failures == []
    assert any(line.startswith("ignored: urllib3 2.0.0: GHSA-aaaa") for line in lines)


def test_an_ignore_past_its_review_date_fails() -> None:
    result = audit(_report(AUDITED_VULN), {}, lambda n: None)
    entry = Ignore("GHSA-aaaa", "urllib3", "assessed", dt.date(2026, 11, 30))
    _, failures = judge(result, [entry], today=TODAY, strict=False)
    assert len(failures) == 1
    assert "due for review on 2026-11-30" in failures[0]


def test_ignore_entries_need_a_reason_and_a_date(tmp_path: Path) -> None:
    path = tmp_path / "ignores.toml"
    path.write_text('[[ignore]]\nid = "X"\npackage = "p"\nreview_by = 2027-01-01\n')
    with pytest.raises(ValueError, match="lacks reason"):
        load_ignores(path)
    path.write_text('[[ignore]]\nid = "X"\npackage = "p"\nreason = "r"\nreview_by = "soon"\n')
    with pytest.raises(ValueError, match="must be a date"):
        load_ignores(path)


def test_the_project_ignore_file_reads() -> None:
    assert all(entry.review_by for entry in load_ignores(IGNORES))
