"""The Firecracker-compatible API on real KVM: a guest booted with curl exactly as
Firecracker's getting-started guide does it, pause/resume, drive updates, every documented
error answered with 400 and a fault_message, slow clients that block nobody, and
--config-file."""
import json
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

from apitest import ApiVm, guest_cmdline
from test_virtio import SCRATCH, make_rootfs
from wisptest import check

NETNS = f"wisp-api-{os.getpid()}"
HOST_IP, GUEST_IP = "172.30.78.1", "172.30.78.2"


def _check_api(condition, message, vm):
    check(condition, message + "\n" + vm.describe())


def _netns(*args):
    subprocess.run(["ip", "netns", "exec", NETNS, *args], check=True)


def test_boot_with_curl_as_in_firecrackers_getting_started_guide(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        root = make_rootfs(env, tmp)
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
        try:
            _netns("ip", "link", "set", "lo", "up")
            _netns("ip", "tuntap", "add", "dev", "apitap0", "mode", "tap")
            _netns("ip", "addr", "add", f"{HOST_IP}/24", "dev", "apitap0")
            _netns("ip", "link", "set", "apitap0", "up")
            command = (f"ip addr add {GUEST_IP}/24 dev eth0; ip link set eth0 up; "
                       f"cat /sys/class/net/eth0/address; busybox ping -c 1 -W 20 {HOST_IP} && "
                       "echo ping-ok; cat /proc/mounts; busybox nproc")
            with ApiVm(env, prefix=("ip", "netns", "exec", NETNS)) as vm:
                status, info = vm.request("GET", "/")
                _check_api(status == 200 and info["state"] == "Not started",
                           f"GET / before boot: {status} {info}", vm)
                vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                              "boot_args": guest_cmdline(command)})
                vm.ok("PUT", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": root,
                                                "is_root_device": True,
                                                "is_read_only": False})
                vm.ok("PUT", "/network-interfaces/eth0",
                      {"iface_id": "eth0", "guest_mac": "06:00:ac:10:00:02",
                       "host_dev_name": "apitap0"})
                vm.ok("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256,
                                                 "track_dirty_pages": True})
                config = vm.ok("GET", "/machine-config")
                _check_api(config["vcpu_count"] == 2 and config["mem_size_mib"] == 256
                           and config["track_dirty_pages"] is True,
                           f"GET /machine-config: {config}", vm)
                vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
                status, info = vm.request("GET", "/")
                _check_api(status == 200 and info["state"] == "Running",
                           f"GET / after InstanceStart: {status} {info}", vm)
                vm.wait_for("wisp-init: command exit status")
                exit_status = vm.wait()
                console = vm.console
                _check_api("06:00:ac:10:00:02" in console, "the guest MAC is not the one set",
                           vm)
                _check_api("ping-ok" in console, "the guest could not reach the host", vm)
                _check_api("/dev/root / ext4 rw" in console or " / ext4 rw" in console,
                           "the root drive is not / (ext4, rw)", vm)
                _check_api("\n2\r\n" in console or "\n2\n" in console,
                           "nproc should say 2", vm)
                _check_api(exit_status == 0, f"wisp ended with {exit_status}", vm)
        finally:
            subprocess.run(["ip", "netns", "delete", NETNS], check=False)


def test_pause_stops_the_guest_and_resume_continues_it(env):
    command = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done"
    with ApiVm(env) as vm:
        vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                      "initrd_path": env.initrd_busybox,
                                      "boot_args": guest_cmdline(command)})
        vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
        vm.wait_for("tick-3")
        vm.ok("PATCH", "/vm", {"state": "Paused"})
        status, info = vm.request("GET", "/")
        _check_api(info["state"] == "Paused", f"GET / while paused: {info}", vm)
        time.sleep(0.5)  # a tick already in the UART's FIFO may still come out
        frozen = vm.console.count("tick-")
        time.sleep(3)
        _check_api(vm.console.count("tick-") == frozen,
                   "the guest kept printing while paused", vm)
        vm.ok("PATCH", "/vm", {"state": "Resumed"})
        vm.wait_for(f"tick-{frozen + 3}", timeout=60)
        status, info = vm.request("GET", "/")
        _check_api(info["state"] == "Running", f"GET / after resume: {info}", vm)


