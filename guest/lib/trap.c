/* trap.c: ring-0 C side of traps: interrupt counting, the ud2 request
 * service and the fatal-fault report. Runs under KVM's emulator on the
 * development host, so the common paths are kept to a few instructions. */
#include "libtest.h"

#define SPURIOUS_VECTOR 0xFF
#define LAPIC_EOI (LAPIC_BASE + 0xB0)

volatile uint32_t irq_counts[256];
volatile uint64_t irq_before_hlt;
volatile bool wait_hlt_fixup = true;
void trap_dispatch(struct trap_frame *f);

/* The ring-0 wait: sti; hlt. The STI shadow makes the pair atomic on
 * hardware (an interrupt pending at the sti is taken once the hlt has
 * begun, which it ends), so the interrupted RIP is never the hlt itself. */
void ring0_sti_hlt(void);
extern const char ring0_hlt_insn[];
__asm__(".text\n"
	".globl ring0_sti_hlt\n"
	"ring0_sti_hlt:\n"
	"\tsti\n"
	".globl ring0_hlt_insn\n"
	"ring0_hlt_insn:\n"
	"\thlt\n"
	"\tcli\n"
	"\tret\n");

static const char *const exception_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP",
	"#SS", "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

static void __noreturn trap_fatal(struct trap_frame *f)
{
	uint64_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	const char *name = f->vector < 32 && exception_names[f->vector] ? exception_names[f->vector] : "?";
	printf("\ntrap: vector %lu (%s) error 0x%lx rip 0x%lx cs 0x%lx rflags 0x%lx rsp 0x%lx cr2 0x%lx\n",
	       f->vector, name, f->error, f->rip, f->cs, f->rflags, f->rsp, cr2);
	printf("trap: rax 0x%lx rbx 0x%lx rcx 0x%lx rdx 0x%lx rsi 0x%lx rdi 0x%lx rbp 0x%lx\n",
	       f->rax, f->rbx, f->rcx, f->rdx, f->rsi, f->rdi, f->rbp);
	printf("FAIL %s: unexpected exception %s at rip 0x%lx\n", test_name, name, f->rip);
	outl(DEBUG_EXIT_PORT, 1);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static bool trap_request(struct trap_frame *f)
{
	uint64_t v;
	switch (f->rax & ~REQ_MASK) {
	case REQ_NOP:
		return true;
	case REQ_WAIT_IRQ:
		ring0_sti_hlt();
		return true;
	case REQ_SET_IF:
		f->rflags = f->rdi ? (f->rflags | RFLAGS_IF) : (f->rflags & ~(uint64_t)RFLAGS_IF);
		return true;
	case REQ_RDMSR: {
		uint32_t lo, hi;
		__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"((uint32_t)f->rdi));
		f->rax = ((uint64_t)hi << 32) | lo;
		return true;
	}
	case REQ_WRMSR:
		__asm__ volatile("wrmsr" ::"c"((uint32_t)f->rdi), "a"((uint32_t)f->rsi),
				 "d"((uint32_t)(f->rsi >> 32)));
		return true;
	case REQ_READ_CR:
		switch (f->rdi) {
		case 0: __asm__ volatile("mov %%cr0, %0" : "=r"(v)); break;
		case 2: __asm__ volatile("mov %%cr2, %0" : "=r"(v)); break;
		case 3: __asm__ volatile("mov %%cr3, %0" : "=r"(v)); break;
		case 4: __asm__ volatile("mov %%cr4, %0" : "=r"(v)); break;
		default: return false;
		}
		f->rax = v;
		return true;
	case REQ_HALT:
		for (;;)
			__asm__ volatile("cli; hlt");
	case REQ_UNEMULATED: {
		/* Native on hardware virtualization; on an emulating KVM neither
		 * KVM nor cella's fallback carries it out (the VM pauses there). */
		uint32_t v = (uint32_t)f->rdi;
		__asm__ volatile("crc32l %1, %0" : "+r"(v) : "r"((uint32_t)f->rsi));
		f->rax = v;
		return true;
	}
	case REQ_TRIPLE_FAULT: {
		/* With no IDT, the #UD cannot be delivered: #DF, then shutdown. */
		struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = { 0, 0 };
		__asm__ volatile("lidt %0; ud2" ::"m"(idtr));
		return false;
	}
	}
	return false;
}

void trap_dispatch(struct trap_frame *f)
{
	if (f->vector >= 32) {
		if (f->rip == (uint64_t)(uintptr_t)ring0_hlt_insn && !(f->cs & 3)) {
			/* Taken between the sti and the hlt: the host ignored the STI
			 * shadow (docs/guest.md, "Waiting for an interrupt"). The hlt
			 * would then wait for another interrupt, which a one-shot
			 * timer never sends: skip it. */
			irq_before_hlt++;
			if (wait_hlt_fixup)
				f->rip++;
		}
		irq_counts[f->vector]++;
		if (f->vector != SPURIOUS_VECTOR)
			*(volatile uint32_t *)LAPIC_EOI = 0;
		return;
	}
	if (f->vector == 6 && (f->cs & 3) == 3 && (f->rax & REQ_MASK) == REQ_MAGIC &&
	    *(const uint16_t *)f->rip == 0x0B0F && trap_request(f)) {
		f->rip += 2;
		return;
	}
	trap_fatal(f);
}
