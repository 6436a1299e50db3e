# Everything installs from nothing: `make demo` and `make test` are the two commands.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NPM_STAMP := node_modules/.installed

.PHONY: install demo test lint bench synth deploy up clean

install: $(STAMP) $(NPM_STAMP)

$(STAMP): requirements.txt requirements-dev.txt functions/requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	$(VENV)/bin/mlops demo

# Three processes side by side: the lint and type gate, the tests of the synthesized app and the
# local cloud (-m app; tests/conftest.py marks them: they mostly wait for the local cloud's own
# processes), and the other tests. Each one's output is shown whole; any failure fails the target.
test: install
	@$(MAKE) --no-print-directory lint > .lint.log 2>&1 & lint=$$!; \
	$(VENV)/bin/pytest -q -m app > .pytest-app.log 2>&1 & app=$$!; \
	$(VENV)/bin/pytest -q -m "not app"; unit=$$?; \
	wait $$app; app_status=$$?; wait $$lint; lint_status=$$?; \
	echo "--- the synthesized app and the local cloud (pytest -m app):"; cat .pytest-app.log; \
	echo "--- ruff and mypy:"; cat .lint.log; rm -f .pytest-app.log .lint.log; \
	test $$unit -eq 0 && test $$app_status -eq 0 && test $$lint_status -eq 0

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench

synth: install
	npx cdk synth --quiet

deploy: install
	npx cdk deploy

up: install
	$(VENV)/bin/mlops up

clean:
	rm -rf $(VENV) node_modules cdk.out .mlops