def test_drive_path_can_be_patched_after_start_but_not_before(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        first, second = os.path.join(tmp, "first.img"), os.path.join(tmp, "second.img")
        with open(first, "wb") as f:
            f.write(b"FIRSTIMG" + bytes(1024 * 1024 - 8))
        with open(second, "wb") as f:
            f.write(b"SECONDIM" + bytes(2 * 1024 * 1024 - 8))
        # The guest reports the drive's size and first bytes until they change.
        command = ("echo start; while true; do s=$(cat /sys/block/vda/size); "
                   "echo size-$s; if [ $s = 4096 ]; then "
                   "dd if=/dev/vda bs=4096 count=1 iflag=direct | head -c 8; echo; break; fi; "
                   "sleep 0.3; done")
        with ApiVm(env) as vm:
            vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                          "initrd_path": env.initrd_busybox,
                                          "boot_args": guest_cmdline(command)})
            vm.ok("PUT", "/drives/data", {"drive_id": "data", "path_on_host": first,
                                          "is_root_device": False})
            status, reply = vm.request("PATCH", "/drives/data",
                                       {"drive_id": "data", "path_on_host": second})
            _check_api(status == 400 and "before starting" in reply["fault_message"],
                       f"PATCH before boot should be 400: {status} {reply}", vm)
            vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
            vm.wait_for("size-2048")
            vm.ok("PATCH", "/drives/data", {"drive_id": "data", "path_on_host": second})
            vm.wait_for("SECONDIM", timeout=60)
            check(vm.wait() == 0, "wisp should end with 0\n" + vm.describe())


# (method, path, body, words the fault_message must contain). All before InstanceStart.
ERROR_CASES = [
    ("GET", "/no-such-path", None, "Invalid request method and/or path"),
    ("DELETE", "/", None, "DELETE"),
    ("POST", "/actions", {"action_type": "InstanceStart"}, "POST"),
    ("PUT", "/", {}, "Invalid request method and/or path"),
    ("GET", "/actions", None, "Invalid request method and/or path"),
    ("PUT", "/boot-source", "{not json", "deserializing"),
    ("PUT", "/boot-source", None, "body"),
    ("PUT", "/boot-source", {"kernel_image_path": "/k", "foo": 1}, "foo"),
    ("PUT", "/boot-source", {"boot_args": "x"}, "kernel_image_path"),
    ("PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 128}, "vcpu_count"),
    ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": "lots"}, "mem_size_mib"),
    ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128,
                                "huge_pages": "2M"}, "2M"),
    ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128,
                                "cpu_template": "T2"}, "T2"),
    ("PUT", "/drives/a", {"drive_id": "b", "path_on_host": "/x", "is_root_device": False},
     "does not match"),
    ("PUT", "/drives/a", {"drive_id": "a", "path_on_host": "/x", "is_root_device": False,
                          "io_engine": "Turbo"}, "io_engine"),
    ("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0",
                                         "guest_mac": "zz"}, "guest_mac"),
    ("PUT", "/actions", {"action_type": "Explode"}, "Explode"),
    ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}, "before starting"),
    ("PUT", "/actions", {"action_type": "InstanceStart"}, "kernel"),
    ("PATCH", "/vm", {"state": "Paused"}, "before starting"),
    ("PATCH", "/drives/a", {"drive_id": "a", "path_on_host": "/y"}, "before starting"),
    ("PUT", "/snapshot/create", {"snapshot_path": "/s", "mem_file_path": "/m"},
     "before starting"),
    ("PUT", "/snapshot/load", {"snapshot_path": "/s"},
     "either `mem_backend` or `mem_file_path` is required"),
    ("PUT", "/balloon", {"amount_mib": 1, "deflate_on_oom": False}, "not supported"),
]


