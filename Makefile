# unionstack — make demo runs the main job, make test runs every test.
# Both work on a fresh Debian 12 machine as root.

GO        ?= go
BIN       := bin
UNIONCTL  := $(BIN)/unionctl
STATICCHECK_VERSION := v0.8.2
# Debian packages the tests and the demo need (command they provide).
DEB_PACKAGES := jq busybox-static fuse3 fuse-overlayfs unionfs-fuse attr e2fsprogs xfsprogs fio util-linux kmod
TEST_TIMEOUT ?= 60m

.PHONY: all build install demo test deps godeps lint unit bench clean

all: build

build:
	$(GO) build -o $(UNIONCTL) ./cmd/unionctl

# install puts unionctl in PATH and links it where mount(8) and
# mount.fuse3 look for the helper of "-t fuse3.unionctl" (mount(8) clears
# PATH; mount.fuse3 runs "fuse3.unionctl" through /bin/sh's default PATH),
# and installs the systemd unit of the mount server (unionctl serve).
PREFIX ?= /usr/local
install: build
	install -D -m 0755 $(UNIONCTL) $(PREFIX)/bin/unionctl
	ln -sf $(PREFIX)/bin/unionctl $(PREFIX)/sbin/fuse3.unionctl
	ln -sf $(PREFIX)/bin/unionctl /sbin/mount.fuse3.unionctl
	mkdir -p /etc/systemd/system
	sed 's|@BINDIR@|$(PREFIX)/bin|' contrib/unionctl-serve.service > /etc/systemd/system/unionctl-serve.service

# deps installs the Debian packages the tests need, when missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@modprobe fuse 2>/dev/null || true; modprobe overlay 2>/dev/null || true

godeps:
	$(GO) mod download
	@command -v staticcheck >/dev/null || [ -x $$($(GO) env GOPATH)/bin/staticcheck ] || \
	  $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

demo: deps build
	./demo/demo.sh $(UNIONCTL)

lint: godeps
	@bad=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$bad" ] || { echo "gofmt needed: $$bad"; exit 1; }
	$(GO) vet ./...
	PATH=$$PATH:$$($(GO) env GOPATH)/bin staticcheck ./...

unit: deps godeps build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# Each benchmark runs once so CI keeps them working; ratios are printed.
bench: deps godeps build
	$(GO) test -count=1 -run '^$$' -bench . -benchtime=1x -timeout $(TEST_TIMEOUT) ./...

test: lint unit bench

clean:
	rm -rf $(BIN)
