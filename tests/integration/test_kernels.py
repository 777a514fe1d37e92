#!/usr/bin/env python3
"""it-kernels: the kernel classes the boot ABIs allow boot under cella-vm (or
QEMU with CELLA_IT_VMM=qemu): an ELF32 (i386) PVH kernel as well as an ELF64
one; the same ELF32 kernel stripped of its PVH note boots through the 32-bit
Linux boot protocol at e_entry (cella only: QEMU refuses an ELF without the
note), and with a multiboot header added through multiboot. Broken or
unsupported images (a multiboot kernel asking for a video mode, a 32-bit
ELF for another machine, a truncated one, a bzImage too old for init_size)
exit 2 with a message that names what is wrong, before any VM is created.

The kernels are guest/tiny/tiny.S assembled as ELF64 (tiny) and ELF32
(tiny32); the variants are made here by patching the ELF32 file."""
import os
import struct
import subprocess
import tempfile

import harness

MARK32 = "Hello from the tiny cella guest (ELF32 PVH)\n"
MARK64 = "Hello from the tiny cella guest\n"


def check(cond, msg):
    if not cond:
        raise harness.TestFailure(msg)
    harness.log(f"ok: {msg}")


def run(cmd, timeout=60):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def boot(vmm, vm, kernel):
    return run(harness.build_command(vmm, vm, kernel))


def elf32_notes(data):
    """Offsets of the PT_NOTE segments' (offset, size) in an ELF32 file."""
    phoff, = struct.unpack_from("<I", data, 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    out = []
    for i in range(phnum):
        p_type, p_offset, _, _, p_filesz = struct.unpack_from("<IIIII", data, phoff + i * phentsize)
        if p_type == 4:
            out.append((p_offset, p_filesz))
    return out


def without_pvh_note(data):
    """The file with its Xen PHYS32_ENTRY note's type changed to an unknown one."""
    b = bytearray(data)
    found = False
    for off, size in elf32_notes(b):
        pos = off
        while pos + 12 <= off + size:
            namesz, descsz, ntype = struct.unpack_from("<III", b, pos)
            if ntype == 18 and b[pos + 12:pos + 16] == b"Xen\0":
                struct.pack_into("<I", b, pos + 8, 0x4242)
                found = True
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    check(found, "tiny32.elf carries the Xen PHYS32_ENTRY note")
    return b


def test(args):
    vm, vmm = args["cella_vm"], harness.vmm_kind()
    tiny, tiny32 = args["guests"]["tiny"], args["guests"]["tiny32"]
    with open(tiny32, "rb") as f:
        elf32 = f.read()
    check(elf32[:5] == b"\x7fELF\x01" and struct.unpack_from("<H", elf32, 18)[0] == 3,
          "tiny32.elf is an ELF32 i386 file")

    code, out, err = boot(vmm, vm, tiny32)
    check(code == 1 and out == MARK32,
          f"{vmm}: the ELF32 PVH kernel prints its marker and exits with status 1 "
          f"(got {code}, {out!r}, {err.strip()[-300:]!r})")
    code, out, err = boot(vmm, vm, tiny)
    check(code == 1 and out == MARK64,
          f"{vmm}: the ELF64 PVH kernel prints its marker (got {code}, {out!r})")
    if vmm != "cella":
        return

    with tempfile.TemporaryDirectory() as d:
        def write(name, data):
            path = os.path.join(d, name)
            with open(path, "wb") as f:
                f.write(bytes(data))
            return path

        # No PVH note: an ELF32 kernel entered at e_entry in 32-bit protected
        # mode with a zero page in ESI (the i386 vmlinux contract). tiny's
        # code uses neither EBX nor ESI, so it prints the same line.
        plain = without_pvh_note(elf32)

        def boot_debug(path):
            env = dict(os.environ, CELLA_DEBUG="1")
            p = subprocess.run(harness.build_command("cella", vm, path), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=60, env=env)
            return p.returncode, p.stdout, p.stderr

        code, out, err = boot_debug(write("vmlinux32.elf", plain))
        check(code == 1 and out == MARK32 and "ELF32 (32-bit Linux)" in err,
              f"an ELF32 kernel without the PVH note boots through the 32-bit Linux "
              f"protocol (got {code}, {out!r})")

        # The same with a multiboot header (flags: page-aligned modules,
        # memory information) in the first 8 KiB: entered by multiboot.
        def with_multiboot(flags):
            mb = bytearray(plain)
            struct.pack_into("<III", mb, 0x200, 0x1BADB002, flags,
                             (-(0x1BADB002 + flags)) & 0xffffffff)
            return mb

        code, out, err = boot_debug(write("multiboot.elf", with_multiboot(3)))
        check(code == 1 and out == MARK32 and "ELF32 (multiboot)" in err,
              f"an ELF32 multiboot kernel boots through multiboot (got {code}, {out!r})")

        # A 32-bit ELF for another machine (x86-64 in e_machine, an x32 file).
        x32 = bytearray(elf32)
        struct.pack_into("<H", x32, 18, 62)
        old_bz = bytearray(4096)
        old_bz[0x1FE:0x200] = b"\x55\xaa"
        old_bz[0x201] = 0x6a
        old_bz[0x202:0x206] = b"HdrS"
        old_bz[0x206:0x208] = (0x0209).to_bytes(2, "little")
        cases = [
            (write("multiboot-video.elf", with_multiboot(7)),
             "ELF: the multiboot kernel requires a video mode (header flag 2)"),
            (write("x32.elf", x32), "ELF: not i386 (a 32-bit ELF file must be EM_386)"),
            (write("short32.elf", elf32[:60]), "ELF: program header table outside file"),
            (write("old.bzimage", old_bz),
             "boot protocol too old (need 2.10+, Linux 2.6.31 or later: earlier ones give "
             "no init_size) (file has boot protocol 2.09)"),
        ]
        for path, want in cases:
            code, out, err = run([vm, "--kernel", path])
            check(code == 2 and want in err and out == "",
                  f"{os.path.basename(path)}: status {code}, error names '{want}'"
                  + ("" if want in err else f" (stderr: {err.strip()[:300]})"))


harness.main(test)
