# Entry points, each working from nothing on a fresh machine:
#   make demo   create .venv, install cellnb and JupyterLab, run the main job (cellnb demo)
#   make test   install cellnb with every extra, run the test suite (notebooks included)
#   make lab    that full install, open the tutorial notebooks in JupyterLab (127.0.0.1)
#   make docs   that full install, build the documentation site into build/docs/html
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the demo's lighter install (core + JupyterLab): no TensorFlow, cellpose, Sphinx, ...
DEMO_STAMP := $(VENV)/.installed-demo
EXTRAS := dev,hpc,cellpose,stardist,bioio,tracking,lab,docs

# Real data for tests and notebooks: an explicit CELLNB_DATA_DIR wins; otherwise the
# shared read-only copy beside the checkout, if there is one (else pooch downloads).
CELLNB_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export CELLNB_DATA_DIR

# the test suite keeps its executed notebooks here; the docs build reuses the current ones
EXECUTED := $(CURDIR)/build/executed-notebooks

.PHONY: demo test docs lab install browser slurm clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP) $(DEMO_STAMP)

# the full install (make test) serves the demo too
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/cellnb demo --out cellnb-demo

# CELLNB_DOWNLOAD=0: notebooks never download μSAM weights during the tests (they do when a
# user runs them online), so CI does not depend on the network
test: $(STAMP) browser slurm
	CELLNB_QUICK=1 MPLBACKEND=Agg CELLNB_DOWNLOAD=0 CELLNB_EXECUTED_NOTEBOOKS=$(EXECUTED) \
	  $(BIN)/python -m pytest -m "not gpu and not weights and not slow" cellnb tests
	CELLNB_DOWNLOAD=0 $(MAKE) docs

# the site, warnings as errors (broken references, undocumented public names, failing
# notebooks); notebooks that make test executed are reused, the others run here
docs: $(STAMP)
	CELLNB_EXECUTED_NOTEBOOKS=$(EXECUTED) $(BIN)/python -m sphinx -E -W --keep-going -n -q \
	  -b html docs build/docs/html
	@echo "docs: open build/docs/html/index.html"

# tests/test_browser.py drives Debian's chromium: installed here when we are root on Debian,
# else that test is skipped (said in the test report)
browser:
	@command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium / chromedriver not installed: tests/test_browser.py will be skipped"

# tests/test_slurm.py starts a one-node Slurm on this machine (munge, slurmctld, slurmd):
# Debian's packages are installed here when we are root on Debian, else those tests are
# skipped; the packages' own services are not started (the tests run their own daemons)
slurm:
	@command -v slurmd >/dev/null 2>&1 || [ -x /usr/sbin/slurmd ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; } || \
	  echo "Slurm not installed: tests/test_slurm.py will be skipped"

# the tutorials in JupyterLab, served on this machine only
lab: $(STAMP)
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser --notebook-dir notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf $(VENV) cellnb-demo .pytest_cache build docs/api docs/tutorials/*.ipynb
