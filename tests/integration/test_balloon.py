"""virtio-balloon on real KVM: inflating gives the guest's memory back to the host (wisp's
RSS drops) and GET /balloon/statistics reports it, deflating gives it back to the guest,
deflate_on_oom lets a guest allocate past what the balloon left it, free page reporting
returns memory the guest frees, and a VM restored from a snapshot keeps a working balloon
(File backend; and Uffd with the shipped handler, which hears of released pages).

Where the host's RSS must show what the balloon takes, the guest first touches nearly all
its free memory (one dd buffer of MemFree less 4 MiB, freed again when dd exits), so that
whichever free pages the balloon takes are backed on the host. Guests wait on the
console (`read`) where the host must act first."""
import os
import re
import subprocess
import tempfile
import time

from apitest import SOCKET_DIR, ApiVm, guest_cmdline
from test_virtio import SCRATCH
from wisptest import check, start_uffd_handler

MIB = 1 << 20

# Touches all the guest's free memory but 4 MiB once, and gives it back; prints touched-N.
TOUCH = ("n=$(awk '/MemFree/ {print int($2 / 1024) - 4}' /proc/meminfo); "
         "dd if=/dev/zero of=/dev/null bs=${n}M count=1 2>/dev/null; echo touched-$n; ")
# Fills a fresh tmpfs with all the guest's available memory but a margin; prints filled-N.
FILL = ("mkdir -p /m; mount -t tmpfs -o size=95% tmpfs /m; "
        "n=$(awk '/MemAvailable/ {print int($2 / 1024) - 24}' /proc/meminfo); "
        "dd if=/dev/zero of=/m/fill bs=1M count=$n 2>/dev/null; echo filled-$n; ")


def _check(condition, message, vm):
    check(condition, message + "\n" + vm.describe())


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def boot(vm, command, mem_mib, balloon):
    vm.ok("PUT", "/boot-source", {"kernel_image_path": vm.env.vmlinux,
                                  "initrd_path": vm.env.initrd_busybox,
                                  "boot_args": guest_cmdline(command)})
    vm.ok("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": mem_mib})
    vm.ok("PUT", "/balloon", balloon)
    vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})


def send_line(vm, line):
    vm.proc.stdin.write(line.encode() + b"\n")
    vm.proc.stdin.flush()


def wait_stats(vm, what, predicate, timeout=180):
    """Polls GET /balloon/statistics until predicate(stats); returns them."""
    deadline = time.monotonic() + timeout
    stats = None
    while time.monotonic() < deadline:
        status, stats = vm.request("GET", "/balloon/statistics")
        _check(status == 200, f"GET /balloon/statistics: {status} {stats}", vm)
        if predicate(stats):
            return stats
        time.sleep(0.5)
    raise AssertionError(f"the balloon statistics never showed {what} within {timeout} s: "
                         f"{stats}\n" + vm.describe())


def wait_rss_drop(vm, pid, peak_kib, drop_kib, timeout=120):
    """Waits until the RSS is drop_kib below peak_kib; returns (rss, seconds waited)."""
    start = time.monotonic()
    while True:
        rss = rss_kib(pid)
        if peak_kib - rss >= drop_kib or time.monotonic() - start > timeout:
            return rss, time.monotonic() - start
        time.sleep(0.25)


def new_vm(env, name):
    vm = ApiVm(env, name=name, stdin=subprocess.PIPE)
    vm.env = env
    return vm


def test_inflating_64_mib_returns_it_to_the_host_and_deflating_gives_it_back(env):
    command = TOUCH + "sleep 3600"
    with new_vm(env, "balloon-inflate") as vm:
        boot(vm, command, 256, {"amount_mib": 0, "deflate_on_oom": False,
                                "stats_polling_interval_s": 1})
        vm.wait_for("touched-")
        first = wait_stats(vm, "the guest's memory", lambda s: "total_memory" in s)
        _check(first["target_mib"] == 0 and first["actual_mib"] == 0,
               f"an empty balloon reports {first}", vm)
        rss_before = rss_kib(vm.proc.pid)
        vm.ok("PATCH", "/balloon", {"amount_mib": 64})
        inflated = wait_stats(vm, "64 MiB inflated", lambda s: s["actual_mib"] == 64 and
                              s["total_memory"] <= first["total_memory"] - 60 * MIB)
        rss_after, waited = wait_rss_drop(vm, vm.proc.pid, rss_before, 60 * 1024)
        print(f"# inflating 64 MiB: wisp's RSS {rss_before} -> {rss_after} KiB "
              f"({(rss_before - rss_after) / 1024:.1f} MiB returned, {waited:.1f} s after "
              f"the guest's driver reported it)")
        _check(rss_before - rss_after >= 60 * 1024,
               f"inflating 64 MiB lowered wisp's RSS by {rss_before - rss_after} KiB only "
               f"({rss_before} -> {rss_after})", vm)
        _check(inflated["target_pages"] == 64 * 256 and inflated["actual_pages"] == 64 * 256,
               f"statistics after inflating: {inflated}", vm)
        for field in ("free_memory", "available_memory", "major_faults", "minor_faults"):
            _check(field in inflated, f"the guest's statistics lack {field}: {inflated}", vm)
        config = vm.ok("GET", "/balloon")
        _check(config["amount_mib"] == 64, f"GET /balloon after the PATCH: {config}", vm)
        # Deflate: the guest gets its memory back (its total is whole again).
        vm.ok("PATCH", "/balloon", {"amount_mib": 0})
        deflated = wait_stats(vm, "the balloon deflated", lambda s: s["actual_mib"] == 0 and
                              s["total_memory"] == first["total_memory"])
        _check(deflated["target_mib"] == 0, f"statistics after deflating: {deflated}", vm)
        # And it can use it: it has as much available as before the balloon.
        _check(deflated["available_memory"] >= first["available_memory"] - 8 * MIB,
               f"after deflating the guest has {deflated['available_memory']} bytes "
               f"available, before the balloon {first['available_memory']}", vm)


