# Fresh machine: `make test` or `make quickstart`; both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXT_STAMP := widerface_evaluate/.built

.PHONY: venv build test quickstart synthetic-weights bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

build: venv $(EXT_STAMP)

$(EXT_STAMP): widerface_evaluate/box_overlaps.pyx widerface_evaluate/parse_boxes.pyx widerface_evaluate/setup.py
	cd widerface_evaluate && ../$(PY) setup.py build_ext --inplace
	touch $@

test: build
	$(PY) -m pytest -q

quickstart: build
	$(PY) quickstart.py

# Retrain the quickstart's shipped teacher and student from scratch (config.QUICKSTART) and
# install them in weights/.
synthetic-weights: build
	$(PY) quickstart.py --make_weights --out outputs/synthetic_weights

bench: build
	$(PY) bench/train_speed.py
	$(PY) bench/evaluator.py

clean:
	rm -rf build widerface_evaluate/build widerface_evaluate/*.so widerface_evaluate/*.c $(EXT_STAMP)
