#!/usr/bin/env python3
"""gen_corpus_bootcfg.py: the seed corpus of fuzz-bootcfg (fuzz_bootcfg.c):
the first byte picks the reader (0 grub.cfg, 1 BLS entry, 2 grubenv NUL
grub.cfg, 3 partition table)."""
import os
import struct
import zlib

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus-bootcfg')
os.makedirs(here, exist_ok=True)

GRUB = b"""if [ -s $prefix/grubenv ]; then
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
else
   set default="0"
fi
function load_video {
  insmod all_video
}
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-1' {
\tload_video
\tset root='hd0,gpt1'
\tlinux\t/boot/vmlinuz-6.1 root=PARTUUID=abcd ro console=ttyS0,115200 $vt_handoff
\tinitrd\t/boot/initrd.img-6.1
}
submenu 'Advanced' $menuentry_id_option 'adv' {
\tmenuentry 'old' --id=old {
\t\tlinux (hd0,gpt1)/boot/vmlinuz-6.0 "a b" 'c' d\\ e ${x}
\t\tinitrd /boot/a /boot/b
\t}
}
"""
BLS = b"""title Fedora Linux (6.5.6-300.fc39.x86_64) 39
version 6.5.6-300.fc39.x86_64
linux /vmlinuz-6.5.6-300.fc39.x86_64
initrd /initramfs-6.5.6-300.fc39.x86_64.img
options root=UUID=ab ro $kernelopts ${tuned_params}
options console=ttyS0
"""
ENV = b"# GRUB Environment Block\nnext_entry=adv>old\nsaved_entry=0\n" + b"#" * 64


def mbr():
    s = bytearray(512 * 64)
    s[510:512] = b'\x55\xaa'
    struct.pack_into('<B3xBxxxII', s, 446, 0x80, 0x83, 8, 40)
    struct.pack_into('<4xB3xII', s, 462, 0x05, 48, 8)
    s[8 * 512 + 1024 + 56:8 * 512 + 1024 + 58] = b'\x53\xef'
    return bytes(s)


def gpt():
    s = bytearray(512 * 64)
    s[510:512] = b'\x55\xaa'
    struct.pack_into('<4xB3xII', s, 446, 0xee, 1, 63)
    ent = bytearray(4 * 128)
    ent[0:16] = b'\x01' * 16
    struct.pack_into('<QQ', ent, 32, 34, 63)
    h = bytearray(92)
    h[0:8] = b'EFI PART'
    struct.pack_into('<I', h, 12, 92)
    struct.pack_into('<QII', h, 72, 2, 4, 128)
    struct.pack_into('<I', h, 88, zlib.crc32(ent))
    struct.pack_into('<I', h, 16, zlib.crc32(h))
    s[512:512 + 92] = h
    s[1024:1024 + len(ent)] = ent
    s[34 * 512:34 * 512 + 4] = b'XFSB'
    return bytes(s)


seeds = {
    'grub-debian': b'\x00' + GRUB,
    'grub-broken': b'\x00' + GRUB[:-3],
    'bls-fedora': b'\x01' + BLS,
    'grubenv-grub': b'\x02' + ENV + b'\x00' + GRUB,
    'mbr': b'\x03' + mbr(),
    'gpt': b'\x03' + gpt(),
}
for name, data in seeds.items():
    with open(os.path.join(here, name), 'wb') as f:
        f.write(data)
