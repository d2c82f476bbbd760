# `make test` sets up a fresh Debian 12 machine (as root) and runs the whole suite.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
APT_PACKAGES := etcd-server etcd-client openssl nftables iptables ipset conntrack iproute2 iputils-ping procps \
	python3-venv python3-dev bird2 iperf3 util-linux mariadb-server busybox \
	dnsmasq-base isc-dhcp-client
# Tests that use network namespaces share this lock with `make bench` and other checkouts' suites.
NETNS_LOCK := flock /tmp/calico-netns.lock
STAMP := $(VENV)/.installed
# Neutron has its own environment (its pins are not ours); calico is installed into it too, for the driver.
OS_VENV ?= .venv-openstack
OS_STAMP := $(OS_VENV)/.installed

.PHONY: test setup apt venv lint unit bench clean lab lab-down

test: setup lint
	$(NETNS_LOCK) $(PY) -m pytest tests --ignore=tests/neutron
	$(NETNS_LOCK) $(OS_VENV)/bin/python -m pytest tests/neutron

setup: apt $(STAMP) $(OS_STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; rc=$$?; \
	  if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc; \
	fi

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	# Bytecode up front: every calico-felix start would otherwise recompile the sources (~45 ms).
	$(PY) -m compileall -q src
	touch $(STAMP)

$(OS_STAMP): pyproject.toml requirements-openstack.txt
	python3 -m venv $(OS_VENV)
	$(OS_VENV)/bin/pip install -q -r requirements-openstack.txt
	$(OS_VENV)/bin/pip install -q --no-deps -e .
	$(OS_VENV)/bin/python -m compileall -q src
	touch $(OS_STAMP)

lint: setup
	$(VENV)/bin/ruff check src tests bench

unit: setup
	$(PY) -m pytest tests/unit

bench: setup
	$(PY) bench/run_all.py

# The demonstration: a three-host Calico network in namespaces, BGP, a policy (nothing in the root network
# namespace is changed). KEEP=1 keeps the lab; `make lab-down` removes it.
LAB ?= demo
lab: setup
	$(NETNS_LOCK) env BIN=$(VENV)/bin LAB=$(LAB) KEEP=$(KEEP) examples/demo.sh

lab-down:
	$(VENV)/bin/calico-lab down --name $(LAB)

clean:
	rm -rf $(VENV) $(OS_VENV)
