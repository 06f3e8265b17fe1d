# Two commands do all set-up on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
export TEST_DATABASE_URL

.PHONY: install run test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# With Slack credentials in the environment: the real Slack app. Without: the console on the example.
run: install
	@if [ -n "$$SLACK_BOT_TOKEN" ]; then \
		exec $(BIN)/opsbot run; \
	else \
		echo "SLACK_BOT_TOKEN is not set: starting the console on examples/opsbot.yml (SQLite)."; \
		OPSBOT_CONFIG=$${OPSBOT_CONFIG:-examples/opsbot.yml} \
		DATABASE_URL=$${DATABASE_URL:-sqlite+aiosqlite:///opsbot-console.db} \
		exec $(BIN)/opsbot shell; \
	fi

test: install
	bash scripts/ensure-services.sh
	bash scripts/ensure-prometheus.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=85 -p no:cacheprovider --timeout 300

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python bench/ack_latency.py

clean:
	rm -rf $(VENV) .coverage opsbot.db opsbot-console.db
