# The two commands a newcomer needs: `make serve` and `make test`. Both install what they need first
# (`make test` runs the suite on the embedded state, then the API and job tests on PostgreSQL + SeaweedFS).
.PHONY: setup serve test bench openapi

setup:
	@bash scripts/setup.sh

serve: setup
	cargo run --release -- serve

test: setup
	cargo test
	bash scripts/test-on-cluster.sh

bench: setup
	bash benches/inference_vs_python.sh
	bash benches/ranking_vs_python.sh
	bash benches/training_vs_python.sh

openapi:
	cargo run -q -- openapi > openapi.json
