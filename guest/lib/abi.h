/* abi.h: constants shared by start.S, the ring-0 C code and ring 3:
 * selectors, stack sizes, the ud2 request numbers and the trap frame. */
#pragma once

#define SEL_KCODE   0x08
#define SEL_KDATA   0x10
#define SEL_UDATA   0x18
#define SEL_UCODE   0x20
#define SEL_KCODE32 0x28
#define SEL_TSS     0x30

#define RFLAGS_IF   0x200
#define RFLAGS_IOPL3 0x3000
#define RFLAGS_USER (RFLAGS_IOPL3 | 0x2)

#define KSTACK_SIZE    16384
#define USTACK_SIZE    65536
#define MAX_CPUS       64
#define AP_STACK_SHIFT 12	/* 4 KiB ring-0 stack per AP */

#define LAPIC_BASE  0xFEE00000
#define IOAPIC_BASE 0xFEC00000
#define AP_TRAMPOLINE_ADDR 0x8000

/* Ring 3 asks ring 0 for a privileged operation by executing ud2 with
 * RAX = REQ_MAGIC | request; arguments in RDI and RSI, result in RAX. */
#define REQ_MAGIC     0xCE11A000u
#define REQ_MASK      0xFFFFFF00u
#define REQ_NOP       0x00	/* round trip only (measures the cost) */
#define REQ_WAIT_IRQ  0x01	/* sti; hlt; cli: sleep until an interrupt */
#define REQ_SET_IF    0x02	/* RDI != 0: ring 3 runs with IF=1 */
#define REQ_RDMSR     0x03	/* RAX = MSR[RDI] */
#define REQ_WRMSR     0x04	/* MSR[RDI] = RSI */
#define REQ_READ_CR   0x05	/* RAX = CR<RDI> (0, 2, 3, 4) */
#define REQ_HALT      0x06	/* cli; hlt forever */
#define REQ_TRIPLE_FAULT 0x07	/* load an empty IDT and fault: the CPU shuts down */
#define REQ_UNEMULATED 0x08	/* run crc32 in ring 0: an emulating KVM cannot, nor can cella */

#ifndef __ASSEMBLER__
#include <stdint.h>

/* Stack layout built by isr_common: saved GPRs, then the vector and error
 * code pushed by the stub/CPU, then the CPU's iretq frame. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};
#endif
