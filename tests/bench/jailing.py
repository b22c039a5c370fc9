"""wisp started the production way for the benchmarks' JAILED=1 rows: by wisp-jailer (its own
chroot, mount namespace and cgroup, an unprivileged uid, no capabilities) with wisp's
default seccomp filters, driven over the API socket in its jail root, as a control plane
drives a jailed Firecracker. The files the VM needs are hard-linked into the jail root after
the jailer made it (copied when on another file system), as jailer/README.md tells the
operator to.

Needs root and a cgroup2 file system (ci/kvm-harness mounts one); the jails live under
`base`, each in a cgroup under `parent`, and clean_up() removes both through
`wisp-jailer --cleanup`.
"""
import os
import shutil
import subprocess

# Far above the host's own users; one uid per jail of a run, as wispctl clone --jail does.
JAIL_UID_BASE, JAIL_GID = 910000, 910000


def find_cgroup2_mount():
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            if " - cgroup2 " in line:
                return line.split()[4]
    return None


class Jail:
    """One jail: argv() starts wisp in it, put() links a file into its root."""

    def __init__(self, jailer, wisp, base, parent, number):
        self.jailer, self.wisp, self.base, self.parent = jailer, wisp, base, parent
        self.id = f"bench-{number}"
        self.uid = JAIL_UID_BASE + number
        self.root = os.path.join(base, os.path.basename(wisp), self.id, "root")
        self.socket = os.path.join(self.root, "api.sock")  # wisp's /api.sock

    def argv(self, *wisp_args):
        return [self.jailer, "--id", self.id, "--exec-file", self.wisp, "--uid", str(self.uid),
                "--gid", str(JAIL_GID), "--chroot-base-dir", self.base, "--parent-cgroup",
                self.parent, "--cgroup", "pids.max=64", "--", "--api-sock", "/api.sock",
                *wisp_args]

    def put(self, source, name):
        """source into the jail root as /name, readable by the jailed user; returns /name."""
        target = os.path.join(self.root, name)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        os.chmod(target, 0o644)
        return "/" + name

    def clean_up(self):
        """The jail's directory and cgroup, after its wisp has ended; an error if either
        is left."""
        done = subprocess.run([self.jailer, "--cleanup", "--id", self.id, "--exec-file",
                               self.wisp, "--chroot-base-dir", self.base, "--parent-cgroup",
                               self.parent], capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"wisp-jailer --cleanup --id {self.id}: status {done.returncode}: "
                          f"{done.stderr.strip()}")


class Jails:
    """Numbered jails under one base directory and one parent cgroup."""

    def __init__(self, jailer, wisp, workdir):
        self.jailer, self.wisp = jailer, wisp
        self.base = os.path.join(workdir, "jails")
        self.parent = f"wisp-bench-{os.getpid()}"
        self.count = 0

    def new(self):
        self.count += 1
        return Jail(self.jailer, self.wisp, self.base, self.parent, self.count)

    def remove_parent(self):
        mount = find_cgroup2_mount()
        if mount and os.path.isdir(os.path.join(mount, self.parent)):
            os.rmdir(os.path.join(mount, self.parent))


def problems(jailer):
    """Why jailed runs cannot happen here (a list of sentences, empty when they can)."""
    found = []
    if not jailer or not os.access(jailer, os.X_OK):
        found.append(f"--jailer {jailer!r} is not an executable (make builds build/wisp-jailer)")
    if os.geteuid() != 0:
        found.append("jailed runs need root (the jailer makes namespaces and device nodes)")
    mount = find_cgroup2_mount()
    if not mount:
        found.append("jailed runs need a cgroup2 file system (ci/kvm-harness mounts one)")
    else:
        with open(os.path.join(mount, "cgroup.controllers")) as controllers:
            if "pids" not in controllers.read().split():
                found.append(f"the cgroup2 file system at {mount} has no pids controller")
    return found
