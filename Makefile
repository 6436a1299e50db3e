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

test: install lint
	$(VENV)/bin/pytest -q

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
