# ChromoDesk: `make run` (analyse the bundled sample, then open the app when there is a screen)
#             `make test` (the test suite; .ci/run calls this)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-all venv app bench evaluate evaluate-detect bundle clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/chromodesk analyze resources/samples/*.jpg --out out/
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = "Darwin" ]; then $(VENV)/bin/chromodesk resources/samples/; \
	else echo "(no screen: the desktop app opens with 'make app' where there is one)"; fi

app: $(STAMP)
	$(VENV)/bin/chromodesk resources/samples/

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/chromodesk bench --json out/bench.json

evaluate: $(STAMP)
	$(VENV)/bin/chromodesk-train evaluate --data ../shared/datasets/tseng2023-gband-metaphases \
	  ../shared/datasets/gband-karyogram-chromosomes ../shared/datasets/bioimlab-qband-chromosomes --json out/evaluate.json

evaluate-detect: $(STAMP)
	$(VENV)/bin/chromodesk-train evaluate-detect --data ../shared/datasets/tseng2023-gband-metaphases --json out/evaluate-detect.json

clean:
	rm -rf $(VENV) out .pytest_cache

# the desktop bundle (one folder, PyInstaller): dist/chromodesk/chromodesk; see packaging/README.md
bundle: $(STAMP)
	$(PY) -m pip install --quiet "pyinstaller>=6"
	$(VENV)/bin/pyinstaller --noconfirm --distpath dist --workpath build/pyinstaller packaging/chromodesk.spec
	QT_QPA_PLATFORM=offscreen dist/chromodesk/chromodesk resources/samples/103201.jpg --screenshot dist/bundle-smoke.png
