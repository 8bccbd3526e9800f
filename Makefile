# appliance - top-level build.
#
#   make               build everything into build/ (program: build/appliance)
#   make deps          install the Debian packages the project needs
#   make check         build, then run every test suite (unit, command, TOML)
#   make check SANITIZE=1   the same under ASan+UBSan (into build-san/)
#   make check SLOW=1  also run the tests tagged slow
#   make install PREFIX=/usr/local
#   make fuzz          build the libFuzzer targets with clang (fuzz/README.md)
#
# Every library is the *.c files of its folder and its subfolders (one
# level: runtime/virtio/*.c), so a new module needs no Makefile edit.  BUILD=dir puts the objects elsewhere,
# which lets several builds (or several developers) share a checkout.

.DEFAULT_GOAL := all
SANITIZE ?=
ifeq ($(SANITIZE),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	    -fno-omit-frame-pointer
else
BUILD ?= build
SANFLAGS :=
endif

PREFIX ?= /usr/local
CC ?= cc
OPT ?= -O2
PKGS := libzstd libarchive libcrypto zlib libcurl fuse3 libguestfs
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

CFLAGS := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wshadow \
	  -Wno-missing-field-initializers \
	  -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread -I. -Iimgfmt \
	  -MMD -MP $(SANFLAGS) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -pthread $(SANFLAGS) $(EXTRA_LDFLAGS)
LDLIBS := $(PKG_LIBS) -lm

LIBDIRS := common imgfmt nbd mount builder appliances runtime
define lib_rules
$(1)_SRCS := $$(wildcard $(1)/*.c $(1)/*/*.c)
$(1)_OBJS := $$(patsubst %.c,$(BUILD)/%.o,$$($(1)_SRCS))
$(BUILD)/lib$(1).a: $$($(1)_OBJS)
	@mkdir -p $$(@D)
	rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach d,$(LIBDIRS),$(eval $(call lib_rules,$(d))))
LIBS := $(foreach d,$(LIBDIRS),$(BUILD)/lib$(d).a)
LINK_LIBS := -Wl,--start-group $(LIBS) -Wl,--end-group

