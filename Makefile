# mail-continuity-operator. `make demo` and `make test` install what they need.
SHELL := /bin/bash
export NODE_NO_WARNINGS := 1
TSX := npx tsx

.PHONY: all install generate build lint typecheck test test-unit demo bench image release clean help

all: build

help:
	@echo "make demo      run the whole product locally through an Exchange outage and back"
	@echo "make test      typecheck + lint + unit + integration + e2e (installs what it needs)"
	@echo "make generate  write crds/, the chart's CRD, deploy/install.yaml, argocd-cm.yaml"
	@echo "make build     compile TypeScript into dist/"
	@echo "make bench     run the side-by-side benchmarks in bench/"
	@echo "make image     build the image from the Dockerfile on this machine (buildah, no registry)"
	@echo "make release   dist/release/: image (OCI archive), chart, install.yaml pinned to the digest, CRDs, SHA256SUMS"

install:
	@scripts/install.sh

generate:
	@scripts/generate.sh

build: install
	@npx tsc -p tsconfig.build.json

typecheck: install
	@npx tsc --noEmit -p tsconfig.json

lint: install
	@npx eslint .

test: install
	@scripts/test.sh

test-unit: install
	@NODE_OPTIONS=--experimental-vm-modules npx jest --selectProjects unit

demo: install
	@$(TSX) test/harness/demo.ts $(DEMO_ARGS)

# Side by side, one run each; results go into bench/RESULTS.md by hand (they are noisy: read them).
# The relay runs as built (dist/), as in the image.
bench: build
	@node --import tsx bench/relay-vs-postfix.ts --backlog 50000
	@node --import tsx bench/operator-scale.ts --count 500 --idle 600s
	@node --import tsx bench/failover.ts --outages 10 --messages 10000 --rate 200

# The image from the Dockerfile with buildah and local stand-ins of its base images, cached by a
# hash of its inputs; prints "NAME ARCHIVE" per image (scripts/build-image.sh). Production: docker build.
image: install
	@scripts/build-image.sh

# What a release publishes, in dist/release/ (docs/release.md); the version is package.json's
# (scripts/set-version.sh writes it everywhere else).
release: install
	@scripts/release.sh

clean:
	rm -rf dist .test-results
