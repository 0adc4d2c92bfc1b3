"""The bundle verifier runs on an auditor's machine with nothing installed: it imports the
standard library only, and says how it was called wrong."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from app.services import bundle_verifier


def test_the_verifier_imports_the_standard_library_only() -> None:
    tree = ast.parse(Path(bundle_verifier.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: the file is copied out of the package"
            assert node.module is not None
            imported.add(node.module.split(".")[0])
    assert imported, "the parse found no imports at all"
    outside = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert outside == set(), f"verify.py must use the standard library only, not {outside}"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", bundle_verifier.__file__, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_verifier_without_a_bundle_prints_its_usage() -> None:
    done = _run()
    assert done.returncode == 2
    assert "usage: python verify.py" in done.stderr


def test_an_unreadable_bundle_is_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    done = _run(str(junk))
    assert done.returncode == 2
    assert "cannot read the bundle" in done.stderr


def test_an_empty_directory_fails_naming_the_missing_files(tmp_path: Path) -> None:
    done = _run(str(tmp_path))
    assert done.returncode == 1
    assert "FAIL manifest.json: missing from the bundle" in done.stdout
    assert "FAIL audit/chain_segment.json: missing from the bundle" in done.stdout