def test_every_documented_error_is_400_with_a_fault_message(env):
    with ApiVm(env) as vm:
        for method, path, body, words in ERROR_CASES:
            status, reply = vm.request(method, path, body)
            _check_api(status == 400, f"{method} {path} {body!r}: status {status}, not 400",
                       vm)
            _check_api(isinstance(reply, dict) and list(reply) == ["fault_message"],
                       f"{method} {path}: the body is not {{fault_message}}: {reply!r}", vm)
            _check_api(words in reply["fault_message"],
                       f"{method} {path}: the fault_message does not say '{words}': "
                       f"{reply['fault_message']!r}", vm)
        # Too large a body: 400 naming the limit, before the body is even read.
        big = json.dumps({"kernel_image_path": "x" * 60000})
        status, reply = vm.request("PUT", "/boot-source", big)
        _check_api(status == 400 and "51200" in reply["fault_message"],
                   f"a 60 kB body: {status} {reply}", vm)
        # Malformed HTTP, sent raw.
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(30)
            raw.connect(vm.socket)
            raw.sendall(b"GARBAGE\r\n\r\n")
            answer = raw.recv(4096).decode(errors="replace")
        _check_api(answer.startswith("HTTP/1.1 400") and "fault_message" in answer,
                   f"malformed HTTP: {answer!r}", vm)
        # The API still works and nothing was configured by the failures.
        config = vm.ok("GET", "/vm/config")
        _check_api(config["drives"] == [] and config["network-interfaces"] == [],
                   f"failed requests changed the configuration: {config}", vm)


LOAD_BODY = {"snapshot_path": "/nonexistent/vm.state",
             "mem_backend": {"backend_type": "File", "backend_path": "/nonexistent/vm.mem"}}


def test_snapshot_requests_are_refused_where_firecracker_refuses_them(env):
    """The states in which Firecracker refuses /snapshot/create and /snapshot/load, with
    its texts; none of these requests reaches the snapshot code."""
    with ApiVm(env) as vm:
        # A fresh process takes a load, but not once a boot resource is configured.
        vm.ok("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128})
        status, reply = vm.request("PUT", "/snapshot/load", LOAD_BODY)
        _check_api(status == 400 and reply["fault_message"] ==
                   "Load snapshot error: Loading a microVM snapshot not allowed after "
                   "configuring boot-specific resources.", f"load after config: {reply}", vm)
        status, reply = vm.request("PUT", "/snapshot/create",
                                   {"snapshot_path": "/s", "mem_file_path": "/m"})
        _check_api(status == 400 and "before starting the microVM" in reply["fault_message"],
                   f"create before boot: {reply}", vm)
        vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                      "initrd_path": env.initrd_busybox,
                                      "boot_args": guest_cmdline("echo up; sleep 600")})
        vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
        vm.wait_for("up")
        status, reply = vm.request("PUT", "/snapshot/create",
                                   {"snapshot_path": "/s", "mem_file_path": "/m"})
        _check_api(status == 400 and reply["fault_message"] ==
                   "Create snapshot error: Cannot save the microVM state: Operation not "
                   "allowed: save/restore unavailable while running",
                   f"create on a running VM: {reply}", vm)
        status, reply = vm.request("PUT", "/snapshot/load", LOAD_BODY)
        _check_api(status == 400 and "after starting the microVM" in reply["fault_message"],
                   f"load after boot: {reply}", vm)
        status, info = vm.request("GET", "/")
        _check_api(info["state"] == "Running", f"the refusals changed the state: {info}", vm)
    # The command line refuses --restore beside what would boot a VM, before any KVM work.
    bad = env.run(["--restore", "/s", "--mem-file", "/m", "--resume", "--kernel", env.vmlinux])
    check(bad.status == 2 and "--kernel cannot be given with it" in bad.stderr,
          "--restore with --kernel should give exit 2 naming --kernel", bad)


def _ticks(console):
    return [int(t) for t in re.findall(r"tick-(\d+)", console)]


def _check_goes_on(vm, stopped, what):
    """The restored guest's counter goes on after `stopped` (a guest booted again would
    print tick-1 first)."""
    vm.wait_for(f"tick-{stopped + 3}", timeout=120)
    _check_api(min(_ticks(vm.console)) > stopped,
               f"{what}: the guest's counter did not go on from tick-{stopped}", vm)


