"""wisp-jailer (README: "wisp-jailer"): a static probe program run in a jail reports what it
sees from inside (ids, capabilities, no_new_privs, limits, root, /dev, fds, environment),
the test checks the same from outside (/proc/PID, the cgroup, the namespaces), then that
--cleanup leaves nothing; bad input is refused with a message and leaves nothing behind;
and a jailed wisp boots a guest. Needs root and a cgroup2 file system with the pids
controller (the kvm-harness mounts one at /sys/fs/cgroup)."""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from apitest import SOCKET_DIR, guest_cmdline

UID, GID = 123, 100


def jailer():
    return os.environ["WISP_JAILER"]


def probe():
    return os.environ["WISP_JAIL_PROBE"]


def cgroup2_mount():
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            if " - cgroup2 " in line:
                return fields[4]
    raise AssertionError("no cgroup2 file system is mounted here: the jailer tests need one")


def need_controller(name):
    mount = cgroup2_mount()
    with open(os.path.join(mount, "cgroup.controllers")) as controllers:
        available = controllers.read().split()
    if name not in available:
        raise AssertionError(f"cgroup2 at {mount} has no '{name}' controller (it has "
                             f"{available}): this test needs it")
    return mount


class Jail:
    """A chroot base directory and a parent cgroup of the test's own, removed at the end
    (what the jailer leaves in them is checked before)."""

    def __init__(self, name):
        # tmpfs under the harness (device nodes and sockets do not work on its 9p root).
        self.base = tempfile.mkdtemp(prefix=f"jail-{name}-", dir=SOCKET_DIR)
        self.id = f"{name}-{os.getpid()}"
        self.parent = f"wisp-test-{name}-{os.getpid()}"
        self.exec_name = os.path.basename(probe())

    @property
    def dir(self):
        return os.path.join(self.base, self.exec_name, self.id)

    @property
    def root(self):
        return os.path.join(self.dir, "root")

    def cgroup(self):
        return os.path.join(cgroup2_mount(), self.parent, self.id)

    def args(self, *extra, exec_file=None, uid=UID, gid=GID, jail_id=None):
        return [jailer(), "--id", jail_id or self.id, "--exec-file", exec_file or probe(),
                "--uid", str(uid), "--gid", str(gid), "--chroot-base-dir", self.base,
                "--parent-cgroup", self.parent, *extra]

    def cleanup_args(self):
        return [jailer(), "--cleanup", "--id", self.id, "--exec-file", probe(),
                "--chroot-base-dir", self.base, "--parent-cgroup", self.parent]

    def leftovers(self):
        """What is left of this jail and its cgroup (nothing, after a failure or cleanup)."""
        left = []
        for top, dirs, files in os.walk(self.base):
            left += [os.path.join(top, name) for name in dirs + files]
        parent = os.path.join(cgroup2_mount(), self.parent)
        if os.path.exists(parent):
            left.append(parent)
        return left

    def remove(self):
        shutil.rmtree(self.base, ignore_errors=True)
        parent = os.path.join(cgroup2_mount(), self.parent)
        if os.path.isdir(parent):
            for child in os.listdir(parent):
                path = os.path.join(parent, child)
                if os.path.isdir(path):
                    os.rmdir(path)
            os.rmdir(parent)


