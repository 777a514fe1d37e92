/* tiny.S: the trivial guest of the start-time benchmark, the same kind as
 * the reference figure in HOST.md: a PVH ELF that prints one line on COM1
 * straight from its 32-bit entry (no long mode, no ring 3: a handful of
 * instructions) and ends the VM by writing 0 to the debug-exit port, so
 * cella-vm and QEMU both exit with status 1. Assembled twice: as an ELF64
 * file (tiny.elf) and, with -m32, as an ELF32 i386 one (tiny32.elf), the
 * two classes of PVH kernel the ABI allows; each names its class. */
	.section .note.pvh, "a"
	.align 4
	.long 4			/* name size: "Xen\0" */
	.long 4			/* descriptor size */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long _start

	.text
	.code32
	.globl _start
_start:
	mov $message, %esi
	mov $0x3f8, %dx
1:	lodsb
	test %al, %al
	jz 2f
	out %al, %dx
	jmp 1b
2:	mov $0xf4, %dx
	xor %eax, %eax
	out %eax, %dx
3:	hlt
	jmp 3b

	.section .rodata
message:
#ifdef __i386__
	.asciz "Hello from the tiny cella guest (ELF32 PVH)\n"
#else
	.asciz "Hello from the tiny cella guest\n"
#endif
