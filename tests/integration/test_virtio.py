"""virtio-mmio devices on real KVM: an ext4 root on virtio-blk that survives a reboot,
read-only and extra drives, TCP over virtio-net on a TAP device in a network namespace,
and a hostile guest that attacks the virtqueues."""
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile

from wisptest import WispTimeout, check

SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
NETNS = f"wisp-test-{os.getpid()}"
HOST_IP, GUEST_IP = "172.30.77.1", "172.30.77.2"


def make_rootfs(env, directory, size_mib=64):
    """An ext4 image holding busybox and the wisp init at /sbin/init."""
    staging = os.path.join(directory, "rootfs")
    for sub in ["bin", "sbin", "proc", "sys", "dev", "tmp", "run", "etc", "root"]:
        os.makedirs(os.path.join(staging, sub), exist_ok=True)
    shutil.copy(env.init_binary, os.path.join(staging, "sbin", "init"))
    shutil.copy("/bin/busybox", os.path.join(staging, "bin", "busybox"))
    for applet in ["sh", "cat", "echo", "dd", "sync", "ls", "sha256sum", "nc", "ip", "head",
                   "grep", "sleep", "mount", "wc", "cut", "true", "cmp"]:
        os.symlink("busybox", os.path.join(staging, "bin", applet))
    image = os.path.join(directory, "rootfs.ext4")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "wisproot", "-d", staging, image,
                    f"{size_mib}M"], check=True)
    return image


def disk_boot(env, command, drives, timeout=240, **kwargs):
    """Boots from the ext4 root (no initrd) with extra --drive options."""
    extra = []
    for spec in drives:
        extra += ["--drive", spec]
    return env.boot(command=command, initrd="", extra=extra, timeout=timeout, **kwargs)


