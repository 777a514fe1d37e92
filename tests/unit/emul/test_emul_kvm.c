/* test_emul_kvm.c: the emulation fallback's KVM adapter on a real vCPU: a
 * 32-bit protected-mode guest runs popcnt, ldmxcsr/stmxcsr, fwait, stac/clac,
 * lock cmpxchg8b, xsave/xrstor, SSE register moves (movd, movq, pxor, movdqu),
 * SSE integer operations (paddd, pshufd, psrld), a movzx inside an SSE run, CPUID (at CPL0: which
 * parts of the KVM_SET_CPUID2 table it honours) and int3 (its #BP handler records the return address), with
 * the exit loop cella-vm uses for emulation failures. On this project's
 * emulating KVM these instructions end KVM_RUN and the fallback carries them
 * out; on a hardware host they run natively. The results must be the same.
 * Skipped without /dev/kvm. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "arch/x86/emul/emul.h"
#include "mem.h"

#define CODE 0x1000u
#define HANDLER 0x1800u
#define DATA 0x2000u
#define STACK 0x3000u
#define IDT 0x4000u
#define GDT 0x5000u
#define CPUID1_ECX_SSSE3 (1u << 9)
#define CPUID1_ECX_POPCNT (1u << 23)

/* The guest, assembled by hand (32-bit code). */
static const uint8_t guest_code[] = {
	0xf3, 0x0f, 0xb8, 0xc3,                         /* popcnt eax, ebx */
	0xa3, 0x00, 0x20, 0x00, 0x00,                   /* mov [0x2000], eax */
	0x0f, 0xae, 0x15, 0x10, 0x20, 0x00, 0x00,       /* ldmxcsr [0x2010] */
	0x0f, 0xae, 0x1d, 0x14, 0x20, 0x00, 0x00,       /* stmxcsr [0x2014] */
	0x9b,                                           /* fwait */
	0x0f, 0x01, 0xcb,                               /* stac */
	0x9c, 0x59,                                     /* pushfd; pop ecx */
	0x89, 0x0d, 0x18, 0x20, 0x00, 0x00,             /* mov [0x2018], ecx */
	0x0f, 0x01, 0xca,                               /* clac */
	0x9c, 0x59,                                     /* pushfd; pop ecx */
	0x89, 0x0d, 0x1c, 0x20, 0x00, 0x00,             /* mov [0x201c], ecx */
	0xb8, 0x01, 0x00, 0x00, 0x00,                   /* mov eax, 1 */
	0xba, 0x00, 0x00, 0x00, 0x00,                   /* mov edx, 0 */
	0xbb, 0x11, 0x00, 0x00, 0x00,                   /* mov ebx, 0x11 */
	0xb9, 0x22, 0x00, 0x00, 0x00,                   /* mov ecx, 0x22 */
	0xf0, 0x0f, 0xc7, 0x0d, 0x20, 0x20, 0x00, 0x00, /* lock cmpxchg8b [0x2020] */
	0xb8, 0x03, 0x00, 0x00, 0x00,                   /* mov eax, 3 (x87 | SSE) */
	0x31, 0xd2,                                     /* xor edx, edx */
	0x0f, 0xae, 0x25, 0x00, 0x22, 0x00, 0x00,       /* xsave [0x2200] */
	0x0f, 0xae, 0x2d, 0x00, 0x24, 0x00, 0x00,       /* xrstor [0x2400] */
	0x0f, 0xae, 0x1d, 0x40, 0x20, 0x00, 0x00,       /* stmxcsr [0x2040] */
	0xb9, 0x78, 0x56, 0x34, 0x12,                   /* mov ecx, 0x12345678 */
	0x66, 0x0f, 0x6e, 0xc9,                         /* movd xmm1, ecx */
	0x0f, 0xb6, 0x15, 0x10, 0x20, 0x00, 0x00,       /* movzx edx, byte [0x2010] */
	0x66, 0x0f, 0xef, 0xd2,                         /* pxor xmm2, xmm2 */
	0xf3, 0x0f, 0x7e, 0xd1,                         /* movq xmm2, xmm1 */
	0x66, 0x0f, 0x7e, 0xd0,                         /* movd eax, xmm2 */
	0xa3, 0x50, 0x20, 0x00, 0x00,                   /* mov [0x2050], eax */
	0xf3, 0x0f, 0x7f, 0x0d, 0x60, 0x20, 0x00, 0x00, /* movdqu [0x2060], xmm1 */
	0x66, 0x0f, 0xfe, 0xc9,                         /* paddd xmm1, xmm1 */
	0x66, 0x0f, 0x70, 0xd9, 0x1b,                   /* pshufd xmm3, xmm1, 0x1b */
	0x66, 0x0f, 0x72, 0xd3, 0x04,                   /* psrld xmm3, 4 */
	0xf3, 0x0f, 0x7f, 0x1d, 0x80, 0x20, 0x00, 0x00, /* movdqu [0x2080], xmm3 */
	0x89, 0x15, 0x98, 0x20, 0x00, 0x00,             /* mov [0x2098], edx */
	0xb8, 0x01, 0x00, 0x00, 0x00,                   /* mov eax, 1 */
	0x31, 0xc9,                                     /* xor ecx, ecx */
	0x0f, 0xa2,                                     /* cpuid (at CPL0) */
	0x89, 0x0d, 0x90, 0x20, 0x00, 0x00,             /* mov [0x2090], ecx */
	0x89, 0x1d, 0x94, 0x20, 0x00, 0x00,             /* mov [0x2094], ebx */
	0xcc,                                           /* int3 -> handler */
	0xf4,                                           /* (not reached) hlt */
};
static const uint8_t handler_code[] = {
	0xc7, 0x05, 0x30, 0x20, 0x00, 0x00, 0xb3, 0x00, 0x00, 0x00, /* mov dword [0x2030], 0xb3 */
	0x8b, 0x04, 0x24,                               /* mov eax, [esp] (return EIP) */
	0xa3, 0x34, 0x20, 0x00, 0x00,                   /* mov [0x2034], eax */
	0xf4,                                           /* hlt */
};

