# Entry points, each working from nothing on a fresh machine:
#   make demo   create .venv, install cellnb, run the main job (cellnb demo)
#   make test   same install, run the test suite (notebooks included)
#   make lab    same install, open the tutorial notebooks in JupyterLab (127.0.0.1)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Real data for tests and notebooks: an explicit CELLNB_DATA_DIR wins; otherwise the
# shared read-only copy beside the checkout, if there is one (else pooch downloads).
CELLNB_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export CELLNB_DATA_DIR

.PHONY: demo test lab install browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,hpc,cellpose,stardist,bioio,tracking,lab]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cellnb demo --out cellnb-demo

test: $(STAMP) browser
	CELLNB_QUICK=1 MPLBACKEND=Agg $(BIN)/python -m pytest -m "not gpu and not weights and not slow" cellnb tests

# tests/test_browser.py drives Debian's chromium: installed here when we are root on Debian,
# else that test is skipped (said in the test report)
browser:
	@command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium / chromedriver not installed: tests/test_browser.py will be skipped"

# the tutorials in JupyterLab, served on this machine only
lab: $(STAMP)
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser --notebook-dir notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf $(VENV) cellnb-demo .pytest_cache