def test_ext4_root_on_virtio_blk_keeps_a_file_across_reboots(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        root = make_rootfs(env, tmp)
        token = f"persisted-{os.getpid()}"
        first = disk_boot(env, f"echo {token} > /root/note.txt; sync; cat /proc/mounts; "
                          "cat /sys/block/vda/size",
                          [f"id=rootfs,path={root},root=on"])
        check(first.command_status() == 0, "writing the file failed", first)
        check(str(64 * 2048) in first.console, "vda should be the 64 MiB root image", first)
        check(" / ext4 rw" in first.console, "/ should be ext4, mounted rw", first)
        second = disk_boot(env, "cat /root/note.txt", [f"id=rootfs,path={root},root=on"])
        check(token in second.console, "the file did not survive the reboot", second)
        check(second.status == 0, "exit status should be 0", second)


def test_read_only_drive_refuses_writes_and_second_drive_is_visible(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        root = make_rootfs(env, tmp)
        data = os.path.join(tmp, "data.img")
        with open(data, "wb") as f:
            f.write(b"WISPDATA" + bytes(4 * 1024 * 1024 - 8))
        before = hashlib.sha256(open(data, "rb").read()).hexdigest()
        result = disk_boot(
            env,
            "cat /sys/block/vdb/size; cat /sys/block/vdb/ro; head -c 8 /dev/vdb; echo; "
            "dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct conv=fsync "
            "&& echo write-succeeded || echo write-failed",
            [f"id=rootfs,path={root},root=on", f"id=data,path={data},ro=on"])
        check("8192" in result.console, "vdb should have 8192 sectors (4 MiB)", result)
        check("WISPDATA" in result.console, "reading the second drive failed", result)
        check("write-failed" in result.console, "a write to the read-only drive succeeded",
              result)
        after = hashlib.sha256(open(data, "rb").read()).hexdigest()
        check(before == after, "the read-only image changed on the host", result)


def test_sync_engine_drive_reads_and_writes(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        root = make_rootfs(env, tmp)
        data = os.path.join(tmp, "sync.img")
        with open(data, "wb") as f:
            f.truncate(1024 * 1024)
        result = disk_boot(
            env, "echo sync-engine-data | dd of=/dev/vdb bs=512 conv=sync,fsync oflag=direct;"
            " head -c 16 /dev/vdb",
            [f"id=rootfs,path={root},root=on,io_engine=Sync",
             f"id=scratch,path={data},io_engine=Sync"])
        check(result.command_status() == 0, "the guest command failed", result)
        with open(data, "rb") as f:
            check(f.read(16) == b"sync-engine-data", "the write did not reach the image",
                  result)


def _netns(*args):
    subprocess.run(["ip", "netns", "exec", NETNS] + list(args), check=True)


def _tcp_round_trip(env, payload):
    """One boot: the host sends `payload` to the guest, which checksums it and sends it
    back. Returns (wisp's Result, the md5 of what the host got back, the server's stderr)."""
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    server = None
    try:
        _netns("ip", "link", "set", "lo", "up")
        _netns("ip", "tuntap", "add", "dev", "wisptap0", "mode", "tap")
        _netns("ip", "addr", "add", f"{HOST_IP}/24", "dev", "wisptap0")
        _netns("ip", "link", "set", "wisptap0", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "python3", "-c", SERVER, HOST_IP,
             str(len(payload))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        server.stdin.write(payload)
        server.stdin.close()
        ready = server.stdout.readline().decode().strip()
        check(ready == "ready", f"the host server did not start: {ready!r}")
        command = (f"ip addr add {GUEST_IP}/24 dev eth0; ip link set eth0 up; "
                   f"nc {HOST_IP} 7001 > /tmp/in.bin; md5sum /tmp/in.bin; "
                   f"nc {HOST_IP} 7002 < /tmp/in.bin; echo sent")
        result = env.run_in_netns(NETNS, command, ["--net", "id=eth0,tap=wisptap0"],
                                  mem_mib=384, timeout=300)
        # The guest's nc can return before the host has read the last bytes, but not
        # long before; a guest that died mid-transfer leaves the server waiting.
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        return (result, server.stdout.read().decode().strip(),
                server.stderr.read().decode()[-500:])
    finally:
        if server and server.poll() is None:
            server.kill()
        subprocess.run(["ip", "netns", "delete", NETNS], check=False)


def test_tcp_transfer_of_100_mib_each_way_over_tap(env):
    # The host sends 100 MiB of random data, the guest checksums what it received and
    # sends it back; both ends' checksums must match the original. md5 rather than
    # sha256 keeps the guest's CPU time reasonable under nested emulation.
    payload = os.urandom(1024 * 1024) * 100
    expected = hashlib.md5(payload).hexdigest()
    # Under ci/kvm-harness the emulated SVM now and then resumes a guest with the L1
    # kernel's own registers (README, "I/O benchmark"): the guest then resets or hangs
    # before its command ends, in about a third of this test's boots there. There, and
    # only for that, up to two more boots; under real KVM a guest that dies is a failure
    # at once.
    attempts = 3 if os.environ.get("WISP_IN_HARNESS") == "1" else 1
    for attempt in range(1, attempts + 1):
        try:
            result, host_sum, server_err = _tcp_round_trip(env, payload)
        except WispTimeout as err:
            if attempt == attempts:
                raise
            why = str(err).splitlines()[0]  # the guest hung
        else:
            if result.command_status() is not None or attempt == attempts:
                break
            last = (result.console.strip().splitlines() or ["nothing"])[-1]
            why = (f"wisp exit status {result.status} after {result.seconds:.1f} s, console "
                   f"ends {last!r}")
        print(f"# tcp transfer: the guest died before its command ended ({why}); nested "
              f"KVM: boot {attempt + 1} of at most {attempts}", flush=True)
    check(f"{expected}  /tmp/in.bin" in result.console,
          "the guest's checksum of what the host sent does not match", result)
    check(host_sum == expected,
          f"what the guest sent back ({host_sum!r}) does not match what the host sent; "
          f"server stderr: {server_err}", result)
    check(result.command_status() == 0, "the guest's command did not end with status 0",
          result)


# Host side: listen on 7001 and 7002 (then say "ready"), send stdin to the first client
# on 7001, receive everything from the first client on 7002 and print its md5.
SERVER = r"""
import hashlib, socket, sys
host, size = sys.argv[1], int(sys.argv[2])
data = sys.stdin.buffer.read()
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(1); s.settimeout(400); return s
send, recv = listen(7001), listen(7002)
print("ready", flush=True)
conn, _ = send.accept(); conn.sendall(data); conn.close()
conn, _ = recv.accept(); conn.settimeout(400); h = hashlib.md5(); got = 0
while True:
    chunk = conn.recv(1 << 20)
    if not chunk: break
    h.update(chunk); got += len(chunk)
print(h.hexdigest() if got == size else f"short:{got}", flush=True)
"""


def test_hostile_guest_cannot_break_wisp_and_device_recovers_after_reset(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        disk = os.path.join(tmp, "hostile.img")
        with open(disk, "wb") as f:
            f.write(b"WISPDISK" + bytes(1024 * 1024 - 8))
        result = env.run(["--kernel", env.hostile_guest, "--mem-mib", "64",
                          "--cmdline", "hostile", "--drive", f"id=disk,path={disk}"],
                         timeout=120)
        console = result.console
        check("hostile: read data=WISPDISK" in console,
              "the valid read before the attacks failed", result)
        for attack in ["loop", "addr-outside-ram", "addr-mmio", "next-oob", "head-oob",
                       "indirect-long", "avail-jump"]:
            check(f"attack-{attack} needs_reset=1" in console,
                  f"attack {attack} should leave the device needing a reset", result)
            check(f"after-{attack} read_ok=1" in console,
                  f"the device should work again after a reset ({attack})", result)
        check("hostile: done" in console, "the hostile guest did not finish", result)
        check(result.status == 0, "wisp should survive and exit 0", result)
        check("needs a reset" in result.stderr, "wisp should log why the queue broke",
              result)