CLI_SRCS := $(wildcard cli/*.c)
CLI_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRCS))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TEST_HELPER_SRCS := $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c))
TEST_HELPER_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(TEST_HELPER_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/%,$(TOOL_SRCS))

BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

PROGRAM := $(BUILD)/appliance

.PHONY: all deps check install clean demo bench fuzz fuzzers
all: $(PROGRAM) $(UNIT_BINS) $(TOOL_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

# --as-needed: the program does not link the mount code (see below), so
# libguestfs and libfuse drop out of it and out of every `run`.
$(PROGRAM): $(CLI_OBJS) $(LIBS)
	$(CC) $(LDFLAGS) -Wl,--as-needed -o $@ $(CLI_OBJS) $(LINK_LIBS) $(LDLIBS)

# The mount helper, exec'd by `appliance img attach|mount|ls|...`
# (cli/cmd-img-mount.c): the same front end with the mount code.
MOUNT_HELPER := $(BUILD)/appliance-mount
MOUNT_HELPER_OBJS := $(filter-out $(BUILD)/cli/cmd-img-mount.o,$(CLI_OBJS)) \
	$(BUILD)/cli/mount-helper/cmd-img-mount.o
$(MOUNT_HELPER): $(MOUNT_HELPER_OBJS) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $(MOUNT_HELPER_OBJS) $(LINK_LIBS) $(LDLIBS)
all: $(MOUNT_HELPER)

# The runner, exec'd by `appliance run` once any pull is done
# (cli/cmd-run.c): only what booting a VM needs, so the process that
# lives as long as the VM maps neither libcurl nor libarchive.
RUN_HELPER := $(BUILD)/appliance-run
RUN_HELPER_OBJS := $(BUILD)/cli/run-helper/run.o $(BUILD)/cli/run-args.o \
	$(BUILD)/cli/util.o
$(RUN_HELPER): $(RUN_HELPER_OBJS) $(LIBS)
	$(CC) $(LDFLAGS) -Wl,--as-needed -o $@ $(RUN_HELPER_OBJS) $(LINK_LIBS) $(LDLIBS)
all: $(RUN_HELPER)

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(TEST_HELPER_OBJS) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_HELPER_OBJS) $(LINK_LIBS) $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/tools/%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

# Fuzz targets (fuzz/): each links twice.  Here with fuzz/replay.c's
# main(), so `make check` replays the saved corpus (tests/cli/fuzz.sh);
# and by `make fuzz` with clang's libFuzzer for coverage-guided runs by
# hand (fuzz/README.md).
FUZZ_TARGETS := $(patsubst fuzz/fuzz-%.c,%,$(wildcard fuzz/fuzz-*.c))
REPLAY_BINS := $(patsubst %,$(BUILD)/fuzz/replay-%,$(FUZZ_TARGETS))
all: $(REPLAY_BINS)
FUZZ_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard fuzz/*.c))
.SECONDARY: $(FUZZ_OBJS)
$(BUILD)/fuzz/replay-%: $(BUILD)/fuzz/fuzz-%.o $(BUILD)/fuzz/file.o $(BUILD)/fuzz/replay.o $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/fuzz/file.o $(BUILD)/fuzz/replay.o $(LINK_LIBS) $(LDLIBS)

FUZZ_SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang \
		EXTRA_CFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SANFLAGS)" \
		EXTRA_LDFLAGS="$(FUZZ_SANFLAGS)" fuzzers
fuzzers: $(patsubst %,$(BUILD)/fuzzers/%,$(FUZZ_TARGETS))
$(BUILD)/fuzzers/%: $(BUILD)/fuzz/fuzz-%.o $(BUILD)/fuzz/file.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/fuzz/file.o $(LINK_LIBS) $(LDLIBS)

# Benchmarks are run by hand (see bench/README.md), never by make check.
bench: $(BENCH_BINS)
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

# The Debian packages the project needs to build, test and run.
DEB_PACKAGES := build-essential pkg-config check libzstd-dev libarchive-dev \
	libssl-dev zlib1g-dev libcurl4-openssl-dev zstd qemu-utils \
	e2fsprogs python3 minisign b3sum busybox-static qemu-system-x86 mmdebstrap \
	cpio kmod passt libnbd-bin nbdkit fio signify-openbsd curl openssl ca-certificates \
	fuse3 libfuse3-dev libguestfs-tools libguestfs-dev linux-image-amd64
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
	    --no-install-recommends $$missing; \
	else echo "all Debian packages present"; fi

check: all
	BUILD=$(BUILD) SLOW=$(SLOW) SANITIZE=$(SANITIZE) sh tests/run.sh

# The main job end to end: build busybox-hello, sign, publish, serve over
# HTTP on 127.0.0.1, pull by URL into an empty cache, run it.
demo: deps
	$(MAKE) all
	APPLIANCE=$(abspath $(PROGRAM)) sh scripts/demo.sh

install: $(PROGRAM) $(MOUNT_HELPER) $(RUN_HELPER)
	install -D -m 0755 $(PROGRAM) $(DESTDIR)$(PREFIX)/bin/appliance
	install -D -m 0755 $(MOUNT_HELPER) \
		$(DESTDIR)$(PREFIX)/libexec/appliance/appliance-mount
	install -D -m 0755 $(RUN_HELPER) \
		$(DESTDIR)$(PREFIX)/libexec/appliance/appliance-run

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- the tiny test guest (owner: kvm) -------------------------------------
# tests/guest/ is a freestanding 64-bit program laid out as a minimal
# bzImage, booted by the builtin monitor in tests/cli/run-guest.sh.  It is
# built without the host's flags (no sanitizers, no PIC, no SSE).
GUEST_SRCS := $(wildcard tests/guest/*.c tests/guest/*.S)
GUEST_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -ffreestanding \
	-fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
	-mno-red-zone -mno-sse -mno-mmx -mno-80387 -mgeneral-regs-only \
	-nostdlib -static -no-pie -Wl,--build-id=none -Wl,-n \
	-Wl,--no-warn-rwx-segments
$(BUILD)/tests/guest.elf: $(GUEST_SRCS) $(wildcard tests/guest/*.h) tests/guest/guest.ld
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -Wl,-T,tests/guest/guest.ld -o $@ $(GUEST_SRCS)
$(BUILD)/tests/guest.bin: $(BUILD)/tests/guest.elf
	objcopy -O binary $< $@
all: $(BUILD)/tests/guest.bin
# The same guest as an ELF with a PVH entry note (tests/guest/pvh/).
PVH_GUEST_SRCS := $(filter-out tests/guest/head.S,$(GUEST_SRCS)) \
	$(wildcard tests/guest/pvh/*.c tests/guest/pvh/*.S)
$(BUILD)/tests/guest-pvh.elf: $(PVH_GUEST_SRCS) $(wildcard tests/guest/*.h) tests/guest/pvh/guest.ld
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -Wl,-T,tests/guest/pvh/guest.ld -o $@ $(PVH_GUEST_SRCS)
all: $(BUILD)/tests/guest-pvh.elf