def test_deflate_on_oom_lets_the_guest_allocate_past_the_balloon(env):
    # 192 MiB with a 96 MiB balloon: the guest then fills a tmpfs with 120 MiB, which only
    # fits if the balloon gives pages back under memory pressure.
    command = ("echo waiting; read go; mkdir -p /m; mount -t tmpfs -o size=95% tmpfs /m; "
               "dd if=/dev/zero of=/m/fill bs=1M count=120 2>/dev/null && echo alloc-ok; "
               "ls -l /m/fill; sleep 3600")
    with new_vm(env, "balloon-oom") as vm:
        boot(vm, command, 192, {"amount_mib": 96, "deflate_on_oom": True,
                                "stats_polling_interval_s": 1})
        vm.wait_for("waiting")
        wait_stats(vm, "96 MiB inflated at boot", lambda s: s["actual_mib"] == 96)
        send_line(vm, "go")
        vm.wait_for("/m/fill", timeout=300)
        _check("alloc-ok" in vm.console, "the guest's allocation past the balloon failed", vm)
        _check(vm.proc.poll() is None, "wisp ended", vm)
        stats = wait_stats(vm, "the balloon deflated", lambda s: s["actual_mib"] < 96)
        print(f"# deflate on OOM: the balloon went from 96 MiB to {stats['actual_mib']} MiB "
              f"for a 120 MiB allocation")
        status, info = vm.request("GET", "/")
        _check(info["state"] == "Running", f"the VM after the OOM: {info}", vm)


def test_free_page_reporting_returns_memory_the_guest_frees(env):
    command = FILL + "read go; rm /m/fill; echo freed; sleep 3600"
    with new_vm(env, "balloon-report") as vm:
        boot(vm, command, 256, {"amount_mib": 0, "deflate_on_oom": False,
                                "free_page_reporting": True})
        vm.wait_for("filled-")
        time.sleep(1)
        peak = rss_kib(vm.proc.pid)
        filled = int(vm.console.split("filled-")[1].split()[0])
        send_line(vm, "go")
        vm.wait_for("freed")
        rss, waited = wait_rss_drop(vm, vm.proc.pid, peak, 50 * 1024)
        print(f"# free page reporting: the guest freed {filled} MiB; wisp's RSS {peak} -> "
              f"{rss} KiB ({(peak - rss) / 1024:.1f} MiB returned) {waited:.1f} s later")
        _check(filled >= 100, f"the guest filled only {filled} MiB", vm)
        _check(peak - rss >= 50 * 1024,
               f"wisp's RSS dropped by {peak - rss} KiB only after the guest freed "
               f"{filled} MiB ({peak} -> {rss})", vm)


