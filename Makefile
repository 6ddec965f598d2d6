# The scripts in scripts/ are the truth; these targets are shortcuts for them.
.PHONY: help setup build runsc serve test bench fmt lint clean

help:          ## list targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:         ## install packages, build runsc (pinned gVisor) and faas (root)
	scripts/setup.sh

build:         ## build bin/faas and bin/faas-agent (static)
	CGO_ENABLED=0 go build -trimpath -o bin/faas ./cmd/faas
	CGO_ENABLED=0 go build -trimpath -o bin/faas-agent ./cmd/faas-agent

runsc:         ## build bin/runsc from the pinned gVisor module
	scripts/build-runsc.sh

serve:         ## set up and run the server on its defaults (root)
	scripts/serve.sh

test:          ## the full test suite, as CI runs it (root)
	scripts/test.sh

bench: build   ## measure latencies against baselines (root)
	bin/faas bench

fmt:           ## format the Go code
	gofmt -w $$(git ls-files '*.go')

lint:          ## gofmt check and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...

clean:         ## remove built binaries (keeps bin/runsc)
	rm -f bin/faas bin/faas-agent
