# Kartoteka: `make demo` runs the app with demo data; `make test` runs the checks and the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test lint install assets serve bench check-config check-wheel clean translations catalogues

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# gettext catalogues: the .po files are under version control, the compiled .mo files are not.
PO_FILES := $(wildcard kartoteka/translations/*/LC_MESSAGES/messages.po)
MO_FILES := $(PO_FILES:.po=.mo)
# What pybabel extracts: t()/tn() of the web layer and templates, Message(code, "text"), N_("text") and Nn_(one, many).
EXTRACT_KEYWORDS := -k t -k tn:1,2 -k translate:2 -k N_ -k Nn_:1,2 -k Message:2 -k counted:2,3

%.mo: %.po | $(STAMP)
	$(BIN)/pybabel -q compile -D messages -i $< -o $@

catalogues: $(MO_FILES)

# After changing texts: extract them, merge into each language's .po, then translate what is new or fuzzy
# (tests/test_catalogue.py fails until every text has a translation).
translations: install
	mkdir -p build
	$(BIN)/pybabel -q extract -F babel.cfg $(EXTRACT_KEYWORDS) --add-location=file --sort-output --no-wrap \
		--project=Kartoteka -o build/messages.pot .
	$(BIN)/pybabel -q update -D messages -i build/messages.pot -d kartoteka/translations --no-wrap \
		--ignore-obsolete --ignore-pot-creation-date

# htmx and Pico from the npm registry, exactly as package-lock.json pins them (never committed).
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

assets: $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP) catalogues

# The web server, one worker (the outbox, rule timers and schedules) and an SMTP sink printing the demo's e-mail.
demo: install
	$(BIN)/kartoteka demo
	$(BIN)/python scripts/run_demo.py --host 127.0.0.1 --port 5000

serve: install
	$(BIN)/kartoteka serve

check-config: install
	$(BIN)/kartoteka check-config

# mypy checks what [tool.mypy] in pyproject.toml names: kartoteka/metadata and kartoteka/records, strictly.
lint: install
	$(BIN)/ruff check kartoteka tests bench scripts build_hooks.py
	$(BIN)/python -m mypy

# The wheel, installed into an empty virtualenv, serves /login with its styles and scripts (about 20 s).
check-wheel: install
	$(BIN)/python scripts/check_wheel.py

# pytest last: its summary is the closing line of the run.
test: lint check-wheel
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench.bench_records
	$(BIN)/python -m bench.bench_formulas

clean:
	rm -rf $(VENV) node_modules instance .pytest_cache .ruff_cache .mypy_cache build dist