def test_a_restored_clone_keeps_a_working_balloon(env):
    command = TOUCH + "echo freed; read go; echo clone-alive; sleep 3600"
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        state, mem = os.path.join(tmp, "vm.state"), os.path.join(tmp, "vm.mem")
        with new_vm(env, "balloon-origin") as vm:
            boot(vm, command, 256, {"amount_mib": 16, "deflate_on_oom": False,
                                    "stats_polling_interval_s": 1})
            vm.wait_for("freed")
            wait_stats(vm, "16 MiB inflated", lambda s: s["actual_mib"] == 16)
            vm.ok("PATCH", "/vm", {"state": "Paused"})
            vm.ok("PUT", "/snapshot/create", {"snapshot_path": state, "mem_file_path": mem})
        with new_vm(env, "balloon-clone") as clone:
            clone.ok("PUT", "/snapshot/load", {"snapshot_path": state,
                                               "mem_backend": {"backend_type": "File",
                                                               "backend_path": mem},
                                               "resume_vm": True})
            config = clone.ok("GET", "/balloon")
            _check(config["amount_mib"] == 16 and config["stats_polling_interval_s"] == 1,
                   f"the clone's balloon configuration: {config}", clone)
            stats = wait_stats(clone, "the clone's 16 MiB", lambda s: s["actual_mib"] == 16)
            rss_before = rss_kib(clone.proc.pid)
            clone.ok("PATCH", "/balloon", {"amount_mib": 80})
            stats = wait_stats(clone, "the clone inflated to 80 MiB",
                               lambda s: s["actual_mib"] == 80)
            deflated = None
            clone.ok("PATCH", "/balloon", {"amount_mib": 0})
            deflated = wait_stats(clone, "the clone deflated", lambda s: s["actual_mib"] == 0)
            send_line(clone, "go")
            clone.wait_for("clone-alive")
            print(f"# restored clone: balloon 16 -> 80 -> 0 MiB, RSS at the PATCH "
                  f"{rss_before} KiB")
            _check(stats["target_mib"] == 80 and deflated["target_mib"] == 0,
                   f"the clone's statistics: {stats} {deflated}", clone)


def test_a_uffd_restored_clone_balloon_reaches_the_handler(env):
    """A clone restored with the Uffd backend and the shipped handler
    (build/wisp-uffd-handler): inflating its balloon releases guest pages with
    MADV_DONTNEED, which the kernel reports to the handler as UFFD_EVENT_REMOVE (its
    summary counts them); after deflating, the guest touches 96 MiB again (removed pages
    are served as zero pages) and keeps working."""
    handler = os.path.join(os.path.dirname(env.wisp), "wisp-uffd-handler")
    check(os.access(handler, os.X_OK), f"the Uffd handler {handler} is missing")
    # After the deflate: 96 MiB touched (each page a fault the handler serves, slow when
    # emulated), then alive.
    command = (TOUCH + "echo freed; read go; "
               "dd if=/dev/zero of=/dev/null bs=96M count=1 2>/dev/null; "
               "echo clone-alive; sleep 3600")
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        state, mem = os.path.join(tmp, "vm.state"), os.path.join(tmp, "vm.mem")
        with new_vm(env, "balloon-uffd-origin") as vm:
            boot(vm, command, 256, {"amount_mib": 0, "deflate_on_oom": False,
                                    "stats_polling_interval_s": 1})
            vm.wait_for("freed")
            wait_stats(vm, "the guest's memory", lambda s: "total_memory" in s)
            vm.ok("PATCH", "/vm", {"state": "Paused"})
            vm.ok("PUT", "/snapshot/create", {"snapshot_path": state, "mem_file_path": mem})
        uffd_sock = os.path.join(SOCKET_DIR, f"wisp-balloon-uffd-{os.getpid()}.sock")
        proc = start_uffd_handler(handler, uffd_sock, mem)
        try:
            with new_vm(env, "balloon-uffd-clone") as clone:
                clone.ok("PUT", "/snapshot/load", {"snapshot_path": state,
                                                   "mem_backend": {"backend_type": "Uffd",
                                                                   "backend_path": uffd_sock},
                                                   "resume_vm": True})
                clone.ok("PATCH", "/balloon", {"amount_mib": 64})
                inflated = wait_stats(clone, "the Uffd clone inflated to 64 MiB",
                                      lambda s: s["actual_mib"] == 64)
                clone.ok("PATCH", "/balloon", {"amount_mib": 0})
                deflated = wait_stats(clone, "the Uffd clone deflated",
                                      lambda s: s["actual_mib"] == 0)
                send_line(clone, "go")
                clone.wait_for("clone-alive", timeout=300)
                _check(inflated["target_mib"] == 64 and deflated["target_mib"] == 0,
                       f"the Uffd clone's statistics: {inflated} {deflated}", clone)
            # wisp is gone: the handler sees its end and prints its summary.
            try:
                out = proc.communicate(timeout=30)[0].decode(errors="replace")
            except subprocess.TimeoutExpired:
                proc.kill()
                out = proc.communicate()[0].decode(errors="replace")
                raise AssertionError(f"the Uffd handler did not end with its VMM: {out}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        summary = re.search(r"summary: faulted_pages=(\d+) zero_pages=(\d+) .*"
                            r"remove_events=(\d+)", out)
        print(f"# Uffd clone, balloon 0 -> 64 -> 0 MiB: {summary.group(0) if summary else out}")
        check(summary and int(summary.group(3)) > 0,
              f"the handler saw no UFFD_EVENT_REMOVE from the balloon: {out}")
        check(proc.returncode == 0, f"the Uffd handler's exit status {proc.returncode}: {out}")
