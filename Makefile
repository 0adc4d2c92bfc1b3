# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: run test audit-deps lint fmt demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The demo's signing key for the audit chain's checkpoints: a file outside the database (var/
# holds the SQLite file too; in production keep it where the database's operators cannot).
AUDIT_KEY := var/audit-signing.key
run: export REGISTRY_AUDIT_SIGNING_KEY := $(AUDIT_KEY)

$(AUDIT_KEY): | $(STAMP)
	$(BIN)/ssreg audit keygen $(AUDIT_KEY)

run: $(STAMP) $(AUDIT_KEY)
	$(BIN)/ssreg migrate
	$(BIN)/ssreg seed
	@echo "serving on http://127.0.0.1:8000  (API docs: http://127.0.0.1:8000/docs)"
	$(BIN)/ssreg serve --host 127.0.0.1 --port 8000

# Browser tests drive Debian's Chromium (never a downloaded browser); installed when missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -q && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy app
	$(BIN)/pytest -q -n 2

# Known vulnerabilities in the installed dependencies (pip-audit; needs the package registry).
# Findings fail unless tools/audit_ignores.toml lists them with a reason and a review date.
audit-deps: $(STAMP)
	$(BIN)/python tools/audit_dependencies.py

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)
	$(BIN)/ssreg demo

bench: $(STAMP)
	$(BIN)/python bench/pds.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