class Probe:
    """The jailer running the probe; reads its "key=value" lines up to "ready"."""

    def __init__(self, args, **popen):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, **popen)
        self.lines = []
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line == "ready":
                break
            self.lines.append(line)
        else:
            err = self.proc.stderr.read().decode(errors="replace")
            raise AssertionError(f"the probe never got ready; status {self.proc.wait()}\n"
                                 f"stdout: {self.lines}\nstderr: {err}")
        self.values = {}
        for line in self.lines:
            key, _, value = line.partition("=")
            self.values[key] = value

    def finish(self):
        """Closes the probe's stdin and reads the rest of its output (EOF: it has ended)."""
        self.proc.stdin.close()
        rest = self.proc.stdout.read().decode(errors="replace")
        return self.proc.wait(timeout=60), rest

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def proc_status(pid):
    status = {}
    with open(f"/proc/{pid}/status") as text:
        for line in text:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return status


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def test_jailed_probe_sees_only_its_jail(env):
    mount = need_controller("pids")
    jail = Jail("probe")
    netns = f"wisp-jail-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    extra_read, extra_write = os.pipe()  # an inherited fd the jailer must close
    probe_run = None
    try:
        netns_path = f"/var/run/netns/{netns}"
        probe_run = Probe(jail.args("--cgroup-version", "2", "--cgroup", "pids.max=20",
                                    "--resource-limit", "fsize=1048576",
                                    "--resource-limit", "no-file=64", "--netns", netns_path,
                                    "--", "--first", "second arg"),
                          pass_fds=(extra_read,), env={**os.environ, "SECRET": "x"})
        v = probe_run.values
        # From inside.
        expect(v["arg 1"] == "--id" and v["arg 2"] == jail.id and v["arg 3"] == "--first"
               and v["arg 4"] == "second arg" and "arg 5" not in v,
               f"arguments: {probe_run.lines}")
        expect(v["uid"] == f"{UID},{UID},{UID}" and v["gid"] == f"{GID},{GID},{GID}",
               f"ids: {v['uid']} {v['gid']}")
        expect(v["groups"] == "0", f"supplementary groups: {v['groups']}")
        expect(v["caps"] == "eff:000000000 prm:000000000 inh:000000000",
               f"capabilities: {v['caps']}")
        expect(v["bounding"] == "0", f"bounding set: {v['bounding']} capabilities")
        expect(v["no_new_privs"] == "1", f"no_new_privs: {v['no_new_privs']}")
        expect(v["cwd"] == "/", f"cwd: {v['cwd']}")
        expect(v["root"] == f"dev,{jail.exec_name}", f"the jail's /: {v['root']}")
        has_uffd = os.path.exists("/dev/userfaultfd")
        expect(v["devdir"] == "kvm,net,urandom" + (",userfaultfd" if has_uffd else ""),
               f"/dev: {v['devdir']}")
        for path, numbers in (("/dev/kvm", "10:232"), ("/dev/net/tun", "10:200"),
                              ("/dev/urandom", "1:9")):
            expect(v[f"dev {path}"] == f"char {numbers} {UID}:{GID} 0600",
                   f"{path}: {v[f'dev {path}']}")
        if has_uffd:
            host = os.stat("/dev/userfaultfd").st_rdev
            expect(v["dev /dev/userfaultfd"] ==
                   f"char {os.major(host)}:{os.minor(host)} {UID}:{GID} 0600",
                   f"/dev/userfaultfd: {v['dev /dev/userfaultfd']}")
        else:
            expect(v["dev /dev/userfaultfd"] == "missing", "userfaultfd made up")
        expect(v["nofile"] == "64/64", f"no-file: {v['nofile']}")
        expect(v["fsize"] == "1048576/1048576", f"fsize: {v['fsize']}")
        expect(v["etc_passwd"] == "No such file or directory",
               f"host's /etc/passwd from the jail: {v['etc_passwd']}")
        expect(v["env"] == "0", f"environment: {v['env']} variables")
        expect(v["fds"] == "0,1,2", f"open fds: {v['fds']} (the extra one must be closed)")
        expect(v["root_writable"] == "yes", f"writing in its root: {v['root_writable']}")

        # From outside.
        pid = int(v["pid"])
        expect(pid == probe_run.proc.pid, f"the probe ({pid}) is not the jailer's process "
               f"({probe_run.proc.pid}): the jailer must exec, not fork")
        status = proc_status(pid)
        expect(status["Uid"].split() == [str(UID)] * 4, f"Uid: {status['Uid']}")
        expect(status["Gid"].split() == [str(GID)] * 4, f"Gid: {status['Gid']}")
        for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            expect(int(status[key], 16) == 0, f"{key}: {status[key]}")
        expect(status["NoNewPrivs"] == "1", f"NoNewPrivs: {status['NoNewPrivs']}")
        with open(f"/proc/{pid}/cgroup") as text:
            cgroups = text.read().split()
        expect(f"0::/{jail.parent}/{jail.id}" in cgroups, f"/proc/PID/cgroup: {cgroups}")
        with open(os.path.join(jail.cgroup(), "pids.max")) as text:
            expect(text.read().strip() == "20", "pids.max not written")
        with open(os.path.join(jail.cgroup(), "cgroup.procs")) as text:
            expect(text.read().split() == [str(pid)], "cgroup.procs")
        expect(os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns_path).st_ino,
               "the probe is not in the given network namespace")
        expect(os.stat(f"/proc/{pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino,
               "the probe shares the host's mount namespace")
        expect(sorted(os.listdir(f"/proc/{pid}/root")) ==
               sorted(["dev", jail.exec_name, "probe-file"]),
               f"/proc/PID/root: {os.listdir(f'/proc/{pid}/root')}")
        expect(os.stat(jail.root).st_uid == UID and os.stat(jail.root).st_gid == GID,
               "the jail's root is not owned by the jailed user")
        copied = os.stat(os.path.join(jail.root, jail.exec_name))
        expect(copied.st_uid == 0 and copied.st_mode & 0o777 == 0o755
               and copied.st_size == os.stat(probe()).st_size,
               f"the exec file's copy: {copied}")
        # The host never sees the jail's bind mount.
        with open("/proc/self/mountinfo") as mounts:
            expect(jail.root not in mounts.read(), "the jail's mount leaked to the host")

        # A running jail cannot be cleaned up.
        busy = subprocess.run(jail.cleanup_args(), capture_output=True, text=True)
        expect(busy.returncode == 1 and "end them first" in busy.stderr and str(pid) in
               busy.stderr and os.path.isdir(jail.root),
               f"--cleanup of a running jail: {busy.returncode} {busy.stderr}")

        status_code, rest = probe_run.finish()
        expect(status_code == 0, f"probe exit status {status_code}: {rest}")
        done = subprocess.run(jail.cleanup_args(), capture_output=True, text=True)
        expect(done.returncode == 0, f"--cleanup: {done.returncode} {done.stderr}")
        left = [p for p in jail.leftovers()
                if p not in (os.path.join(jail.base, jail.exec_name),
                             os.path.join(mount, jail.parent))]
        expect(not left, f"left after --cleanup: {left}")
        expect(not os.path.exists(jail.cgroup()), "the cgroup is left")
        again = subprocess.run(jail.cleanup_args(), capture_output=True, text=True)
        expect(again.returncode == 0, f"a second --cleanup: {again.returncode} {again.stderr}")
    finally:
        if probe_run:
            probe_run.kill()
        os.close(extra_read)
        os.close(extra_write)
        subprocess.run(["ip", "netns", "delete", netns])
        jail.remove()


def test_pids_max_is_enforced(env):
    need_controller("pids")
    jail = Jail("pids")
    probe_run = None
    try:
        # The probe itself is one of the 4: 3 of its 6 forks succeed.
        probe_run = Probe(jail.args("--cgroup", "pids.max=4", "--", "--fork", "6"))
        expect(probe_run.values.get("forks") == "3 ok 3 failed",
               f"forks under pids.max=4: {probe_run.values.get('forks')}")
        status, rest = probe_run.finish()
        expect(status == 0, f"probe exit status {status}: {rest}")
    finally:
        if probe_run:
            probe_run.kill()
        jail.remove()


def test_new_pid_ns_writes_the_child_pid(env):
    jail = Jail("pidns")
    probe_run = None
    try:
        probe_run = Probe(jail.args("--new-pid-ns"))
        expect(probe_run.values["pid"] == "1", f"pid inside: {probe_run.values['pid']}")
        # The jailer (the parent) has ended once the child runs; the pid file is there.
        expect(probe_run.proc.wait(timeout=60) == 0, "the jailer's parent did not exit 0")
        with open(os.path.join(jail.root, f"{jail.exec_name}.pid")) as text:
            host_pid = int(text.read())
        status = proc_status(host_pid)
        expect(status["NSpid"].split() == [str(host_pid), "1"], f"NSpid: {status['NSpid']}")
        expect(status["Uid"].split() == [str(UID)] * 4, f"Uid: {status['Uid']}")
        probe_run.proc.stdin.close()
        rest = probe_run.proc.stdout.read()  # EOF: the probe has ended
        expect(b"forks" not in rest, "unexpected output")
        subprocess.run(jail.cleanup_args(), check=True)
        expect(not os.path.exists(jail.dir), "the jail is left after --cleanup")
    finally:
        if probe_run:
            probe_run.kill()
        jail.remove()


def test_daemonize_detaches_and_silences(env):
    jail = Jail("daemon")
    try:
        # Not a process group leader (Popen's child is not), so setsid works.
        done = subprocess.run(jail.args("--daemonize"), capture_output=True, timeout=60)
        expect(done.returncode == 0, f"status {done.returncode}: {done.stderr}")
        expect(done.stdout == b"" and done.stderr == b"",
               f"the daemon wrote to the jailer's stdio: {done.stdout} {done.stderr}")
        # The probe ran (stdin /dev/null: it ended at once) and made its file.
        expect(os.path.exists(os.path.join(jail.root, "probe-file")), "the probe did not run")
        # A process group leader cannot setsid: refused, and undone.
        leader = subprocess.run(jail.args("--daemonize", jail_id="leader"),
                                capture_output=True, text=True, process_group=0)
        expect(leader.returncode == 1 and "process group leader" in leader.stderr,
               f"as a group leader: {leader.returncode} {leader.stderr}")
        expect(not os.path.exists(os.path.join(jail.base, jail.exec_name, "leader")),
               "the refused jail is left")
    finally:
        jail.remove()


def test_bad_input_is_refused_and_leaves_nothing(env):
    need_controller("pids")
    not_netns = tempfile.NamedTemporaryFile(dir=SOCKET_DIR)
    cases = [
        ("an id too long", {"jail_id": "a" * 65}, [], 2, "--id 'aaaa"),
        ("an id with /", {"jail_id": "a/b"}, [], 2, "--id 'a/b'"),
        ("an id ..", {"jail_id": ".."}, [], 2, "--id '..'"),
        ("a missing exec file", {"exec_file": "/nonexistent/wisp"}, [], 2,
         "--exec-file /nonexistent/wisp: No such file or directory"),
        ("a dynamic exec file", {"exec_file": shutil.which("true")}, [], 2,
         "dynamically linked"),
        ("uid 0", {"uid": 0}, [], 2, "would run as root"),
        ("an unknown controller", {}, ["--cgroup", "nosuch.max=1"], 2,
         "controller 'nosuch' is not available"),
        ("an unknown cgroup file", {}, ["--cgroup", "pids.max=5", "--cgroup", "pids.bogus=1"],
         2, "no file pids.bogus"),
        ("a bad cgroup value", {}, ["--cgroup", "pids.max=lots"], 2,
         "write 'lots' to"),
        ("a missing netns", {}, ["--netns", "/var/run/netns/wisp-no-such-ns"], 2,
         "--netns /var/run/netns/wisp-no-such-ns: No such file or directory"),
        ("a netns that is not one", {}, ["--netns", not_netns.name], 2,
         "is it a network namespace"),
        ("a limit too high", {}, ["--resource-limit", "no-file=99999999999"], 2,
         "no-file=99999999999"),
        ("cgroup version 1", {}, ["--cgroup-version", "1"], 2, "only 2"),
    ]
    failures = []
    try:
        for what, overrides, extra, status, message in cases:
            jail = Jail("bad")
            try:
                done = subprocess.run(jail.args(*extra, **overrides), capture_output=True,
                                      text=True, timeout=60)
                left = jail.leftovers()
                if done.returncode != status or message not in done.stderr or left:
                    failures.append(f"{what}: status {done.returncode} (want {status}), "
                                    f"stderr {done.stderr.strip()!r} (want {message!r}), "
                                    f"left {left}")
            finally:
                jail.remove()
        # An existing jail directory: refused, and left as it was.
        jail = Jail("exists")
        try:
            os.makedirs(jail.root)
            marker = os.path.join(jail.root, "mine")
            open(marker, "w").close()
            done = subprocess.run(jail.args(), capture_output=True, text=True, timeout=60)
            if done.returncode != 2 or "already exists" not in done.stderr \
                    or not os.path.exists(marker) or os.path.exists(jail.cgroup()):
                failures.append(f"an existing jail: status {done.returncode}, "
                                f"{done.stderr.strip()!r}, left {jail.leftovers()}")
        finally:
            jail.remove()
    finally:
        not_netns.close()
    expect(not failures, "\n".join(failures))


def _curl(socket, method, path, body=None):
    args = ["curl", "-sS", "--unix-socket", socket, "-X", method, "-o", "-", "-w",
            "\n%{http_code}", "--max-time", "60", f"http://localhost{path}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=70)
    text, _, code = done.stdout.rpartition("\n")
    return done.returncode, code, text


def test_jailed_wisp_boots_a_guest(env):
    need_controller("pids")
    jail = Jail("wisp")
    jail.exec_name = os.path.basename(env.wisp)
    console = bytearray()
    proc = None
    try:
        args = [jailer(), "--id", jail.id, "--exec-file", env.wisp, "--uid", str(UID),
                "--gid", str(GID), "--chroot-base-dir", jail.base, "--parent-cgroup",
                jail.parent, "--cgroup", "pids.max=64", "--", "--api-sock", "/api.sock"]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        reader = threading.Thread(target=lambda: [console.extend(chunk) for chunk in
                                                  iter(lambda: proc.stdout.read1(4096), b"")],
                                  daemon=True)
        reader.start()
        socket = os.path.join(jail.root, "api.sock")
        deadline = time.monotonic() + 60
        while not os.path.exists(socket):
            expect(proc.poll() is None and time.monotonic() < deadline,
                   f"no API socket in the jail; status {proc.poll()}: {bytes(console)}")
            time.sleep(0.05)
        # What the operator puts into the jail: the kernel and initrd (copies: the
        # test's files may be on another file system), readable by the jailed user.
        for source, name in ((env.vmlinux, "vmlinux"), (env.initrd, "initrd.gz")):
            shutil.copyfile(source, os.path.join(jail.root, name))
            os.chmod(os.path.join(jail.root, name), 0o444)
        for method, path, body in (
                ("PUT", "/boot-source", {"kernel_image_path": "/vmlinux",
                                         "initrd_path": "/initrd.gz",
                                         "boot_args": guest_cmdline(extra="wisp.halt=1")}),
                ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}),
                ("PUT", "/actions", {"action_type": "InstanceStart"})):
            rc, code, text = _curl(socket, method, path, body)
            expect(rc == 0 and code in ("200", "204"),
                   f"{method} {path}: curl {rc}, HTTP {code} {text}\n{bytes(console)}")
        deadline = time.monotonic() + 180
        while b"wisp-init: ready" not in console:
            expect(proc.poll() is None and time.monotonic() < deadline,
                   f"the jailed guest did not get ready; status {proc.poll()}:\n"
                   f"{bytes(console)[-3000:].decode(errors='replace')}")
            time.sleep(0.1)
        rc, code, text = _curl(socket, "GET", "/")
        expect(code == "200" and json.loads(text).get("id") == jail.id,
               f"GET / in the jail: {code} {text}")
        status = proc_status(proc.pid)
        expect(status["Uid"].split() == [str(UID)] * 4 and int(status["CapEff"], 16) == 0
               and status["NoNewPrivs"] == "1", f"jailed wisp: {status}")
        # cgroup.procs may name a process more than once (the kernel's documentation).
        with open(os.path.join(jail.cgroup(), "cgroup.procs")) as text:
            procs = text.read().split()
        with open(f"/proc/{proc.pid}/cgroup") as text:
            own = text.read().split()
        # Beside wisp, only kernel threads (parent kthreadd, pid 2): KVM attaches its
        # per-VM worker (kvm-nx-lpage-recovery) to the VM creator's cgroup.
        others = [(p, proc_status(p).get("Name"), proc_status(p).get("PPid"))
                  for p in set(procs) - {str(proc.pid)}]
        expect(str(proc.pid) in procs and all(ppid == "2" for _, _, ppid in others)
               and f"0::/{jail.parent}/{jail.id}" in own,
               f"wisp ({proc.pid}) in its cgroup: cgroup.procs {procs} (others: {others}), "
               f"/proc/PID/cgroup {own}")
        proc.terminate()
        expect(proc.wait(timeout=60) == 143, f"wisp's status after SIGTERM: {proc.returncode}")
        reader.join(timeout=5)
        done = subprocess.run([jailer(), "--cleanup", "--id", jail.id, "--exec-file", env.wisp,
                               "--chroot-base-dir", jail.base, "--parent-cgroup", jail.parent],
                              capture_output=True, text=True)
        expect(done.returncode == 0 and not os.path.exists(jail.dir)
               and not os.path.exists(jail.cgroup()),
               f"--cleanup: {done.returncode} {done.stderr}")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        jail.remove()
