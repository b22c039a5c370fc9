#!/usr/bin/env python3
"""Counts the nested-KVM guest deaths (README, "The two commands" and "I/O benchmark") per
experiment: for MINUTES it boots wisp guests again and again, one TCP guest at a time
(TCP_MIB from the host to the guest, then back, as the 100 MiB TCP test does) and IDLE
idle 64 MiB guests beside it (each sleeps WISP_STRESS_IDLE_S seconds, default 100), every new boot taking the next
experiment ("arm") in turn, so that every arm sees the same machine at the same time.
A boot whose guest ends before its marker, or hangs, is a death. Prints one line per
boot and a table per arm (boots, deaths) every ten boots and at the end. Not part of
make test.

    WISP_BIN=... WISP_KERNEL_DIR=... WISP_INITRD_BUSYBOX=... \\
        WISP_HARNESS_SMP=1 WISP_HARNESS_TIMEOUT=... ci/with-kvm.sh \\
        python3 tests/stress/guest_deaths.py MINUTES [ARM,ARM...] [IDLE] [TCP_MIB] [BOOTERS]

BOOTERS loops (default 0) boot a 64 MiB guest that only prints a marker, again and again.

Arms: base (wisp as it is), nohuge (guest memory MADV_NOHUGEPAGE), notscdl (no
TSC-deadline CPUID bit), qemu (the CPUID table QEMU microvm gives its guest, dumped in
that guest by tests/stress/cpuid_dump.c at the start, and MTRRs off as in QEMU's reset
state). `python3 tests/stress/guest_deaths.py cpuid` only dumps and compares the CPUID
tables of this machine, a wisp guest and a QEMU microvm guest (-cpu host).
"""
import os, shutil, signal, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
WISP, KERNEL = os.environ["WISP_BIN"], os.path.join(os.environ["WISP_KERNEL_DIR"], "vmlinux")
INITRD = os.environ["WISP_INITRD_BUSYBOX"]
WORK = tempfile.mkdtemp(prefix="guest-deaths-", dir="/tmp/wisp-run" if os.path.isdir("/tmp/wisp-run") else None)
CMDLINE = "console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd"
NS, HOST, GUEST = "wisp-deaths", "172.30.80.1", "172.30.80.2"


def cpuid_initrd():
    """The busybox initramfs plus /bin/cpuid-dump (a second cpio archive appended)."""
    tool = os.path.join(WORK, "overlay", "bin", "cpuid-dump")
    os.makedirs(os.path.dirname(tool))
    subprocess.run(["gcc", "-static", "-O2", "-o", tool, os.path.join(HERE, "cpuid_dump.c")], check=True)
    files = subprocess.run(["find", "."], cwd=os.path.join(WORK, "overlay"), capture_output=True, check=True).stdout
    archive = subprocess.run(["cpio", "-o", "-H", "newc"], cwd=os.path.join(WORK, "overlay"), input=files,
                             capture_output=True, check=True).stdout
    path = os.path.join(WORK, "initrd-cpuid.gz")
    with open(path, "wb") as out:
        out.write(open(INITRD, "rb").read())
        out.write(subprocess.run(["gzip", "-n"], input=archive, capture_output=True, check=True).stdout)
    return tool, path


def dump_lines(text):
    return [line[line.index("cpuid "):].strip() for line in text.splitlines() if "cpuid " in line
            and ":" in line[line.index("cpuid "):] and not line.rstrip().endswith("00000000 00000000 00000000 00000000")]


def cpuid_tables():
    """{'l1': [...], 'wisp': [...], 'qemu': [...]}: the non-zero CPUID lines each sees."""
    tool, initrd = cpuid_initrd()
    tables = {"l1": dump_lines(subprocess.run([tool], capture_output=True, text=True).stdout)}
    wisp = subprocess.run([WISP, "--kernel", KERNEL, "--initrd", initrd, "--mem-mib", "256",
                           "--cmdline", CMDLINE + " -- /bin/cpuid-dump"], capture_output=True, text=True, timeout=300)
    tables["wisp"] = dump_lines(wisp.stdout)
    qemu = subprocess.run(["qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", "kvm", "-cpu", "host",
                           "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
                           "-no-reboot", "-serial", "stdio", "-display", "none", "-kernel", KERNEL,
                           "-initrd", initrd, "-append",
                           CMDLINE.replace("reboot=k", "reboot=t") + " -- /bin/cpuid-dump"],
                          capture_output=True, text=True, timeout=300)
    tables["qemu"] = dump_lines(qemu.stdout)
    return tables


def compare(tables):
    keys = lambda t: {l.split(":")[0]: l.split(":")[1].strip() for l in t}
    w, q = keys(tables["wisp"]), keys(tables["qemu"])
    print(f"CPUID lines (non-zero): L1 {len(tables['l1'])}, wisp guest {len(w)}, QEMU guest {len(q)}")
    for leaf in sorted(set(w) | set(q)):
        if w.get(leaf) != q.get(leaf):
            print(f"  {leaf}: wisp {w.get(leaf, '(zero)')}  qemu {q.get(leaf, '(zero)')}")


ARMS = {
    "base": {},
    "nohuge": {"WISP_DEBUG_NO_HUGEPAGE": "1"},
    "notscdl": {"WISP_DEBUG_NO_TSC_DEADLINE": "1"},
    "qemu": {"WISP_DEBUG_MTRR_OFF": "1"},  # + WISP_DEBUG_CPUID_FILE, set in main
}
results = []  # (arm, kind, outcome, seconds, detail)
lock = threading.Lock()
stop_at = 0.0
procs = set()


