/* start.S: the guest's whole ring-0 side: PVH entry, long mode with static
 * page tables, GDT/TSS/IDT, the trap entry, the drop to ring 3, and the AP
 * trampoline.
 *
 * On the development host every ring-0 instruction is run by KVM's emulator
 * (about 0.7 us each), so nothing here loops at run time: the page tables,
 * GDT and IDT are assembled into .data, and the descriptor fields that split
 * an address into pieces use symbols the linker script computes (guest.ld).
 */
#include "lib/abi.h"

#define CR0_PE   0x00000001
#define CR0_ET   0x00000010
#define CR0_PG   0x80000000
#define CR4_PAE  0x00000020
#define MSR_EFER 0xC0000080
#define EFER_LME 0x00000100

/* PVH ELF note (Xen, XEN_ELFNOTE_PHYS32_ENTRY): 4-byte 32-bit entry point.
 * The 4 zero bytes after it stay inside the PT_NOTE segment because QEMU
 * reads the entry as a 64-bit value. */
	.section .note.Xen, "a"
	.p2align 2
	.long 4, 4, 18
	.asciz "Xen"
	.long _start32
	.long 0

/* ---------------------------------------------------------------- entry */
	.section .text.boot, "ax"
	.code32
	.globl _start32
_start32:
	movl %ebx, boot_start_info
	lgdt gdt_ptr
	movl $pml4, %eax
	movl %eax, %cr3
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	xorl %edx, %edx
	movl $EFER_LME, %eax
	wrmsr
	movl $(CR0_PG | CR0_ET | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_KCODE, $start64

	.code64
start64:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $SEL_TSS, %eax
	ltr %ax
	lidt idt_ptr
	movq $kstack_top, %rsp
	/* iretq into ring 3 with IOPL=3 (port I/O allowed) and IF=0. */
	pushq $(SEL_UDATA | 3)
	pushq $ustack_top
	pushq $RFLAGS_USER
	pushq $(SEL_UCODE | 3)
	pushq $ring3_start
	iretq

/* ------------------------------------------------------ trap entry (CPL0) */
	.section .text.isr, "ax"
	.p2align 12
	.globl isr_stubs
isr_stubs:
	vec = 0
	.rept 256
	.p2align 4
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	vec = vec + 1
	.endr

	.text
isr_common:
	/* struct trap_frame (lib/abi.h), lowest address first. */
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	call trap_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/* First ring-3 code: give C an ABI-aligned stack and call it. */
	.globl ring3_start
ring3_start:
	xorl %ebp, %ebp
	andq $-16, %rsp
	call libtest_start
1:	jmp 1b

/* ------------------------------------------------------- application CPUs
 * ap_trampoline..ap_trampoline_end is copied to AP_TRAMPOLINE_ADDR (0x8000)
 * by the BSP at run time (ring 3), so nothing of the image lies below 1 MiB.
 * SIPI vector 0x08 starts it in real mode with CS=0x0800, IP=0. */
	.section .rodata
	.code16
	.globl ap_trampoline, ap_trampoline_end
ap_trampoline:
	cli
	movw %cs, %ax
	movw %ax, %ds
	lgdtl ap_gdt_ptr - ap_trampoline
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $ap_entry32
	.p2align 2
ap_gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt
ap_trampoline_end:

	.text
	.code32
ap_entry32:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $pml4, %eax
	movl %eax, %cr3
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	xorl %edx, %edx
	movl $EFER_LME, %eax
	wrmsr
	movl $(CR0_PG | CR0_ET | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_KCODE, $ap_entry64

	.code64
ap_entry64:
	movl $1, %eax
	lock xaddl %eax, ap_ticket
	cmpl $MAX_CPUS, %eax
	jae ap_park
	leal 1(%eax), %ecx
	shll $AP_STACK_SHIFT, %ecx
	leaq ap_stacks(%rcx), %rsp
	lidt idt_ptr
	movl $(LAPIC_BASE + 0x20), %esi
	movl (%rsi), %edx
	shrl $24, %edx
	movl %edx, ap_apic_ids(, %rax, 4)
	lock incl ap_checked_in
ap_park:
	cli
	hlt
	jmp ap_park

/* ------------------------------------------------------------------ data */
	.data
	.p2align 4
	.globl gdt
gdt:
	.quad 0
	.quad 0x00AF9B000000FFFF	/* 0x08 kernel code, 64-bit */
	.quad 0x00CF93000000FFFF	/* 0x10 kernel data (flat, also for 32-bit) */
	.quad 0x00CFF3000000FFFF	/* 0x18 user data */
	.quad 0x00AFFB000000FFFF	/* 0x20 user code, 64-bit */
	.quad 0x00CF9B000000FFFF	/* 0x28 kernel code, 32-bit (AP bring-up) */
	/* 0x30 64-bit TSS; base pieces come from guest.ld */
	.word TSS_SIZE - 1
	.word tss_base_0
	.byte tss_base_16
	.byte 0x89
	.byte 0
	.byte tss_base_24
	.long 0
	.long 0
gdt_end:

	.p2align 4
	.word 0, 0, 0
gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt, 0

	.p2align 4
	.word 0, 0, 0
idt_ptr:
	.word 256 * 16 - 1
	.quad idt

	.p2align 4
	.globl tss
tss:
	.long 0
	.quad kstack_top		/* RSP0 */
	.fill 11, 8, 0
	.word 0
	.word 104			/* I/O bitmap right after the TSS */
	/* IOPL=3 is what lets ring 3 do port I/O on hardware; the KVM of
	 * the development host (PVM) ignores the IOPL in the iretq frame but
	 * honours this all-zero (all ports allowed) bitmap. */
	.fill 8192, 1, 0
	.byte 0xff
	.set TSS_SIZE, 104 + 8192 + 1

	/* 256 interrupt gates to isr_stubs + 16 * vector (DPL 0). */
	.p2align 12
	.globl idt
idt:
	vec = 0
	.rept 256
	.word isr_stubs_lo + 16 * vec
	.word SEL_KCODE
	.byte 0, 0x8E
	.word isr_stubs_hi
	.long 0, 0
	vec = vec + 1
	.endr

	/* Identity map of 0-4 GiB with 2 MiB pages, user-accessible so that
	 * ring 3 reaches RAM and MMIO; the top GiB (MMIO) is uncached. */
	.p2align 12
	.globl pml4
pml4:
	.quad pdpt + 0x7
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x7, pd + 0x1007, pd + 0x2007, pd + 0x3007
	.fill 508, 8, 0
pd:
	page = 0
	.rept 2048
	.if page >= 1536
	.quad (page << 21) | 0x9F
	.else
	.quad (page << 21) | 0x87
	.endif
	page = page + 1
	.endr

	.globl boot_start_info, ap_ticket, ap_checked_in
	.p2align 3
boot_start_info:
	.quad 0
ap_ticket:
	.long 0
ap_checked_in:
	.long 0

	.bss
	.p2align 12
	.globl ap_apic_ids, ap_stacks
ap_apic_ids:
	.skip MAX_CPUS * 4
	.p2align 12
	.skip KSTACK_SIZE
kstack_top:
	.skip USTACK_SIZE
	.globl ustack_top
ustack_top:
ap_stacks:
	.skip MAX_CPUS << AP_STACK_SHIFT

	.section .note.GNU-stack, "", @progbits
