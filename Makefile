# Two commands on a fresh Debian 12 machine, as root:
#   make demo   run the booth on embedded defaults (emulated peripherals, virtual card)
#   make test   lint, type-check and run the test suite
#
# Each installs what it needs: Debian packages, a virtual environment, the
# project. Stamps make a second run with nothing changed take seconds.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_APT := $(VENV)/.stamp-apt
STAMP_VENV := $(VENV)/.stamp-install

# pcscd + vpcd: the real PC/SC stack the card reader and its virtual cards use.
# libpcsclite-dev, swig: build pyscard. libsystemd-dev, pkg-config: systemd-python.
# xvfb: the booth's screen when there is none. libgl1, libglib2.0-0: OpenCV.
# libasound2-data: ALSA's configuration, which PyAV's bundled libasound reads.
# fonts-dejavu-core: DejaVu Sans, the booth app's font (Latin and Arabic glyphs in one face).
# coturn: the real TURN server the consultation link is tested through.
# chromium, libnss3-tools: the doctor's browser in the end-to-end tests (Playwright drives
# Debian's chromium; certutil puts the development fleet CA in its trust store).
# cups: the booth prints through lp; tests start a private cupsd. poppler-utils: pdftotext reads the PDFs in tests.
# cage: the booth's compositor, which systemd-analyze verify checks kiosk-app.service runs.
# mmdebstrap, lynis: the provisioning whole-system test (a Debian 12 root, audited);
# cryptsetup-bin, swtpm, libtss2-tcti-swtpm0, shellcheck: the LUKS2 + TPM2 enrolment test.
APT_PACKAGES := pcscd vsmartcard-vpcd libpcsclite-dev swig libsystemd-dev pkg-config \
	xvfb libgl1 libglib2.0-0 libasound2-data gcc python3-dev python3-venv coturn \
	chromium libnss3-tools fonts-dejavu-core cage \
	mmdebstrap lynis cryptsetup-bin swtpm libtss2-tcti-swtpm0 shellcheck cups poppler-utils
# Provisioning policies (tests run the real tools on the rendered files): sshd -t and a live
# sshd, nft -c and network namespaces (iproute2), usbguard-rule-parser, udevadm test, apparmor_parser.
APT_PACKAGES += openssh-server openssh-client nftables iproute2 usbguard udev apparmor
# The appliance image (image/): mkosi + debootstrap + systemd-nspawn build the tree; mtools,
# dosfstools, e2fsprogs and fdisk lay out the disk without mounting; qemu + OVMF boot-test it.
APT_PACKAGES += mkosi debootstrap systemd-container mtools dosfstools e2fsprogs fdisk \
	qemu-system-x86 ovmf

.PHONY: demo test lint typecheck unit bench clean setup image boot-test

setup: $(STAMP_VENV)

$(STAMP_APT): Makefile
	@mkdir -p $(VENV)
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(STAMP_VENV): $(STAMP_APT) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,journal]'
	@touch $@

lint: $(STAMP_VENV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP_VENV)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: $(STAMP_VENV)
	$(BIN)/python -m kiosk.demo

bench: $(STAMP_VENV)
	$(BIN)/python -m bench.run

# The booth's disk image (outputs and caches outside the tree) and its boot test under qemu/KVM.
IMAGE_DIR ?= /var/tmp/kiosk-image
image: $(STAMP_VENV)
	KIOSK_IMAGE_DIR=$(IMAGE_DIR) KIOSK_VENV=$(CURDIR)/$(VENV) image/build

boot-test: $(STAMP_VENV)
	KIOSK_IMAGE_DIR=$(IMAGE_DIR) KIOSK_VENV=$(CURDIR)/$(VENV) image/boot-test

clean:
	rm -rf $(VENV) demo-out .mypy_cache .ruff_cache .pytest_cache .hypothesis
