# Two commands set everything up on a fresh machine:
#   make test   create .venv (if missing), install the package with its test extra, run the tests
#   make lint   the same set-up, then ruff check and ruff format --check
#   make demo   same set-up, then run the recipe's self-contained default (egs2/speechclip/sc1)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install lint test demo clean

# pip is left at the venv's version on purpose: pip >= 25 refuses espnet's dependency ci_sdr
# (it declares a direct-URL extra), older pips install it.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test,demo]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	cd egs2/speechclip/sc1 && ./run.sh

clean:
	rm -rf $(VENV) *.egg-info
