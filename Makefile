# sandbox-guest build. Concern-specific targets live in mk/*.mk.
SHELL := /bin/bash
GO ?= go
BIN := bin
export GOFLAGS := -buildvcs=false

.PHONY: all build test lint
all: build

include $(sort $(wildcard mk/*.mk))
