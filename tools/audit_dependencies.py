"""Known vulnerabilities in the installed dependencies: pip-audit, and what it could not audit.

Run ``make audit-deps`` (``.ci/run`` does). It runs pip-audit over the environment this
interpreter belongs to (the project's virtualenv; the project itself, installed editable, is
not on PyPI and is skipped), then:

- a dependency pip-audit reports as "not found on PyPI and could not be audited" (its lookup of
  ``/pypi/<name>/<version>/json`` failed - the registry this workplace reaches answers 404 to
  every such lookup) is looked up at ``/pypi/<name>/json``: when the installed version is the
  project's latest, that record's ``vulnerabilities`` are the installed version's; otherwise
  the dependency stays *not audited* and is named;
- every vulnerability found fails the run unless ``tools/audit_ignores.toml`` lists it with a
  reason and a ``review_by`` date not yet passed (an entry past its date fails the run too);
- a run that could audit no dependency at all fails (no registry, or a registry that answers
  nothing: a pass would mean nothing), and ``--strict`` fails on any dependency not audited.

Exit 0: nothing to act on; 1: something to act on, printed; 2: pip-audit could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
IGNORES = HERE / "audit_ignores.toml"
PYPI = "https://pypi.org/pypi"
NOT_FOUND = "not found on PyPI"


@dataclass(frozen=True)
class Vulnerability:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]

    @property
    def ids(self) -> set[str]:
        return {self.id, *self.aliases}

    def describe(self) -> str:
        fix = f"fixed in {', '.join(self.fix_versions)}" if self.fix_versions else "no fix"
        also = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.package} {self.version}: {self.id}{also}, {fix}"


@dataclass(frozen=True)
class Ignore:
    id: str
    package: str
    reason: str
    review_by: dt.date

    def covers(self, vuln: Vulnerability) -> bool:
        return self.package.lower() == vuln.package.lower() and self.id in vuln.ids


@dataclass
class Audit:
    audited_by_pip_audit: list[str] = field(default_factory=list)
    audited_by_latest_record: list[str] = field(default_factory=list)
    not_audited: list[tuple[str, str]] = field(default_factory=list)  # name, why
    vulnerabilities: list[Vulnerability] = field(default_factory=list)

    @property
    def audited(self) -> int:
        return len(self.audited_by_pip_audit) + len(self.audited_by_latest_record)


def load_ignores(path: Path) -> list[Ignore]:
    """The ignore entries; ValueError naming the entry that lacks a field."""
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("ignore", [])
    ignores = []
    for n, entry in enumerate(entries, 1):
        missing = [k for k in ("id", "package", "reason", "review_by") if not entry.get(k)]
        if missing:
            raise ValueError(f"{path.name} entry {n} lacks {', '.join(missing)}")
        if not isinstance(entry["review_by"], dt.date):
            raise ValueError(f"{path.name} entry {n}: review_by must be a date (2027-03-01)")
        ignores.append(
            Ignore(entry["id"], entry["package"], entry["reason"].strip(), entry["review_by"])
        )
    return ignores


def run_pip_audit() -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "pip_audit",
        "--skip-editable",
        "--format=json",
        "--progress-spinner=off",
        "--desc=off",
        "--aliases=on",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # pip-audit exits 1 when it found vulnerabilities; its JSON is on stdout either way.
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"pip-audit failed ({done.returncode}): {done.stderr[-2000:]}") from None
    return report


def latest_record(name: str) -> dict[str, Any] | None:
    """The project's record on PyPI (its latest release's vulnerabilities included)."""
    try:
        with urllib.request.urlopen(f"{PYPI}/{name}/json", timeout=60) as response:
            record: dict[str, Any] = json.load(response)
            return record
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError):
        return None


def audit(
    report: dict[str, Any],
    installed: dict[str, str],
    lookup: Callable[[str], dict[str, Any] | None],
) -> Audit:
    """Combine pip-audit's report with the latest-release records of what it skipped."""
    result = Audit()
    skipped = []
    for dep in report.get("dependencies", []):
        name = dep["name"]
        reason = dep.get("skip_reason")
        if reason is None:
            result.audited_by_pip_audit.append(name)
            result.vulnerabilities += [
                Vulnerability(
                    name,
                    dep["version"],
                    v["id"],
                    tuple(v.get("aliases") or ()),
                    tuple(v.get("fix_versions") or ()),
                )
                for v in dep.get("vulns", [])
            ]
        elif NOT_FOUND in reason:
            skipped.append(name)
        elif "editable" not in reason:
            result.not_audited.append((name, reason))
    with ThreadPoolExecutor(max_workers=8) as pool:
        records = dict(zip(skipped, pool.map(lookup, skipped), strict=True))
    for name in skipped:
        version = installed.get(_normal(name))
        record = records[name]
        if record is None:
            result.not_audited.append((name, "no record on the registry"))
            continue
        latest = record.get("info", {}).get("version")
        if version is None or latest != version:
            why = f"{version} installed, {latest} latest: no record of {version} to ask"
            result.not_audited.append((name, why))
            continue
        result.audited_by_latest_record.append(name)
        for v in record.get("vulnerabilities") or []:
            if v.get("withdrawn"):
                continue
            result.vulnerabilities.append(
                Vulnerability(
                    name,
                    version,
                    v["id"],
                    tuple(v.get("aliases") or ()),
                    tuple(v.get("fixed_in") or ()),
                )
            )
    return result


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_versions() -> dict[str, str]:
    return {
        _normal(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }


def judge(
    result: Audit, ignores: Iterable[Ignore], *, today: dt.date, strict: bool
) -> tuple[list[str], list[str]]:
    """(lines to print, failures): what the run found and what must be acted on."""
    ignores = list(ignores)
    lines = [
        f"audited {result.audited} dependencies: {len(result.audited_by_pip_audit)} by "
        f"pip-audit, {len(result.audited_by_latest_record)} by their latest release's record"
    ]
    failures = []
    if result.not_audited:
        lines.append(f"NOT audited: {len(result.not_audited)}")
        lines += [f"  {name}: {why}" for name, why in sorted(result.not_audited)]
        if strict:
            failures.append(f"{len(result.not_audited)} dependencies could not be audited")
    if result.audited == 0:
        failures.append("no dependency could be audited: the result would mean nothing")
    used = set()
    for vuln in result.vulnerabilities:
        entry = next((i for i in ignores if i.covers(vuln)), None)
        if entry is None:
            failures.append(f"vulnerable: {vuln.describe()}")
            continue
        used.add(entry)
        lines.append(f"ignored: {vuln.describe()} - {entry.reason} (review by {entry.review_by})")
    for entry in ignores:
        if entry.review_by < today:
            failures.append(
                f"the ignore of {entry.id} ({entry.package}) was due for review on "
                f"{entry.review_by}: assess it again and update or remove the entry"
            )
        elif entry not in used:
            lines.append(f"ignore entry no longer needed: {entry.id} ({entry.package})")
    if not result.vulnerabilities:
        lines.append("no known vulnerabilities in what was audited")
    return lines, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ignores", type=Path, default=IGNORES)
    parser.add_argument("--strict", action="store_true", help="fail on any dependency not audited")
    args = parser.parse_args(argv)
    ignores = load_ignores(args.ignores)
    try:
        report = run_pip_audit()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    result = audit(report, installed_versions(), latest_record)
    lines, failures = judge(result, ignores, today=dt.date.today(), strict=args.strict)
    for line in lines:
        print(line)
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
