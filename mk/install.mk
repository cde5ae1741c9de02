# Installing (docs/install.md): `make install` lays out the binaries, the
# hardened systemd unit (deploy/systemd), its default config and the
# plugins under PREFIX (DESTDIR for staging); `make deb` builds the wapper
# .deb from that same layout with nfpm (deploy/deb/nfpm.yaml, nfpm from the
# Go module proxy through hack/nfpm/ensure-nfpm.sh), reproducibly: every
# timestamp is the last commit's time (SOURCE_DATE_EPOCH), and the rule
# builds the package twice and fails unless both are byte-identical.
# e2e/install_test.go inspects the .deb and runs what it installs, so
# `make test` builds it first.

PREFIX  ?= /usr/local
DESTDIR ?=
# systemd reads units from /usr/local/lib/systemd/system as well as from
# /usr/lib/systemd/system, so PREFIX/lib/systemd/system suits both.
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install

# The unit's ConfigurationDirectory=wapper is /etc/wapper whatever PREFIX is.
WAPPER_ETC := /etc/wapper

# Every plugin `make plugins` builds. Recursive (=): EXTRA_PLUGINS grows in
# mk files read after this one.
INSTALL_PLUGINS = $(PLUGIN_WASM) $(EXTRA_PLUGINS)

# install_tree ROOT,PREFIX,UNITDIR: the files of an install under ROOT (the
# DESTDIR). The unit, the config and the docs name /usr/...; they are
# rewritten for PREFIX. An existing config is kept, as dpkg keeps a conffile.
define install_tree
	$(INSTALL) -d $(1)$(2)/bin $(1)$(2)/lib/wapper/plugins $(1)$(3) \
		$(1)$(WAPPER_ETC)/manifests $(1)$(2)/share/doc/wapper/examples/standalone
	$(INSTALL) -m 755 bin/wapper-host bin/wapper bin/wapper-cloud $(1)$(2)/bin/
	$(INSTALL) -m 644 $(INSTALL_PLUGINS) $(1)$(2)/lib/wapper/plugins/
	sed -e 's#/usr/bin/#$(2)/bin/#g' -e 's#/usr/share/doc/wapper/#$(2)/share/doc/wapper/#g' \
		deploy/systemd/wapper-host.service > $(1)$(3)/wapper-host.service
	chmod 644 $(1)$(3)/wapper-host.service
	if [ -e $(1)$(WAPPER_ETC)/wapper-host.yaml ]; then \
		echo "keeping $(1)$(WAPPER_ETC)/wapper-host.yaml (the new default is deploy/systemd/wapper-host.yaml)"; \
	else \
		sed -e 's#/usr/lib/wapper/#$(2)/lib/wapper/#g' -e 's#/usr/share/doc/wapper/#$(2)/share/doc/wapper/#g' \
			deploy/systemd/wapper-host.yaml > $(1)$(WAPPER_ETC)/wapper-host.yaml && \
		chmod 644 $(1)$(WAPPER_ETC)/wapper-host.yaml; \
	fi
	$(INSTALL) -m 644 docs/install.md $(1)$(2)/share/doc/wapper/
	$(INSTALL) -m 644 examples/standalone/*.yaml $(1)$(2)/share/doc/wapper/examples/standalone/
endef

.PHONY: install install-files uninstall deb

install: build plugins
	$(call install_tree,$(DESTDIR),$(PREFIX),$(UNITDIR))

# What install installed, less the config and manifests under /etc/wapper
# and the state in /var/lib/wapper.
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/wapper-host $(DESTDIR)$(PREFIX)/bin/wapper $(DESTDIR)$(PREFIX)/bin/wapper-cloud
	rm -f $(DESTDIR)$(UNITDIR)/wapper-host.service
	rm -rf $(DESTDIR)$(PREFIX)/lib/wapper $(DESTDIR)$(PREFIX)/share/doc/wapper

# The .deb: bin/wapper_VERSION_ARCH.deb, VERSION from hack/nfpm/version.sh
# (or make deb VERSION=...), ARCH Debian's name for go env GOARCH.
DEB_ROOT := bin/deb-root
DEB_VERSION = $(or $(VERSION),$(shell hack/nfpm/version.sh))
DEB_GOARCH = $(shell $(GO) env GOARCH)
# nfpm's arch names for a .deb: Go's, with arm as arm5/6/7 (armel, armhf).
DEB_NFPM_ARCH = $(if $(filter arm,$(DEB_GOARCH)),arm$(firstword $(subst $(inst_comma), ,$(shell $(GO) env GOARM))),$(DEB_GOARCH))
inst_comma := ,

deb: build plugins
	@set -e; pids=; nfpm=$$(hack/nfpm/ensure-nfpm.sh); \
	export VERSION='$(DEB_VERSION)' ARCH='$(DEB_NFPM_ARCH)' SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct); \
	rm -rf $(DEB_ROOT); \
	for i in 1 2; do \
		$(MAKE) --no-print-directory -s install-files DESTDIR=$(abspath $(DEB_ROOT))/$$i/root \
			PREFIX=/usr UNITDIR=/usr/lib/systemd/system >/dev/null; \
		mkdir -p $(DEB_ROOT)/$$i/out; \
	done; \
	for i in 1 2; do \
		WAPPER_DEB_ROOT=$(DEB_ROOT)/$$i/root $$nfpm package --config deploy/deb/nfpm.yaml \
			--packager deb --target $(DEB_ROOT)/$$i/out/ >$(DEB_ROOT)/$$i/log 2>&1 & pids="$$pids $$!"; \
	done; \
	fail=; for p in $$pids; do wait $$p || fail=1; done; \
	if [ -n "$$fail" ]; then cat $(DEB_ROOT)/*/log >&2; exit 1; fi; \
	a=$$(ls $(DEB_ROOT)/1/out/*.deb); b=$$(ls $(DEB_ROOT)/2/out/*.deb); \
	if ! cmp -s "$$a" "$$b"; then echo "make deb: two builds of $${a##*/} differ: not reproducible" >&2; exit 1; fi; \
	rm -f bin/wapper_*.deb; mv "$$a" bin/; rm -rf $(DEB_ROOT); \
	echo "bin/$${a##*/}: built twice, byte-identical, sha256 $$(sha256sum "bin/$${a##*/}" | cut -c1-16)..."

# The files only, for deb (which has built them already).
install-files:
	$(call install_tree,$(DESTDIR),$(PREFIX),$(UNITDIR))

TEST_PREREQS += deb
