# Two commands matter: `make demo` (set up, fetch the sample, build a corpus, pretrain briefly, probe)
# and `make test`. Everything installs into .venv.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup sample-data demo demo-modis corpus test test-fast bench lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

sample-data: setup
	$(PY) -m rscurate.sample_data

corpus: sample-data
	$(VENV)/bin/rscurate build --sources manifests/ --out corpus/ --overwrite
	$(VENV)/bin/rscurate verify corpus/

demo: corpus
	$(VENV)/bin/rspretrain run --config configs/mae_vit_tiny.yaml --data corpus --out runs/demo \
	  --overwrite --max-steps 300 --set "data.bands=[red, green, blue]" --set "data.crop_scale=[0.0625, 0.25]"
	$(VENV)/bin/rspretrain export runs/demo --out runs/demo/export
	rm -rf runs/demo/probe-data
	$(VENV)/bin/rspretrain synthetic --out runs/demo/probe-data --tiles 256 --size 64 \
	  --band-names blue,green,red,nir --contrast 0.1 --noise 0.05
	$(VENV)/bin/rspretrain probe runs/demo/export --data runs/demo/probe-data --out runs/demo/probe --seeds 3

# MODIS L1B ingest on generated MOD021KM-structured granules, then a short SwinV2 SimMIM pretraining on the
# chips and a timm-loadable export (docs/modis.md)
demo-modis: setup
	$(PY) -m rscurate.modis_synth demo-modis/granules --granules 3 --night 1
	$(VENV)/bin/rscurate build --sources demo-modis/granules/modis_l1b.yaml --out demo-modis/corpus --overwrite
	$(VENV)/bin/rscurate verify demo-modis/corpus
	$(VENV)/bin/rspretrain run --config configs/satvision_toa_tiny.yaml --data demo-modis/corpus \
	  --out demo-modis/run --overwrite --max-steps 200
	$(VENV)/bin/rspretrain export demo-modis/run --out demo-modis/export

test: sample-data
	$(VENV)/bin/pytest

test-fast: sample-data
	$(VENV)/bin/pytest -m "not slow"

bench: sample-data
	$(PY) bench/build_throughput.py
	$(PY) bench/build_memory.py
	$(PY) bench/dedup_search.py --n 1000000 --radius 8
	$(PY) bench/dedup_decide.py --n 1000000
	$(PY) bench/phash_throughput.py
	$(PY) bench/tile_costs.py
	$(PY) bench/dedup_quality.py --brief
	OMP_NUM_THREADS=1 $(PY) bench/selective_vs_mae.py --bands 3 --batch 8 --steps 5 --decoder-depth 8
	OMP_NUM_THREADS=1 $(PY) bench/selective_vs_mae.py --bands 14 --batch 8 --steps 5 --decoder-depth 8
	OMP_NUM_THREADS=1 $(PY) bench/simmim_step.py --preset satvision_toa_tiny --batch 8 --steps 10 --threads 1
	$(PY) bench/gpu_step.py --device cpu --batch 8 --steps 3 --amp off
	$(PY) bench/loader_throughput.py --synthetic 512 --tile 256
	$(PY) bench/startup.py --repeat 3 --workers 0
	$(PY) bench/modis_ingest.py --granules 2 --workers 1
	$(PY) bench/remote_reads.py --side 4096

lint: setup
	$(VENV)/bin/ruff check .