def test_snapshot_front_ends_create_then_load_through_the_api_and_restore(env):
    """The API and command-line front ends on the real snapshot code: a paused guest
    snapshotted with PUT /snapshot/create, loaded in a new process with PUT
    /snapshot/load (paused, then resumed with PATCH /vm) and with --restore --resume;
    its counter goes on from where it stopped each time."""
    command = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done"
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        state, mem = os.path.join(tmp, "vm.state"), os.path.join(tmp, "vm.mem")
        with ApiVm(env, name="snap-src") as vm:
            vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                          "initrd_path": env.initrd_busybox,
                                          "boot_args": guest_cmdline(command)})
            vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
            vm.wait_for("tick-5")
            vm.ok("PATCH", "/vm", {"state": "Paused"})
            time.sleep(0.5)  # a tick already in the UART's FIFO may still come out
            vm.ok("PUT", "/snapshot/create", {"snapshot_path": state, "mem_file_path": mem})
            stopped = max(_ticks(vm.console))
            _check_api(os.path.getsize(state) > 0 and os.path.getsize(mem) > 0,
                       "the snapshot files are empty", vm)
        with ApiVm(env, name="snap-load") as vm:
            vm.ok("PUT", "/snapshot/load", {"snapshot_path": state,
                                            "mem_backend": {"backend_type": "File",
                                                            "backend_path": mem}})
            status, info = vm.request("GET", "/")
            _check_api(info["state"] == "Paused", f"GET / after the load: {info}", vm)
            config = vm.ok("GET", "/vm/config")
            _check_api(config["boot-source"]["kernel_image_path"] == env.vmlinux,
                       f"GET /vm/config after the load: {config}", vm)
            status, reply = vm.request("PUT", "/snapshot/load", {"snapshot_path": state,
                                                                 "mem_file_path": mem})
            _check_api(status == 400 and "after starting" in reply["fault_message"],
                       f"a second load: {status} {reply}", vm)
            time.sleep(1)  # paused: nothing may come out meanwhile
            _check_api(not _ticks(vm.console), "the guest ran before PATCH /vm", vm)
            vm.ok("PATCH", "/vm", {"state": "Resumed"})
            _check_goes_on(vm, stopped, "PUT /snapshot/load")
        with ApiVm(env, ["--restore", state, "--mem-file", mem, "--resume"],
                   name="snap-cli") as vm:
            _check_goes_on(vm, stopped, "--restore")
            status, info = vm.request("GET", "/")
            _check_api(info["state"] == "Running", f"GET / after --restore: {info}", vm)


def test_silent_and_trickling_clients_do_not_block_others(env):
    with ApiVm(env) as vm:
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(vm.socket)
        trickle = socket.socket(socket.AF_UNIX)
        trickle.connect(vm.socket)
        request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        try:
            trickle.sendall(request[:5])
            # While one client says nothing and another sends a byte at a time, the
            # rest of the world is served (curl's own timeout is the bound).
            for byte in request[5:12]:
                status, info = vm.request("GET", "/", timeout=20)
                _check_api(status == 200 and info["state"] == "Not started",
                           f"GET / beside slow clients: {status} {info}", vm)
                trickle.sendall(bytes([byte]))
                time.sleep(0.3)
            trickle.sendall(request[12:])
            trickle.settimeout(20)
            answer = trickle.recv(4096)
            _check_api(answer.startswith(b"HTTP/1.1 200"),
                       f"the trickling client's own request: {answer!r}", vm)
        finally:
            silent.close()
            trickle.close()