def boot(arm, kind, args, marker, timeout, prefix=()):
    env = dict(os.environ, **ARMS[arm])
    start = time.monotonic()
    proc = subprocess.Popen([*prefix, WISP, *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with lock:
        procs.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
        outcome = "ok" if marker in out else "death"
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        outcome = "hang"
    with lock:
        procs.discard(proc)
    seconds = time.monotonic() - start
    console = out.decode(errors="replace").strip().splitlines()
    detail = ""
    if outcome != "ok":
        shutdown = [l for l in err.decode(errors="replace").splitlines() if "vCPU" in l]
        detail = (f"status {proc.returncode}; console ends {console[-1] if console else ''!r}; "
                  f"{' | '.join(shutdown[-2:])}")
    with lock:
        results.append((arm, kind, outcome, seconds, detail))
        print(f"{time.strftime('%H:%M:%S')} {kind} {arm}: {outcome} after {seconds:.0f} s {detail}", flush=True)
        if len(results) % 10 == 0:
            summary()


def summary():
    arms = sorted({r[0] for r in results})
    print(f"--- {len(results)} boots: arm kind boots deaths(hangs)", flush=True)
    for arm in arms:
        for kind in ("tcp", "idle", "boot"):
            mine = [r for r in results if r[0] == arm and r[1] == kind]
            if mine:
                deaths = sum(r[2] != "ok" for r in mine)
                hangs = sum(r[2] == "hang" for r in mine)
                print(f"    {arm:8} {kind:4} {len(mine):4} {deaths:3} ({hangs})", flush=True)


def next_arm(arms, counter):
    with lock:
        counter[0] += 1
        return arms[counter[0] % len(arms)]


def boot_loop(arms, counter):
    while time.monotonic() < stop_at:
        arm = next_arm(arms, counter)
        cmd = CMDLINE + ' quiet -- /bin/sh -c "echo boot-done"'
        boot(arm, "boot", ["--kernel", KERNEL, "--initrd", INITRD, "--mem-mib", "64", "--cmdline", cmd],
             b"boot-done", 240)


def idle_loop(arms, counter, seconds):
    while time.monotonic() < stop_at:
        arm = next_arm(arms, counter)
        cmd = CMDLINE + f' quiet -- /bin/sh -c "sleep {seconds}; echo idle-done"'
        boot(arm, "idle", ["--kernel", KERNEL, "--initrd", INITRD, "--mem-mib", "64", "--cmdline", cmd],
             b"idle-done", seconds + 240)


SERVER = r"""
import socket, sys, threading
host, size = sys.argv[1], int(sys.argv[2])
chunk = bytes(1 << 20)
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(8); return s
def send(c):
    try:
        for _ in range(size): c.sendall(chunk)
    except OSError: pass
    c.close()
def recv(c):
    c.settimeout(120)
    try:
        while c.recv(1 << 20): pass
    except OSError: pass
    c.close()
out, back = listen(7001), listen(7002)
print("ready", flush=True)
threading.Thread(target=lambda: [threading.Thread(target=recv, args=(back.accept()[0],), daemon=True).start() for _ in iter(int, 1)], daemon=True).start()
while True:
    threading.Thread(target=send, args=(out.accept()[0],), daemon=True).start()
"""


def tcp_loop(arms, counter, mib):
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    ns = lambda *a: subprocess.run(["ip", "netns", "exec", NS, *a], check=True)
    ns("ip", "link", "set", "lo", "up")
    ns("ip", "tuntap", "add", "dev", "dt0", "mode", "tap")
    ns("ip", "addr", "add", f"{HOST}/24", "dev", "dt0")
    ns("ip", "link", "set", "dt0", "up")
    server = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", SERVER, HOST, str(mib)],
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    # As the TCP test does: into the guest's tmpfs, checksummed, and back from there.
    command = (f"ip addr add {GUEST}/24 dev eth0 && ip link set eth0 up && "
               f"nc {HOST} 7001 > /tmp/in.bin && md5sum /tmp/in.bin && "
               f"nc {HOST} 7002 < /tmp/in.bin && echo done-net")
    try:
        while time.monotonic() < stop_at:
            arm = next_arm(arms, counter)
            boot(arm, "tcp", ["--kernel", KERNEL, "--initrd", INITRD, "--mem-mib", "384",
                              "--net", "id=eth0,tap=dt0",
                              "--cmdline", CMDLINE + f' quiet -- /bin/sh -c "{command}"'],
                 b"done-net", 600, prefix=("ip", "netns", "exec", NS))
    finally:
        server.kill()
        subprocess.run(["ip", "netns", "del", NS])


def main():
    global stop_at
    tables = cpuid_tables()
    compare(tables)
    if sys.argv[1:2] == ["cpuid"]:
        for name, lines in tables.items():
            print(f"--- {name}\n" + "\n".join(lines))
        return
    minutes = float(sys.argv[1])
    arms = sys.argv[2].split(",") if len(sys.argv) > 2 else list(ARMS)
    idle = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    mib = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    booters = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    idle_seconds = int(os.environ.get("WISP_STRESS_IDLE_S", "100"))
    qemu_table = os.path.join(WORK, "qemu-cpuid.txt")
    with open(qemu_table, "w") as f:
        f.write("\n".join(tables["qemu"]) + "\n")
    ARMS["qemu"]["WISP_DEBUG_CPUID_FILE"] = qemu_table
    print(f"arms {arms}, {idle} idle guests ({idle_seconds} s each), {booters} boot loops, TCP {mib} MiB each way, "
          f"{minutes} minutes", flush=True)
    stop_at = time.monotonic() + minutes * 60
    threads = [threading.Thread(target=idle_loop, args=(arms, [k], idle_seconds)) for k in range(idle)]
    threads += [threading.Thread(target=boot_loop, args=(arms, [k])) for k in range(booters)]
    if mib:
        threads.append(threading.Thread(target=tcp_loop, args=(arms, [0], mib)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary()
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
