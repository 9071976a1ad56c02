# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# pytest exits 5 when it collects no test; that is not a failure of the code.
test: $(STAMP)
	$(BIN)/python -m pytest -q || [ $$? -eq 5 ]

# Runs what exists so far on the committed 14-image sample; later steps print "not built yet".
SAMPLE := tests/fixtures/mini
demo: $(STAMP)
	$(BIN)/cxrres describe --data $(SAMPLE) --split-dir $(SAMPLE)/splits
	$(BIN)/cxrres prepare --data $(SAMPLE) --cache $(DEMO_DIR)/cache --resolutions 32,64,128
	@echo "synth, train, evaluate, localize, study, report: not built yet"

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build dist src/*.egg-info
