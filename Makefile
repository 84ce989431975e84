# The few commands a person types. Everything runs from a venv in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench build lint clean neutral-client cyrus-sasl-tools stock-qpidd ocf-tester qmf-consoles chromium \
	proton-cpp-examples

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# Rebuild when any source of the package changes.
SOURCES := setup.py pyproject.toml $(shell find pyx broker client tools perf ha conf -type f \
	\( -name '*.py' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.html' -o -name '*.js' -o -name '*.css' -o -name '*.conf' -o -path 'ha/ocf/*' -o -path '*/static/*' \) 2>/dev/null)
$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/pip install -q ".[test]"
	touch $(STAMP)

build: $(STAMP)

run: $(STAMP)
	mkdir -p data
	$(BIN)/qpidd --config conf/qpidd.conf

# The neutral client lets the benchmark smoke tests run too; without it (no Debian mirror) they skip.
# The whole suite runs on uvloop (the broker's default loop), then the tests of broker processes run
# again on the standard library's loop (CYPID_LOOP=asyncio), as uvloop's own suite does.
LOOP_TESTS := tests/integration tests/interop tests/faults
# Most tests wait on broker processes: three pytest workers (pytest-xdist) keep two cores busy. A
# module's tests stay on one worker (--dist loadfile), so module-scoped brokers are started once.
# PARALLEL= runs them one at a time. Tests marked solo (a bystander's round trip timed against a
# hostile client, bound 0.5 s) run after each parallel pass, one at a time: the bound is about the
# broker, and three workers on two cores would time the other workers' brokers too.
PARALLEL ?= -n 3 --dist loadfile
test: $(STAMP)
	-$(MAKE) --no-print-directory neutral-client
	-$(MAKE) --no-print-directory cyrus-sasl-tools
	-$(MAKE) --no-print-directory stock-qpidd
	-$(MAKE) --no-print-directory ocf-tester
	-$(MAKE) --no-print-directory qmf-consoles
	-$(MAKE) --no-print-directory chromium
	-$(MAKE) --no-print-directory proton-cpp-examples
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PARALLEL) -m "not solo" $(PYTEST_ARGS) tests
	$(BIN)/python -m pytest -q -p no:cacheprovider -m solo $(PYTEST_ARGS) tests
	CYPID_LOOP=asyncio $(BIN)/python -m pytest -q -p no:cacheprovider $(PARALLEL) -m "not solo" $(PYTEST_ARGS) $(LOOP_TESTS)
	CYPID_LOOP=asyncio $(BIN)/python -m pytest -q -p no:cacheprovider -m solo $(PYTEST_ARGS) $(LOOP_TESTS)

# The Proton-C load client in ../shared/tools/neutral-client (not ours), built into build/neutral-client.
NEUTRAL_SRC ?= $(firstword $(wildcard ../shared/tools/neutral-client ../../shared/tools/neutral-client))
NEUTRAL := build/neutral-client
neutral-client: $(NEUTRAL)/amqp_send $(NEUTRAL)/amqp_recv
$(NEUTRAL)/%: $(NEUTRAL_SRC)/%.c
	pkg-config --exists libqpid-proton || (apt-get update -qq && apt-get install -y -qq libqpid-proton11-dev pkg-config)
	mkdir -p $(NEUTRAL)
	gcc -O2 -o $@ $< $$(pkg-config --cflags --libs libqpid-proton)

# Debian's saslpasswd2 and db_dump: the tests show a users database made by saslpasswd2 working
# (the broker reads a Cyrus sasldb2 file through db_dump). Without a Debian mirror those tests skip.
cyrus-sasl-tools:
	command -v saslpasswd2 >/dev/null && command -v db_dump >/dev/null && command -v openssl >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq sasl2-bin db-util openssl)

# The stock qpidd 1.40 in ../shared/tools/qpidd (not ours), unpacked into build/qpidd-install with the
# Debian libraries it needs: qpid-ha's tests drive its HA module, and the tools' tests (tests/tools)
# run against it too. Without it they skip. CYPID_TEST_QPIDD may name another qpidd.
QPIDD_TAR ?= $(firstword $(wildcard ../shared/tools/qpidd/qpidd-1.40-debian12.tar.gz \
	../../shared/tools/qpidd/qpidd-1.40-debian12.tar.gz))
QPIDD_LIBS := libboost-program-options1.74.0 libqpid-proton11 libsasl2-2 libnss3 libaio1 libdb5.3++
stock-qpidd: build/qpidd-install/sbin/qpidd
build/qpidd-install/sbin/qpidd: $(QPIDD_TAR)
	dpkg -s $(QPIDD_LIBS) >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq $(QPIDD_LIBS))
	mkdir -p build && tar xzf $< -C build/ && touch $@

# Debian's ocf-tester (resource-agents) checks the Pacemaker agent ha/ocf/cypid; without it that test skips.
ocf-tester:
	command -v ocf-tester >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends resource-agents libxml2-utils)

# Third-party QMF consoles the tools' tests drive cypid (and the stock qpidd) with: qpid-bow's `qb`
# and brokerlso, in their own venv with the dependencies qpid-bow pins (python-qpid-proton 0.24,
# which gives AMQP binary as bytes). Without PyPI those tests skip.
CONSOLES := build/qmf-consoles
qmf-consoles: $(CONSOLES)/bin/qb
$(CONSOLES)/bin/qb:
	$(PY) -m venv $(CONSOLES)
	$(CONSOLES)/bin/pip install -q qpid-bow==1.1.1 python-qpid-proton==0.24.0 PyYAML==6.0.4 brokerlso==0.0.2

# Proton's C++ examples as Debian ships them (libqpid-proton11-dev-examples), built with g++ against
# libqpid-proton-cpp12-dev into build/proton-cpp-examples: tests/interop/test_proton_cpp_examples.py
# runs them against cypid. Without a Debian mirror (or g++) those tests skip.
CPP_EXAMPLES_SRC := /usr/share/proton/examples/cpp
CPP_EXAMPLES := build/proton-cpp-examples
CPP_EXAMPLE_NAMES := simple_send simple_recv colour_send selected_recv queue_browser client server
proton-cpp-examples: $(addprefix $(CPP_EXAMPLES)/,$(CPP_EXAMPLE_NAMES))
$(CPP_EXAMPLES)/%:
	test -f $(CPP_EXAMPLES_SRC)/$*.cpp && test -f /usr/include/proton/container.hpp && command -v g++ >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq libqpid-proton-cpp12-dev libqpid-proton11-dev-examples g++)
	mkdir -p $(CPP_EXAMPLES)
	g++ -O1 -I$(CPP_EXAMPLES_SRC) -o $@ $(CPP_EXAMPLES_SRC)/$*.cpp -lqpid-proton-cpp -lpthread

# Debian's Chromium and its WebDriver: the web console's tests drive a real browser (tests/browser).
# Without a Debian mirror those tests skip.
chromium:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

bench: $(STAMP) neutral-client
	$(BIN)/python -m pytest -q -p no:cacheprovider --benchmark-enable --benchmark-only tests/bench

lint: $(STAMP)
	$(BIN)/pip install -q ruff
	$(BIN)/ruff check broker client tools perf ha tests

clean:
	rm -rf build $(VENV) *.egg-info pyx/*.c pyx/*.so pyx/*.html