static void put32(uint8_t *mem, uint32_t at, uint32_t v)
{
	memcpy(mem + at, &v, 4);
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->db = 1;
	s->s = 1;
	s->g = 1;
}

static void test_kvm_adapter(void **state)
{
	struct guest_mem mem;
	struct emul_ctx ctx;
	struct kvm_userspace_memory_region r;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	uint64_t handled = 0, retired = 0;
	int kvm, vm, vcpu, mmap_size, exits = 0;
	uint8_t *m;
	uint64_t gdt[3] = { 0, 0x00cf9a000000ffffull, 0x00cf92000000ffffull };
	uint32_t got, table_ecx = 0;
	bool features_kept = true;

	(void)state;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		skip();
	assert_int_equal(guest_mem_init(&mem, 2u << 20), 0);
	m = guest_mem_ptr(&mem, 0, 2u << 20);
	memcpy(m + CODE, guest_code, sizeof(guest_code));
	memcpy(m + HANDLER, handler_code, sizeof(handler_code));
	put32(m, DATA + 0x10, 0x9fc0);
	put32(m, DATA + 0x20, 1);
	put32(m, DATA + 0x24, 0);
	/* The area xrstor loads: x87 initial, SSE with MXCSR 0x1f81. */
	put32(m, 0x2400, 0x037f);
	put32(m, 0x2400 + 24, 0x1f81);
	put32(m, 0x2400 + 512, 2);
	memcpy(m + GDT, gdt, sizeof(gdt));
	/* IDT vector 3: 32-bit interrupt gate, CS 0x08, DPL 3 (int3 is allowed from any CPL). */
	put32(m, IDT + 3 * 8, (0x08u << 16) | (HANDLER & 0xffff));
	put32(m, IDT + 3 * 8 + 4, (HANDLER & 0xffff0000u) | 0xee00u);
	assert_int_equal(emul_ctx_init(&ctx, &mem), 0);

	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	assert_true(vm >= 0);
	r = (struct kvm_userspace_memory_region){ .slot = 0, .guest_phys_addr = 0,
						  .memory_size = 2u << 20,
						  .userspace_addr = (uint64_t)(uintptr_t)m };
	assert_int_equal(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	assert_true(vcpu >= 0);
	mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	assert_true(run != MAP_FAILED);

	assert_int_equal(ioctl(vcpu, KVM_GET_SREGS, &sregs), 0);
	seg(&sregs.cs, 0x08, 11);
	seg(&sregs.ds, 0x10, 3);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = GDT;
	sregs.gdt.limit = sizeof(gdt) - 1;
	sregs.idt.base = IDT;
	sregs.idt.limit = 4 * 8 - 1;
	sregs.cr0 = 0x11 | 0x2; /* PE, ET, MP */
	sregs.cr4 = 0x200 | 0x40000; /* OSFXSR, OSXSAVE */
	sregs.efer = 0;
	assert_int_equal(ioctl(vcpu, KVM_SET_SREGS, &sregs), 0);
	{
		/* KVM checks XCR0 against the vCPU's CPUID: give it the supported one. */
		struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) +
						  256 * sizeof(struct kvm_cpuid_entry2));
		struct kvm_xcrs xcrs = { .nr_xcrs = 1 };

		assert_non_null(cpuid);
		cpuid->nent = 256;
		assert_int_equal(ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid), 0);
		/* In leaf 1, hide SSSE3 and POPCNT and set the initial APIC id
		 * (EBX[31:24]) to 0x5a: what the guest's CPL0 CPUID returns tells
		 * which parts of the table this KVM honours (checked below). The
		 * instructions themselves still run (KVM and the fallback do not
		 * check CPUID), so popcnt above is unaffected. */
		for (unsigned i = 0; i < cpuid->nent; i++) {
			struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

			if (e->function != 1)
				continue;
			e->ecx &= ~(CPUID1_ECX_SSSE3 | CPUID1_ECX_POPCNT);
			e->ebx = (e->ebx & 0x00ffffffu) | (0x5au << 24);
			table_ecx = e->ecx;
		}
		assert_int_equal(ioctl(vcpu, KVM_SET_CPUID2, cpuid), 0);
		/* KVM_GET_CPUID2 reads back what KVM made of the table. */
		cpuid->nent = 256;
		assert_int_equal(ioctl(vcpu, KVM_GET_CPUID2, cpuid), 0);
		for (unsigned i = 0; i < cpuid->nent; i++)
			if (cpuid->entries[i].function == 1)
				features_kept = cpuid->entries[i].ecx == table_ecx;
		free(cpuid);

		xcrs.xcrs[0].xcr = 0;
		xcrs.xcrs[0].value = 3; /* x87 | SSE */
		assert_int_equal(ioctl(vcpu, KVM_SET_XCRS, &xcrs), 0);
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE;
	regs.rflags = 2;
	regs.rsp = STACK;
	regs.rbx = 0xf0f0f0;
	assert_int_equal(ioctl(vcpu, KVM_SET_REGS, &regs), 0);

	for (;;) {
		assert_int_equal(ioctl(vcpu, KVM_RUN, 0), 0);
		assert_true(++exits < 1000);
		if (run->exit_reason == KVM_EXIT_HLT)
			break;
		if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR &&
		    run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
			struct emul_report rep;
			int st = emul_kvm_handle(&ctx, vcpu, &rep);

			if (st != EMUL_DONE && st != EMUL_EXCEPTION) {
				char line[512];

				emul_report_format(&rep, line, sizeof(line));
				fail_msg("not emulated: %s", line);
			}
			print_message("emulated %s (%u instructions)\n", emul_kind_name(rep.kind),
				      rep.retired);
			handled++;
			retired += rep.retired;
			continue;
		}
		fail_msg("unexpected exit %u", run->exit_reason);
	}
	print_message("%llu emulation failures handled by the fallback, %llu instructions\n",
		      (unsigned long long)handled, (unsigned long long)retired);
	/* Where the SSE instructions fail (here), the adapter carries out the
	 * run movd, movzx, pxor, movq, movd in one exit, and paddd, pshufd,
	 * psrld, movdqu in another. */
	if (handled)
		assert_true(retired >= handled + 7);
	memcpy(&got, m + DATA + 0x98, 4);
	assert_int_equal(got, 0xc0);        /* movzx of the low byte of 0x9fc0 */
	memcpy(&got, m + DATA, 4);
	assert_int_equal(got, 12);          /* popcnt 0xf0f0f0 */
	memcpy(&got, m + DATA + 0x14, 4);
	assert_int_equal(got, 0x9fc0);      /* ldmxcsr then stmxcsr */
	memcpy(&got, m + DATA + 0x18, 4);
	assert_true(got & (1u << 18));      /* AC after stac */
	memcpy(&got, m + DATA + 0x1c, 4);
	assert_false(got & (1u << 18));     /* and clear after clac */
	memcpy(&got, m + DATA + 0x20, 4);
	assert_int_equal(got, 0x11);        /* cmpxchg8b stored ECX:EBX */
	memcpy(&got, m + DATA + 0x24, 4);
	assert_int_equal(got, 0x22);
	memcpy(&got, m + 0x2200 + 24, 4);
	assert_int_equal(got, 0x9fc0);      /* xsave stored the MXCSR ldmxcsr set */
	memcpy(&got, m + 0x2200 + 512, 4);
	assert_true(got & 2);               /* with SSE in XSTATE_BV */
	memcpy(&got, m + DATA + 0x40, 4);
	assert_int_equal(got, 0x1f81);      /* xrstor loaded MXCSR */
	memcpy(&got, m + DATA + 0x50, 4);
	assert_int_equal(got, 0x12345678);  /* movd, pxor, movq, movd through XMM */
	{
		static const uint8_t want[16] = { 0x78, 0x56, 0x34, 0x12 };

		assert_memory_equal(m + DATA + 0x60, want, 16); /* movdqu of xmm1 */
	}
	{
		/* paddd doubled 0x12345678, pshufd moved dword 0 to 3, psrld by 4. */
		static const uint8_t want[16] = { [12] = 0xcf, 0x8a, 0x46, 0x02 };

		assert_memory_equal(m + DATA + 0x80, want, 16);
	}
	/* CPL0 CPUID (how Linux identifies the CPU) answers from the table:
	 * the APIC id set there is seen (without a table every leaf reads 0
	 * on this host). Its feature bits follow the table only where
	 * KVM_GET_CPUID2 reads them back as set: this project's emulating KVM
	 * replaces them with the host's, so a Linux guest sees SSSE3 and
	 * POPCNT anyway and only its own clearcpuid= hides them
	 * (docs/linux-guests.md, "Which CPUID Linux sees"). */
	memcpy(&got, m + DATA + 0x94, 4);
	assert_int_equal(got >> 24, 0x5a);
	memcpy(&got, m + DATA + 0x90, 4);
	print_message("CPL0 CPUID.1: ECX 0x%08x, SSSE3 and POPCNT hidden in the table: %s "
		      "(KVM_GET_CPUID2 %s the table's feature bits)\n", got,
		      got & (CPUID1_ECX_SSSE3 | CPUID1_ECX_POPCNT) ? "shown" : "hidden",
		      features_kept ? "keeps" : "does not keep");
	if (features_kept) {
		assert_int_equal(got & (CPUID1_ECX_SSSE3 | CPUID1_ECX_POPCNT), 0);
	} else {
		uint32_t a, b, c, d;

		/* The host's own bits (this process's CPUID). */
		__asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
		assert_int_equal(got & (CPUID1_ECX_SSSE3 | CPUID1_ECX_POPCNT),
				 c & (CPUID1_ECX_SSSE3 | CPUID1_ECX_POPCNT));
	}
	memcpy(&got, m + DATA + 0x30, 4);
	assert_int_equal(got, 0xb3);        /* the #BP handler ran */
	memcpy(&got, m + DATA + 0x34, 4);
	assert_int_equal(got, CODE + sizeof(guest_code) - 1); /* int3 is a trap */
	assert_int_equal(ioctl(vcpu, KVM_GET_REGS, &regs), 0);
	{
		/* The vCPU's own MXCSR (XSAVE image; KVM_GET_FPU reads 0 on some hosts). */
		struct kvm_xsave xs;

		assert_int_equal(ioctl(vcpu, KVM_GET_XSAVE, &xs), 0);
		memcpy(&got, (uint8_t *)xs.region + 24, 4);
		assert_int_equal(got, 0x1f81);
		memcpy(&got, (uint8_t *)xs.region + 160 + 16, 4); /* the vCPU's XMM1 */
		assert_int_equal(got, 0x2468acf0);         /* after paddd xmm1, xmm1 */
	}
	munmap(run, (size_t)mmap_size);
	close(vcpu);
	close(vm);
	close(kvm);
	emul_ctx_destroy(&ctx);
	guest_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kvm_adapter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