def test_config_file_boots_without_the_api(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        config = {
            "boot-source": {"kernel_image_path": env.vmlinux,
                            "initrd_path": env.initrd_busybox,
                            "boot_args": guest_cmdline("echo from-config-file")},
            "drives": [],
            "machine-config": {"vcpu_count": 2, "mem_size_mib": 192},
        }
        path = os.path.join(tmp, "vm.json")
        with open(path, "w") as f:
            json.dump(config, f)
        result = env.run(["--no-api", "--config-file", path])
        check("from-config-file" in result.console, "the config file's command did not run",
              result)
        check(result.status == 0, "wisp should end with 0", result)
        config["machine-config"]["vcpu_typo"] = 1
        with open(path, "w") as f:
            json.dump(config, f)
        bad = env.run(["--no-api", "--config-file", path])
        check(bad.status == 2 and "vcpu_typo" in bad.stderr,
              "a bad config file should give exit 2 naming the key", bad)
        alone = env.run(["--no-api"])
        check(alone.status == 2 and "--config-file" in alone.stderr,
              "--no-api without --config-file should give exit 2", alone)


def test_send_ctrl_alt_del_reboots_the_guest(env):
    with ApiVm(env) as vm:
        vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                      "initrd_path": env.initrd_busybox,
                                      "boot_args": guest_cmdline(
                                          "echo waiting; sleep 120; echo not-reached")})
        vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
        vm.wait_for("waiting")
        vm.ok("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
        status = vm.wait(timeout=60)
        _check_api(status == 0 and "not-reached" not in vm.console,
                   f"Ctrl-Alt-Del should reboot the guest and end wisp with 0, got {status}",
                   vm)


def _metrics_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_throttled_drive_keeps_its_limit_and_metrics_count_it(env):
    # 1 MiB/s as 256 KiB every 250 ms: a 6 MiB read takes at least 5.75 s.
    limit = 1024 * 1024
    bucket = {"size": 256 * 1024, "refill_time": 250}
    mib = 6
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        data = os.path.join(tmp, "data.img")
        with open(data, "wb") as f:
            f.write(os.urandom(1024 * 1024) * 8)
        metrics_path = os.path.join(tmp, "metrics.json")
        log_path = os.path.join(tmp, "wisp.log")
        command = ("read a b < /proc/uptime; "
                   f"dd if=/dev/vda of=/dev/null bs=65536 count={mib * 16} iflag=direct; "
                   "read c d < /proc/uptime; echo elapsed $a $c; sleep 5")
        with ApiVm(env, args=("--id", "throttle-test")) as vm:
            vm.ok("PUT", "/logger", {"log_path": log_path, "level": "Info",
                                     "show_level": True, "show_log_origin": True})
            vm.ok("PUT", "/metrics", {"metrics_path": metrics_path})
            vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                          "initrd_path": env.initrd_busybox,
                                          "boot_args": guest_cmdline(command)})
            vm.ok("PUT", "/drives/data", {"drive_id": "data", "path_on_host": data,
                                          "is_root_device": False,
                                          "rate_limiter": {"bandwidth": bucket}})
            vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
            vm.wait_for("elapsed", timeout=240)
            vm.ok("PUT", "/actions", {"action_type": "FlushMetrics"})
            vm.wait()
            line = [l for l in vm.console.splitlines() if l.startswith("elapsed")][-1]
            start, end = (float(x) for x in line.split()[1:3])
            rate = mib * 1024 * 1024 / (end - start)
            print(f"# throttled drive: {mib} MiB in {end - start:.2f} s = {rate / 1024:.0f} KiB/s "
                  f"(limit {limit // 1024} KiB/s)", flush=True)
            _check_api(rate <= 1.10 * limit,
                       f"{mib} MiB in {end - start:.2f} s is {rate / 1024:.0f} KiB/s, more "
                       f"than 10% over the {limit // 1024} KiB/s limit", vm)
            lines = _metrics_lines(metrics_path)
            throttled = sum(l.get("block_data", {}).get("rate_limiter_throttled_events", 0)
                            for l in lines)
            read = sum(l.get("block_data", {}).get("read_bytes", 0) for l in lines)
            drives = sum(l["put_api_requests"]["drive_count"] for l in lines)
            _check_api(throttled > 0, f"no throttled events in the metrics: {lines[-1]}", vm)
            _check_api(read >= mib * 1024 * 1024,
                       f"block_data.read_bytes adds up to {read}, less than {mib} MiB", vm)
            _check_api(drives == 1, f"put_api_requests.drive_count adds up to {drives}", vm)
            with open(log_path) as f:
                log = f.read()
            _check_api("[throttle-test:" in log and ":INFO:" in log and "reset line" in log,
                       f"the log file lacks the instance id, level or message:\n{log}", vm)


def test_boot_timer_logs_the_time_to_the_guests_marker(env):
    result = env.boot(extra=["--boot-timer", "--id", "timed-1"])
    check(result.ready() is not None, "the guest did not boot", result)
    check("Guest-boot-time = " in result.stderr and " ms" in result.stderr,
          "--boot-timer did not log the boot time", result)


