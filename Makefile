# Two commands set everything up on a fresh machine:
#   make test   create .venv (if missing), install the package with its test extras, Chromium for the
#               browser test (apt-get, when missing), run the tests
#   make lint   the same set-up, then ruff check and ruff format --check
#   make demo   same set-up, then run the recipe's self-contained default (egs2/speechclip/sc1); it ends
#               by printing the command that opens the web page on the run's models
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install chromium lint test demo clean

# pip is left at the venv's version on purpose: pip >= 25 refuses espnet's dependency ci_sdr
# (it declares a direct-URL extra), older pips install it.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test,demo,web,mteb,index]'
	touch $(STAMP)

install: $(STAMP)

# The browser test drives the system's Chromium: Playwright's own browser download needs the internet.
# Skipped when a Chromium is there (or SPEECHCLIP_CHROMIUM names one); installs Debian's as root (CI).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@if [ -n "$$SPEECHCLIP_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 \
		|| command -v chromium-browser >/dev/null 2>&1; then :; else \
		echo "installing Chromium for the browser test (apt-get install chromium)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The tests run on up to 4 cores (TEST_JOBS=0: all in this one process); a test file's tests, and the
# tests sharing the miniature recipe run, stay on one worker, and the longest groups start first
# (tests/conftest.py).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)

test: $(STAMP) chromium
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadgroup --no-loadscope-reorder tests

demo: $(STAMP)
	cd egs2/speechclip/sc1 && ./run.sh

clean:
	rm -rf $(VENV) *.egg-info
