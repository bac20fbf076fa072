#!/bin/sh
# Build postcopy-guest.elf (multiboot v1 ELF32 kernel for qemu -kernel).
# Usage: build.sh OUTDIR     -> OUTDIR/postcopy-guest.elf
set -eu
if [ $# -ne 1 ]; then echo "usage: $0 OUTDIR" >&2; exit 2; fi
OUT=$1
SRC=$(cd "$(dirname "$0")" && pwd)
CC=${CC:-gcc}
LD=${LD:-ld}
for t in "$CC" "$LD"; do
    command -v "$t" >/dev/null 2>&1 || { echo "build.sh: required tool '$t' not found in PATH (need gcc and binutils ld)" >&2; exit 1; }
done
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
CFLAGS="-m32 -march=i686 -O2 -g0 -std=gnu99 -Wall -Wextra -ffreestanding -nostdlib -fno-pic -fno-pie \
 -fno-stack-protector -fno-asynchronous-unwind-tables -fno-builtin -mgeneral-regs-only -mno-red-zone \
 -fno-tree-loop-distribute-patterns -ffile-prefix-map=$SRC=."
# shellcheck disable=SC2086
"$CC" $CFLAGS -c "$SRC/boot.S" -o "$TMP/boot.o" || { echo "build.sh: assembling boot.S failed (gcc -m32 support?)" >&2; exit 1; }
# shellcheck disable=SC2086
"$CC" $CFLAGS -c "$SRC/guest.c" -o "$TMP/guest.o" || { echo "build.sh: compiling guest.c failed" >&2; exit 1; }
"$LD" -m elf_i386 -nostdlib --build-id=none -z noexecstack --no-warn-rwx-segments -T "$SRC/linker.ld" \
    "$TMP/boot.o" "$TMP/guest.o" -o "$TMP/postcopy-guest.elf" || { echo "build.sh: link failed" >&2; exit 1; }
mv "$TMP/postcopy-guest.elf" "$OUT/postcopy-guest.elf"
echo "built $OUT/postcopy-guest.elf"
