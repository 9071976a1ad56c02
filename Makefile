# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output
# pytest-xdist processes of `make test` (each test file runs whole in one of them; 2 = the CI machine's cores; each
# gets cores / workers OpenMP threads: tests/conftest.py).
TEST_WORKERS ?= 2

.PHONY: demo archs test bench bench-gpu install clean

install: $(STAMP)

# pytorch-grad-cam is the reference the tests check cxrres's CAMs against. --no-deps: it requires the GUI build
# opencv-python, which would overwrite opencv-python-headless's cv2; its other needs are already installed.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps 'grad-cam==1.5.7' 'ttach==0.0.3'
	@touch $(STAMP)

# The layout contracts first (ruff; import-linter's layers in pyproject.toml), then the suite. pytest exits 5 when it
# collects no test; that is not a failure of the code.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile || [ $$? -eq 5 ]

# The study on a 600-image phantom (nodules and cardiomegaly drawn 3x as often as their real-prevalence weight, so the
# test part has ~20 of each) at 64, 128 and 256 px on the CPU (configs/demo.yaml); ends with the report path.
# Rerunning it skips what is finished.
demo: $(STAMP)
	@test -f $(DEMO_DIR)/phantom/splits/chexnet/test_list.txt || $(BIN)/cxrres synth --out $(DEMO_DIR)/phantom --images 600 --size 256 --seed 0 --enrich Nodule=3,Cardiomegaly=3 --quiet
	$(BIN)/cxrres study --data $(DEMO_DIR)/phantom --out $(DEMO_DIR)/study --config configs/demo.yaml

# DenseNet-121, ConvNeXt-T and ViT-S/16 from scratch at 64 and 128 px on the demo's phantom (configs/archs.yaml),
# on the CPU in under 20 minutes; the key table (AUC, box accuracy, pointing, ECE) is in the README.
archs: $(STAMP)
	@test -f $(DEMO_DIR)/phantom/splits/chexnet/test_list.txt || $(BIN)/cxrres synth --out $(DEMO_DIR)/phantom --images 600 --size 256 --seed 0 --enrich Nodule=3,Cardiomegaly=3 --quiet
	$(BIN)/cxrres study --data $(DEMO_DIR)/phantom --out $(DEMO_DIR)/archs --config configs/archs.yaml

# Each benchmark prints a table and appends it, with the machine and the command, to benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.prepare
	$(BIN)/python -m benchmarks.loader
	$(BIN)/python -m benchmarks.train_step
	$(BIN)/python -m benchmarks.metrics
	$(BIN)/python -m benchmarks.localize
	$(BIN)/python -m benchmarks.memory

# A one-node SLURM on this machine (root; installs slurm-wlm and munge with apt-get if missing); a no-op when it is
# already up. tests/test_cluster.py submits a tiny study to it; docs/cluster.md.
.PHONY: slurm-local
slurm-local:
	./scripts/slurm-local.sh

# On a GPU machine: DenseNet-121 training images/s at 64-1024 px, model-only ceiling vs the real cache loader, fp32 vs
# bf16, channels_last, torch.compile, peak GPU memory (1024 px: batch 12); appends to RESULTS.md with the device name.
bench-gpu: $(STAMP)
	$(BIN)/python -m benchmarks.train_step --require-gpu --resolutions 64,128,256,512,1024 --steps 20 --workers 8 --compile

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build dist src/*.egg-info