def test_failed_start_names_its_cause_and_sighup_is_counted_on_the_way_out(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        missing = os.path.join(tmp, "gone-disk.img")
        with open(missing, "wb") as f:
            f.write(bytes(512))
        metrics_path = os.path.join(tmp, "metrics.json")
        with ApiVm(env) as vm:
            vm.ok("PUT", "/metrics", {"metrics_path": metrics_path})
            vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux})
            vm.ok("PUT", "/drives/data", {"drive_id": "data", "path_on_host": missing,
                                          "is_root_device": False})
            os.unlink(missing)  # PUT checked it: now only InstanceStart can find it gone
            status, reply = vm.request("PUT", "/actions", {"action_type": "InstanceStart"})
            fault = reply.get("fault_message", "") if isinstance(reply, dict) else ""
            _check_api(status == 400 and f"drive 'data': cannot open {missing}" in fault
                       and "No such file" in fault,
                       f"InstanceStart should say which drive and path failed: {status} "
                       f"{reply}", vm)
            vm.proc.send_signal(signal.SIGHUP)
            status = vm.wait(timeout=60)
            _check_api(status == 128 + signal.SIGHUP, f"SIGHUP should end wisp with 129, "
                       f"not {status}", vm)
            lines = _metrics_lines(metrics_path)
            # The first line, at PUT /metrics; the last, on the way out.
            _check_api(len(lines) >= 2, f"{len(lines)} metrics lines", vm)
            startup = lines[0]["api_server"]
            _check_api(startup["process_startup_time_us"] > 0
                       and startup["process_startup_time_cpu_us"] > 0,
                       f"api_server: {startup}", vm)
            _check_api(lines[-1]["signals"]["sighup"] == 1,
                       f"signals in the last line: {lines[-1]['signals']}", vm)
            fails = sum(l["put_api_requests"]["actions_fails"] for l in lines)
            _check_api(fails == 1, f"put_api_requests.actions_fails adds up to {fails}", vm)


def test_get_root_reports_the_id_given_with_id_before_and_after_start(env):
    # The id lives in the API's own copy of the configuration (main frees its own once
    # the controller started): GET / must say it, unchanged, before and after boot.
    with ApiVm(env, args=("--id", "robust-id-42")) as vm:
        status, info = vm.request("GET", "/")
        _check_api(status == 200 and info["id"] == "robust-id-42"
                   and info["state"] == "Not started", f"GET / before boot: {status} {info}",
                   vm)
        vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                      "initrd_path": env.initrd_busybox,
                                      "boot_args": guest_cmdline("echo id-guest-up; sleep 60")})
        vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
        vm.wait_for("id-guest-up")
        for _ in range(3):
            status, info = vm.request("GET", "/")
            _check_api(status == 200 and info["id"] == "robust-id-42"
                       and info["state"] == "Running", f"GET / after boot: {status} {info}",
                       vm)


def test_missing_files_are_refused_at_the_request_as_in_firecracker(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        image = os.path.join(tmp, "root.img")
        with open(image, "wb") as f:
            f.write(bytes(1024 * 1024))
        missing = os.path.join(tmp, "missing.img")
        cases = [
            ("/boot-source", {"kernel_image_path": os.path.join(tmp, "no-vmlinux")},
             "Boot source error: The kernel file cannot be opened: No such file or directory "
             "(os error 2)"),
            ("/boot-source", {"kernel_image_path": env.vmlinux,
                              "initrd_path": os.path.join(tmp, "no-initrd")},
             "Boot source error: The initrd file cannot be opened due to invalid path or "
             "invalid permissions. No such file or directory (os error 2)"),
            ("/drives/broken", {"drive_id": "broken", "path_on_host": missing,
                                "is_root_device": True, "is_read_only": False},
             "Drive config error: Unable to create the virtio block device: Virtio backend "
             "error: Error manipulating the backing file: No such file or directory "
             f"(os error 2) {missing}"),
        ]
        with ApiVm(env) as vm:
            for path, body, message in cases:
                status, reply = vm.request("PUT", path, body)
                _check_api(status == 400 and reply == {"fault_message": message},
                           f"PUT {path} {body}: {status} {reply}, want 400 {message!r}", vm)
            config = vm.ok("GET", "/vm/config")
            _check_api(config["drives"] == []
                       and config["boot-source"]["kernel_image_path"] == "",
                       f"refused requests changed the configuration: {config}", vm)
            # The refused root drive holds no place: a valid root drive is accepted.
            vm.ok("PUT", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": image,
                                            "is_root_device": True, "is_read_only": False})
            config = vm.ok("GET", "/vm/config")
            _check_api([(d["drive_id"], d["cache_type"]) for d in config["drives"]]
                       == [("rootfs", "Unsafe")],
                       f"GET /vm/config after the valid root drive: {config}", vm)


