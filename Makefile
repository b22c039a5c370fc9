# wisp: a minimal KVM micro-VMM. The README's two commands are `make demo` and `make test`.
CC      ?= gcc
CLANG   ?= clang
CFLAGS  := -std=gnu11 -Wall -Wextra -Werror -O2 -g -pthread
LDFLAGS := -static -pthread
BUILD   := build
# Firecracker's API contract, read by the API contract check (not committed).
FIRECRACKER_SWAGGER ?= ../shared/reference/firecracker-api.yaml
# Firecracker's guest kernel configuration (not committed), for make firecracker-kernel.
FIRECRACKER_GUEST_CONFIG ?= ../shared/reference/firecracker-guest-x86_64-6.1.config

ARCH_SRCS := $(wildcard vmm/arch/x86_64/*.c)
DEVICE_SRCS := $(wildcard vmm/devices/*.c vmm/devices/virtio/*.c)
# Everything but the KVM-facing files: the code unit tests link against.
API_SRCS := $(wildcard api/*.c)
PURE_SRCS := vmm/log.c vmm/metrics.c vmm/config.c vmm/memory.c vmm/memory_file.c vmm/bus.c vmm/cli.c \
	vmm/event_loop.c vmm/rate_limiter.c vmm/device_metrics.c vmm/snapshot_format.c \
	vmm/snapshot_info.c vmm/vcpu_state.c vmm/vm_state.c vmm/uffd_proto.c vmm/uffd.c \
	vmm/seccomp.c $(ARCH_SRCS) $(DEVICE_SRCS) $(API_SRCS)
VMM_SRCS  := $(PURE_SRCS) vmm/kvm.c vmm/vcpu.c vmm/virtio_attach.c vmm/vm.c vmm/controller.c \
	vmm/snapshot.c vmm/main.c
LIBS      := -luring -ljansson -lseccomp
VMM_OBJS  := $(VMM_SRCS:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/seccomp_embedded.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
ASAN_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/asan/%)
HEADERS   := $(shell find vmm api -name '*.h')

.PHONY: all deps guest test unit integration seccomp-filter demo soak bench bench-boot bench-io bench-snapshot \
	bench-density compare-guest-logs firecracker-kernel test-firecracker-kernel \
	check-asan format \
	format-check clean FORCE
all: $(BUILD)/wisp $(BUILD)/wisp-uffd-handler $(BUILD)/wispctl $(BUILD)/wisp-jailer

deps:
	@ci/install-deps.sh

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ivmm -c $< -o $@

# wisp's default seccomp filters, compiled once here and linked in (vmm/tools/seccomp_embed.c).
$(BUILD)/wisp-seccomp-embed: vmm/tools/seccomp_embed.c vmm/seccomp.c vmm/log.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ivmm -o $@ $(filter %.c,$^) -lseccomp

$(BUILD)/gen/seccomp_embedded.c: $(BUILD)/wisp-seccomp-embed
	@mkdir -p $(dir $@)
	$< $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/seccomp_embedded.o: $(BUILD)/gen/seccomp_embedded.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ivmm -c $< -o $@

$(BUILD)/wisp: $(VMM_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Test-only (never the release binary): wisp whose WISP_SECCOMP_SELFTEST=vmm|api|vcpu makes
# that thread call a forbidden system call once its filter is in (tests/integration/
# test_seccomp.py); =audit logs forbidden calls and fails them instead of exiting.
$(BUILD)/obj-selftest/vmm/seccomp.o: vmm/seccomp.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DWISP_SECCOMP_SELFTEST -Ivmm -c $< -o $@

$(BUILD)/wisp-seccomp-test: $(filter-out $(BUILD)/obj/vmm/seccomp.o,$(VMM_OBJS)) \
		$(BUILD)/obj-selftest/vmm/seccomp.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# wisp's default seccomp filters as a --seccomp-filter file (README "Seccomp").
$(BUILD)/wisp-seccomp.bpf: $(BUILD)/wisp
	$(BUILD)/wisp seccomp-filter-dump $@

seccomp-filter: $(BUILD)/wisp-seccomp.bpf

# The Uffd backend's page-fault handler (README: "Snapshot restore backends").
$(BUILD)/wisp-uffd-handler: vmm/tools/uffd_handler.c vmm/uffd_proto.c vmm/snapshot_format.c \
		$(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Ivmm -o $@ $(filter %.c,$^) -ljansson

# wispctl, the reference control plane (README "wispctl"); its pure logic is
# wispctl_lib.c, which tests/unit/test_wispctl.c links alone. Its messages may be cut
# (-Wno-format-truncation); the paths it builds are checked where they are made.
WISPCTL_SRCS := vmm/tools/wispctl.c vmm/tools/wispctl_lib.c
$(BUILD)/wispctl: $(WISPCTL_SRCS) vmm/tools/wispctl_lib.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-format-truncation $(LDFLAGS) -Ivmm/tools -o $@ $(WISPCTL_SRCS) \
		-ljansson

# The jailer (README: "wisp-jailer"): a separate program sharing nothing with the VMM.
JAILER_SRCS := jailer/jailer.c jailer/jail_config.c
$(BUILD)/wisp-jailer: $(JAILER_SRCS) jailer/jail_config.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Ijailer -o $@ $(JAILER_SRCS)

# A static program the jailer tests run in a jail: it prints what it sees from inside.
$(BUILD)/tests/jail-probe: tests/integration/jail_probe.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

# --- guest: kernel (cached outside the clone), init and initramfs images -------------
$(BUILD)/guest/kernel-dir: FORCE
	@mkdir -p $(dir $@)
	@guest/build-kernel.sh > $@.tmp && mv $@.tmp $@

# A kernel from Firecracker's own guest configuration (no MP table parser, no
# virtio_mmio.device=: it needs ACPI), cached beside the guest kernel (about 8 minutes on
# 2 cores, once); the integration suite boots it (tests/integration/test_firecracker_kernel.py).
# Without the configuration file the file is empty and the test says "skip".
$(BUILD)/guest/firecracker-kernel-dir: FORCE
	@mkdir -p $(dir $@)
	@if [ -f "$(FIRECRACKER_GUEST_CONFIG)" ]; then \
		guest/build-kernel.sh --full-config $(FIRECRACKER_GUEST_CONFIG) > $@.tmp && mv $@.tmp $@; \
	else \
		echo "no $(FIRECRACKER_GUEST_CONFIG): no Firecracker-configuration kernel (its test is skipped)"; \
		: > $@; \
	fi

firecracker-kernel: deps $(BUILD)/guest/firecracker-kernel-dir
	@test -s $(BUILD)/guest/firecracker-kernel-dir || \
		{ echo "set FIRECRACKER_GUEST_CONFIG to Firecracker's guest kernel configuration"; exit 2; }
	@echo "Firecracker-configuration kernel: $$(cat $(BUILD)/guest/firecracker-kernel-dir)"

$(BUILD)/guest/init: guest/init/init.c
	@mkdir -p $(dir $@)
	$(CC) -static -std=gnu11 -Wall -Wextra -Werror -O2 -o $@ $<

$(BUILD)/guest/initrd.gz: $(BUILD)/guest/init guest/mkinitramfs.sh guest/mkcpio.py
	guest/mkinitramfs.sh $@ $(BUILD)/guest/init

$(BUILD)/guest/initrd-busybox.gz: $(BUILD)/guest/init guest/mkinitramfs.sh guest/mkcpio.py
	guest/mkinitramfs.sh $@ $(BUILD)/guest/init --busybox

$(BUILD)/tests/hostile.elf: $(wildcard tests/guest/*)
	@mkdir -p $(dir $@)
	tests/guest/build.sh $@

# The snapshot tests' and benchmark's guest program (a static Linux binary, tests/guest).
$(BUILD)/tests/snapguest: tests/guest/snapguest.c
	@mkdir -p $(dir $@)
	$(CC) -static -std=gnu11 -Wall -Wextra -Werror -O2 -o $@ $<

guest: deps $(BUILD)/guest/kernel-dir $(BUILD)/guest/initrd.gz $(BUILD)/guest/initrd-busybox.gz \
	$(BUILD)/tests/hostile.elf $(BUILD)/tests/snapguest

# --- tests ---------------------------------------------------------------------------
$(BUILD)/tests/%: tests/unit/%.c $(PURE_SRCS) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ivmm -o $@ $< $(PURE_SRCS) -lcmocka $(LIBS)

# wispctl's unit test links its pure logic only (an explicit rule beats the pattern).
$(BUILD)/tests/test_wispctl: tests/unit/test_wispctl.c vmm/tools/wispctl_lib.c \
		vmm/tools/wispctl_lib.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ivmm/tools -o $@ $(filter %.c,$^) -lcmocka

$(BUILD)/asan/test_wispctl: tests/unit/test_wispctl.c vmm/tools/wispctl_lib.c \
		vmm/tools/wispctl_lib.h
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 -Wall -Wextra -Werror -O1 -g -pthread -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=all -Ivmm/tools -o $@ \
		$(filter %.c,$^) -lcmocka

# The jailer's unit tests link its pure part only.
$(BUILD)/tests/test_jailer: tests/unit/test_jailer.c jailer/jail_config.c jailer/jail_config.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ijailer -o $@ $(filter %.c,$^) -lcmocka

$(BUILD)/asan/test_jailer: tests/unit/test_jailer.c jailer/jail_config.c jailer/jail_config.h
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 -Wall -Wextra -Werror -O1 -g -pthread -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=all -Ijailer -o $@ \
		$(filter %.c,$^) -lcmocka

# The live Uffd test runs the real handler.
$(BUILD)/tests/test_uffd_live $(BUILD)/asan/test_uffd_live: $(BUILD)/wisp-uffd-handler

$(BUILD)/asan/%: tests/unit/%.c $(PURE_SRCS) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 -Wall -Wextra -Werror -O1 -g -pthread -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=all -Ivmm -o $@ $< \
		$(PURE_SRCS) -lcmocka $(LIBS)

$(BUILD)/fuzz/fuzz_virtqueue: tests/fuzz/fuzz_virtqueue.c vmm/devices/virtio/virtqueue.c \
		vmm/memory.c vmm/log.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -Ivmm -o $@ $(filter %.c,$^)

$(BUILD)/fuzz/fuzz_http: tests/fuzz/fuzz_http.c api/http.c api/http.h
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -Iapi -o $@ $(filter %.c,$^)

# The whole request path: HTTP, routing, JSON, configuration (the VMM is stubbed).
$(BUILD)/fuzz/fuzz_api: tests/fuzz/fuzz_api.c api/api.c api/http.c api/fc_config.c \
		api/fc_devices.c api/fc_config_file.c api/fc_schema.c api/fc_snapshot.c \
		api/fc_balloon.c api/json_fields.c \
		vmm/config.c vmm/log.c vmm/metrics.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -Ivmm -o $@ \
		$(filter %.c,$^) -ljansson

# The snapshot state file reader and snapshot-info's printer.
$(BUILD)/fuzz/fuzz_snapshot: tests/fuzz/fuzz_snapshot.c vmm/snapshot_format.c \
		vmm/snapshot_info.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -Ivmm -o $@ \
		$(filter %.c,$^) -ljansson

FUZZERS := $(BUILD)/fuzz/fuzz_virtqueue $(BUILD)/fuzz/fuzz_http $(BUILD)/fuzz/fuzz_api \
	$(BUILD)/fuzz/fuzz_snapshot

unit: deps $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)

check-asan: deps $(ASAN_BINS)
	@tests/run-unit.sh $(ASAN_BINS)

# Integration tests need /dev/kvm: directly when this host has it, else through
# ci/kvm-harness (a nested Linux under QEMU TCG that offers a real /dev/kvm).
INTEGRATION_ENV = WISP_BIN=$(abspath $(BUILD)/wisp) \
	WISP_KERNEL_DIR=$$(cat $(BUILD)/guest/kernel-dir) \
	WISP_INITRD=$(abspath $(BUILD)/guest/initrd.gz) \
	WISP_INITRD_BUSYBOX=$(abspath $(BUILD)/guest/initrd-busybox.gz) \
	WISP_INIT=$(abspath $(BUILD)/guest/init) \
	WISP_HOSTILE_GUEST=$(abspath $(BUILD)/tests/hostile.elf) \
	WISP_JAILER=$(abspath $(BUILD)/wisp-jailer) \
	WISP_SECCOMP_TEST_BIN=$(abspath $(BUILD)/wisp-seccomp-test) \
	WISP_JAIL_PROBE=$(abspath $(BUILD)/tests/jail-probe) \
	WISP_FIRECRACKER_KERNEL_DIR=$$(cat $(BUILD)/guest/firecracker-kernel-dir 2>/dev/null)

# TESTS="substring ...": only the integration tests whose names contain one of them.
integration: all guest $(BUILD)/guest/firecracker-kernel-dir $(BUILD)/tests/jail-probe \
		$(BUILD)/wisp-seccomp-test
	@$(INTEGRATION_ENV) ci/with-kvm.sh python3 tests/integration/run.py $(TESTS)

test: deps all guest $(BUILD)/guest/firecracker-kernel-dir $(BUILD)/tests/jail-probe $(BUILD)/wisp-seccomp-test $(UNIT_BINS) $(FUZZERS)
	@$(INTEGRATION_ENV) WISP_FUZZERS="$(abspath $(FUZZERS))" \
		FIRECRACKER_SWAGGER="$(FIRECRACKER_SWAGGER)" tests/run-all.sh $(UNIT_BINS)

# That kernel alone: 4 vCPUs, a disk and a network found through ACPI.
test-firecracker-kernel:
	@$(MAKE) --no-print-directory integration TESTS=firecracker_kernel

# CLONES: how many clones the demo starts (default 50).
demo: deps all guest
	@$(INTEGRATION_ENV) ci/with-kvm.sh python3 ci/demo.py --clones $${CLONES:-50}

# COUNT wisp processes one after another, REQUESTS API requests against one: prints the
# figures, fails on growth or leftovers (tests/soak/soak.py).
soak: deps all guest
	@$(INTEGRATION_ENV) ci/with-kvm.sh python3 tests/soak/soak.py --count $${COUNT:-300} \
		--requests $${REQUESTS:-10000}

bench: bench-boot bench-io

# JAILED=1: also boots over the API with --no-seccomp, with the filters, and under
# wisp-jailer, and prints what the filters and the jail cost as ratios.
bench-boot: deps all guest
	@$(INTEGRATION_ENV) ci/with-kvm.sh python3 tests/bench/bench_boot.py \
		--runs $${RUNS:-10} $(if $(filter 1,$(JAILED)),--jailed) --json $(abspath $(BUILD)/bench-boot.json)

# The same stock Debian kernel (and the stripped guest) under wisp and QEMU microvm: the
# kernel log's warning and error lines that only one of them shows (README "ACPI").
compare-guest-logs: deps all guest
	@$(INTEGRATION_ENV) ci/with-kvm.sh python3 tests/bench/compare_guest_logs.py \
		--json $(abspath $(BUILD)/guest-logs.json) $(COMPARE_ARGS)

bench-io: deps all guest
	@$(INTEGRATION_ENV) ci/with-kvm.sh python3 tests/bench/bench_io.py \
		--runs $${RUNS:-5} $(BENCH_IO_ARGS) --json $(abspath $(BUILD)/bench-io.json)

# Snapshot create/restore (File and Uffd backends) against cold boot and QEMU's
# migrate-to-file, 128 MiB and 2 GiB guests (tests/bench/bench_snapshot.py). JAILED=1: also
# File restores with --no-seccomp and under wisp-jailer; BENCH_SNAPSHOT_ARGS: e.g. --sizes 128.
bench-snapshot: deps all guest
	@$(INTEGRATION_ENV) ci/with-kvm.sh python3 tests/bench/bench_snapshot.py \
		--runs $${RUNS:-10} $(if $(filter 1,$(JAILED)),--jailed) $(BENCH_SNAPSHOT_ARGS) \
		--json $(abspath $(BUILD)/bench-snapshot.json)

# Clones of one 128 MiB snapshot at once through wispctl, up to COUNT (default 1000), and
# what each costs; the peer: PEERS (default 10) QEMU microvm VMs (tests/bench/bench_density.py).
# The emulated machine gets WISP_HARNESS_MEM MiB (default here 12288) and WISP_HARNESS_SMP CPUs.
bench-density: deps all guest
	@WISP_HARNESS_MEM=$${WISP_HARNESS_MEM:-12288} $(INTEGRATION_ENV) ci/with-kvm.sh \
		python3 tests/bench/bench_density.py --count $${COUNT:-1000} \
		--peer-count $${PEERS:-10} --json $(abspath $(BUILD)/bench-density.json)

FORMAT_FILES = $(shell find vmm api tests guest/init jailer -name '*.[ch]')
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD)
