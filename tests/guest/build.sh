#!/bin/sh
# Builds the hostile virtio-blk test guest: tests/guest/build.sh OUT.elf
#
# The guest is 32-bit code (it stays in the protected mode the PVH entry gives it),
# linked at 0x200000 as an i386 ELF, then rewrapped by objcopy as the ELF64 x86-64
# executable wisp's loader takes. Only gcc and binutils are needed: -ffreestanding
# uses gcc's own <stdint.h>/<stddef.h> and nothing is linked from libc or libgcc, so
# no 32-bit multilib packages are required.
set -eu

out=${1:?usage: $0 OUT.elf}
dir=$(cd "$(dirname "$0")" && pwd)
CC=${CC:-gcc}
LD=${LD:-ld}
OBJCOPY=${OBJCOPY:-objcopy}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# -mgeneral-regs-only: no SSE/x87 code, the guest never enables them.
cflags="-m32 -std=gnu11 -O2 -Wall -Wextra -Werror -ffreestanding -fno-builtin -fno-pic \
-fno-pie -fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables \
-mgeneral-regs-only -nostdlib -static"
# gcc only (clang has no such flag, nor the problem): no memset() call made out of
# memset's own loop.
if $CC -fno-tree-loop-distribute-patterns -E -x c /dev/null >/dev/null 2>&1; then
	cflags="$cflags -fno-tree-loop-distribute-patterns"
fi

# shellcheck disable=SC2086 # cflags is a list of flags
$CC $cflags -c "$dir/start.S" -o "$tmp/start.o"
# shellcheck disable=SC2086
$CC $cflags -c "$dir/hostile.c" -o "$tmp/hostile.o"

# -n: no page alignment in the file, which keeps it small (paging is off anyway).
# Binutils >= 2.39 warn about the single RWX segment: harmless here, for that reason.
ldflags="-m elf_i386 -nostdlib -static -z noexecstack -n"
if $LD --help 2>/dev/null | grep -q -- --no-warn-rwx-segments; then
	ldflags="$ldflags --no-warn-rwx-segments"
fi
# shellcheck disable=SC2086
$LD $ldflags -T "$dir/hostile.ld" -o "$tmp/hostile32.elf" "$tmp/start.o" "$tmp/hostile.o"

mkdir -p "$(dirname "$out")"
$OBJCOPY -O elf64-x86-64 "$tmp/hostile32.elf" "$out.tmp"
mv "$out.tmp" "$out"