def _read_response(sock, pending):
    """The next HTTP response on a kept-alive socket: (status, parsed JSON body or None).
    `pending` (a bytearray) keeps what was read past it, the next pipelined responses."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection ended inside a response head: {pending!r}")
        pending += chunk
    head, _, _ = bytes(pending).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    total = len(head) + 4 + length
    while len(pending) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection ended inside a response body: {pending!r}")
        pending += chunk
    body = bytes(pending[len(head) + 4:total])
    del pending[:total]
    return int(lines[0].split()[1]), (json.loads(body) if length else None)


def _raw_request(method, path, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


def test_a_refused_request_still_being_sent_gets_its_400(env):
    # POST is no method of Firecracker's API, and 60000 bytes is over the 51200 limit:
    # the server refuses both at their head, while the client is still sending. It must
    # read the rest, so that the client finishes sending and reads the 400 (no EPIPE,
    # no ECONNRESET), and a small send buffer makes sure the body cannot all be queued.
    cases = [("POST", 50000, "unsupported HTTP method 'POST'"),
             ("POST", 60000, "unsupported HTTP method 'POST'"),
             ("PUT", 60000, "larger than the limit of 51200")]
    with ApiVm(env) as vm:
        for method, size, words in cases:
            body = b"{" + b" " * (size - 2) + b"}"
            head = (f"{method} /machine-config HTTP/1.1\r\nHost: localhost\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n")
            with socket.socket(socket.AF_UNIX) as raw:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                raw.settimeout(60)
                raw.connect(vm.socket)
                try:
                    raw.sendall(head.encode() + body)
                    answer = b""
                    while True:
                        chunk = raw.recv(65536)
                        if not chunk:
                            break
                        answer += chunk
                except OSError as error:
                    raise AssertionError(f"{method} with {size} bytes: {error!r}\n"
                                         + vm.describe())
            text = answer.decode(errors="replace")
            head_text, _, body_text = text.partition("\r\n\r\n")
            _check_api(head_text.startswith("HTTP/1.1 400 ")
                       and words in json.loads(body_text)["fault_message"],
                       f"{method} with {size} bytes: {text!r}", vm)
        status, info = vm.request("GET", "/")
        _check_api(status == 200, f"GET / afterwards: {status} {info}", vm)


def test_stalled_and_flooding_clients_do_not_stop_a_normal_client(env):
    """The control plane under fault injection, with a booted VM: 64 connections that
    send half a request and stall, one client that floods garbage (reconnecting each
    time the server ends its connection), and a normal client whose 50 requests, on
    one kept-alive connection and partly pipelined, are all answered in order."""
    command = "echo fault-guest-up; i=0; while true; do i=$((i+1)); echo alive-$i; sleep 1; done"
    flood_limit = 48 * 1024 * 1024
    with ApiVm(env, args=("--id", "fault-test")) as vm:
        vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                      "initrd_path": env.initrd_busybox,
                                      "boot_args": guest_cmdline(command)})
        vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
        vm.wait_for("alive-1")
        stalled = []
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(30)
            s.connect(vm.socket)
            s.sendall(b'PUT /machine-config HTTP/1.1\r\nContent-Length: 40\r\n\r\n{"vcpu')
            stalled.append(s)
        stop = threading.Event()
        flood = {"bytes": 0, "connections": 0}

        def flood_garbage():
            rng = random.Random(9)
            garbage = bytes(rng.randrange(256) for _ in range(65536))
            while not stop.is_set() and flood["bytes"] < flood_limit:
                try:
                    with socket.socket(socket.AF_UNIX) as f:
                        f.settimeout(10)
                        f.connect(vm.socket)
                        flood["connections"] += 1
                        while not stop.is_set() and flood["bytes"] < flood_limit:
                            f.sendall(garbage)
                            flood["bytes"] += len(garbage)
                except OSError:
                    continue  # the server ended this connection: open another

        flooder = threading.Thread(target=flood_garbage, daemon=True)
        flooder.start()
        deadline = time.monotonic() + 60
        while flood["connections"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the flood is under way (one connection already ended)
        _check_api(flood["connections"] >= 2, f"the flood did not get going: {flood}", vm)
        # (request, check of its answer), in the order sent.
        round_ = [
            (("GET", "/", None), lambda st, b: st == 200 and b["id"] == "fault-test"),
            (("GET", "/machine-config", None), lambda st, b: st == 200 and b["vcpu_count"] == 1),
            (("PATCH", "/vm", {"state": "Paused"}), lambda st, b: st == 204),
            (("GET", "/", None), lambda st, b: st == 200 and b["state"] == "Paused"),
            (("PATCH", "/vm", {"state": "Resumed"}), lambda st, b: st == 204),
            (("GET", "/", None), lambda st, b: st == 200 and b["state"] == "Running"),
            (("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 64}),
             lambda st, b: st == 400 and "after starting" in b["fault_message"]),
            (("GET", "/vm/config", None),
             lambda st, b: st == 200 and b["machine-config"]["mem_size_mib"] == 128),
            (("GET", "/version", None), lambda st, b: st == 200 and "firecracker_version" in b),
            (("GET", "/nope", None), lambda st, b: st == 400 and "/nope" in b["fault_message"]),
        ]
        answered = 0
        pending = bytearray()
        try:
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(60)
                client.connect(vm.socket)
                for batch in range(5):
                    # Rounds 0, 2, 4 one request at a time; 1 and 3 all pipelined.
                    if batch % 2:
                        client.sendall(b"".join(_raw_request(*r) for r, _ in round_))
                    for i, (request, good) in enumerate(round_):
                        if batch % 2 == 0:
                            client.sendall(_raw_request(*request))
                        status, body = _read_response(client, pending)
                        _check_api(good(status, body),
                                   f"request {answered} {request} (round {batch}) got "
                                   f"{status} {body}", vm)
                        answered += 1
        finally:
            stop.set()
            flooder.join(timeout=60)
        evicted = 0
        for s in stalled:
            s.setblocking(False)
            try:
                evicted += s.recv(4096).startswith(b"HTTP/1.1 408 ")
            except BlockingIOError:
                pass  # still open and waiting: not evicted
            except OSError:
                pass
            s.close()
        print(f"# fault injection: {answered} requests answered in order beside 64 stalled "
              f"connections ({evicted} evicted with 408) and a flood of "
              f"{flood['bytes'] >> 20} MiB of garbage over {flood['connections']} "
              "connections", flush=True)
        _check_api(answered == 50 and not pending,
                   f"{answered} of 50 requests answered, {bytes(pending)!r} left over", vm)
        _check_api(flood["connections"] >= 1 and flood["bytes"] > 0,
                   f"the flood sent nothing: {flood}", vm)
        # Afterwards the API still serves and the guest still runs.
        status, info = vm.request("GET", "/")
        _check_api(status == 200 and info["state"] == "Running", f"GET / after: {info}", vm)
        ticks = vm.console.count("alive-")
        vm.wait_for(f"alive-{ticks + 2}", timeout=120)


def test_cache_type_decides_whether_the_guest_sees_a_write_back_cache(env):
    # Firecracker's cache_type: Unsafe (the default) offers no flush, so Linux takes the
    # disk for write-through and never flushes; Writeback offers it.
    command = ("echo cache-vda $(cat /sys/block/vda/queue/write_cache); "
               "echo cache-vdb $(cat /sys/block/vdb/queue/write_cache)")
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        images = []
        for name in ("unsafe.img", "writeback.img"):
            images.append(os.path.join(tmp, name))
            with open(images[-1], "wb") as f:
                f.write(bytes(1024 * 1024))
        with ApiVm(env) as vm:
            vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                          "initrd_path": env.initrd_busybox,
                                          "boot_args": guest_cmdline(command)})
            vm.ok("PUT", "/drives/unsafe", {"drive_id": "unsafe", "path_on_host": images[0],
                                            "is_root_device": False})
            vm.ok("PUT", "/drives/writeback", {"drive_id": "writeback",
                                               "path_on_host": images[1],
                                               "is_root_device": False,
                                               "cache_type": "Writeback"})
            config = vm.ok("GET", "/vm/config")
            _check_api([d["cache_type"] for d in config["drives"]] == ["Unsafe", "Writeback"],
                       f"GET /vm/config: {config['drives']}", vm)
            vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
            vm.wait_for("cache-vdb")
            vm.wait()
            _check_api("cache-vda write through" in vm.console,
                       "the Unsafe drive should be write-through in the guest", vm)
            _check_api("cache-vdb write back" in vm.console,
                       "the Writeback drive should be write-back in the guest", vm)
