#!/usr/bin/env python3
"""Writes a newc cpio archive to stdout from a list on stdin, in the format of the kernel's
usr/gen_init_cpio (which is not installed), so device nodes need neither root nor mknod:

    dir   <name> <mode> <uid> <gid>
    file  <name> <location> <mode> <uid> <gid>
    nod   <name> <mode> <uid> <gid> <c|b> <major> <minor>
    slink <name> <target> <mode> <uid> <gid>

Modes are octal permission bits. Blank lines and lines starting with # are skipped. Every mtime
is 0 so that the same input gives the same bytes. Parents must come before their children: the
kernel's unpacker does not create missing directories.
"""
import stat
import sys


def fail(lineno, msg):
    sys.exit(f"mkcpio: line {lineno}: {msg}")


def pad4(n):
    return (4 - n % 4) % 4


class Writer:
    def __init__(self, out):
        self.out = out
        self.ino = 721  # where gen_init_cpio starts; any nonzero, unique number would do
        self.names = set()

    def entry(self, name, mode, uid, gid, nlink, data=b"", rdev=(0, 0)):
        self.ino += 1
        name_b = name.encode() + b"\0"
        fields = (self.ino, mode, uid, gid, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name_b), 0)
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out.write(hdr + name_b + b"\0" * pad4(len(hdr) + len(name_b)))
        self.out.write(data + b"\0" * pad4(len(data)))

    def add(self, lineno, name, mode, uid, gid, nlink, data=b"", rdev=(0, 0)):
        name = name.lstrip("/")
        if not name or name in self.names:
            fail(lineno, f"empty or duplicate name /{name}")
        parent = name.rpartition("/")[0]
        if parent and parent not in self.names:
            fail(lineno, f"/{name} comes before its directory /{parent}")
        self.names.add(name)
        self.entry(name, mode, uid, gid, nlink, data, rdev)


def main():
    w = Writer(sys.stdout.buffer)
    for lineno, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, name, rest = (line.split(None, 2) + ["", ""])[:3]
        try:
            if kind == "dir":
                mode, uid, gid = rest.split()
                w.add(lineno, name, stat.S_IFDIR | int(mode, 8), int(uid), int(gid), 2)
            elif kind == "file":
                # The location may contain blanks: take the numbers from the right.
                location, mode, uid, gid = rest.rsplit(None, 3)
                with open(location, "rb") as f:
                    data = f.read()
                w.add(lineno, name, stat.S_IFREG | int(mode, 8), int(uid), int(gid), 1, data)
            elif kind == "nod":
                mode, uid, gid, dev_type, major, minor = rest.split()
                ifmt = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}[dev_type]
                w.add(lineno, name, ifmt | int(mode, 8), int(uid), int(gid), 1,
                      rdev=(int(major), int(minor)))
            elif kind == "slink":
                target, mode, uid, gid = rest.split()
                w.add(lineno, name, stat.S_IFLNK | int(mode, 8), int(uid), int(gid), 1,
                      target.encode())
            else:
                fail(lineno, f"unknown entry type {kind!r}")
        except (ValueError, KeyError) as e:
            fail(lineno, f"malformed {line!r} ({e})")
        except OSError as e:
            fail(lineno, str(e))
    w.entry("TRAILER!!!", 0, 0, 0, 1)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
