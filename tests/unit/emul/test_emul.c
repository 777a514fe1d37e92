/* test_emul.c: unit tests of the emulation fallback on a fake CPU: each
 * handled instruction in its register and memory forms, compared with the
 * same instruction run natively in this process, plus the edges (operands
 * and instructions that cross pages, prefixes, 32- and 16-bit modes, large
 * pages, page faults, SMAP, memory outside guest RAM, unknown bytes). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fx_test.h"

#define XFEAT_YMM_TEST 4ull
#define FLAGS6 (EMUL_RFLAGS_CF | EMUL_RFLAGS_PF | EMUL_RFLAGS_AF | EMUL_RFLAGS_ZF | \
		EMUL_RFLAGS_SF | EMUL_RFLAGS_OF)

/* ---- native references (red zone skipped: pushf/popf touch the stack) ---- */

static uint64_t native_popcnt(unsigned size, uint64_t src, uint64_t dst_in, uint64_t flags_in,
			      uint64_t *flags_out)
{
	uint64_t dst = dst_in, fl;

	switch (size) {
	case 8:
		__asm__ volatile("add $-128, %%rsp; push %[fin]; popfq; popcnt %[src], %[dst];"
				 "pushfq; pop %[fl]; sub $-128, %%rsp"
				 : [dst] "+r"(dst), [fl] "=&r"(fl)
				 : [src] "r"(src), [fin] "r"(flags_in)
				 : "cc");
		break;
	case 4:
		__asm__ volatile("add $-128, %%rsp; push %[fin]; popfq; popcnt %k[src], %k[dst];"
				 "pushfq; pop %[fl]; sub $-128, %%rsp"
				 : [dst] "+r"(dst), [fl] "=&r"(fl)
				 : [src] "r"(src), [fin] "r"(flags_in)
				 : "cc");
		break;
	default:
		__asm__ volatile("add $-128, %%rsp; push %[fin]; popfq; popcnt %w[src], %w[dst];"
				 "pushfq; pop %[fl]; sub $-128, %%rsp"
				 : [dst] "+r"(dst), [fl] "=&r"(fl)
				 : [src] "r"(src), [fin] "r"(flags_in)
				 : "cc");
		break;
	}
	*flags_out = fl;
	return dst;
}

static const uint64_t values[] = { 0, 1, 0x8000000000000000ull, ~0ull, 0x123456789abcdef0ull,
				   0xffff0000ffff0000ull, 0x00000000ffffffffull, 0x8001ull,
				   0xffffffff00000000ull };
/* Flags before the instruction: all six set, or all clear. */
static const uint64_t flags_before[] = { 0x2 | FLAGS6, 0x2 };

/* popcnt in 64/32/16-bit register forms against the host. */
static void test_popcnt_reg(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;

	for (size_t i = 0; i < ARRAY_SIZE(values); i++) {
		for (size_t k = 0; k < ARRAY_SIZE(flags_before); k++) {
			static const struct { unsigned size; uint8_t b[6]; unsigned n; } forms[] = {
				{ 8, { 0xf3, 0x48, 0x0f, 0xb8, 0xc3 }, 5 }, /* popcnt rax, rbx */
				{ 4, { 0xf3, 0x0f, 0xb8, 0xc3 }, 4 },       /* popcnt eax, ebx */
				{ 2, { 0x66, 0xf3, 0x0f, 0xb8, 0xc3 }, 5 }, /* popcnt ax, bx */
			};

			for (size_t j = 0; j < ARRAY_SIZE(forms); j++) {
				uint64_t junk = 0xdeadbeefcafef00dull, nfl, want;

				fx_state_64(&f->st);
				f->st.gpr[EMUL_RAX] = junk;
				f->st.gpr[EMUL_RBX] = values[i];
				f->st.rflags = flags_before[k];
				assert_int_equal(
					fxt_run_at(f, FX_CODE, forms[j].b, forms[j].n, &rep),
					EMUL_DONE);
				assert_int_equal(rep.kind, EMUL_KIND_POPCNT);
				want = native_popcnt(forms[j].size, values[i], junk, flags_before[k],
						     &nfl);
				assert_int_equal(f->st.gpr[EMUL_RAX], want);
				assert_int_equal(f->st.rflags & FLAGS6, nfl & FLAGS6);
				assert_int_equal(f->st.gpr[EMUL_RBX], values[i]);
				assert_int_equal(f->st.rip, FX_CODE + forms[j].n);
			}
		}
	}
	/* REX.R and REX.B: popcnt r8, r9 */
	fx_state_64(&f->st);
	f->st.gpr[9] = 0xf0f0;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x4d, 0x0f, 0xb8, 0xc1), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "popcnt r8, r9");
	assert_int_equal(f->st.gpr[8], 8);
}

/* popcnt with memory operands: SIB + displacement, RIP-relative, FS override,
 * an operand that crosses into a physically distant page, 2 MiB and 1 GiB pages. */
static void test_popcnt_mem(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	uint64_t v = 0x0123456789abcdefull, nfl, want;

	want = native_popcnt(8, v, 0, 0x2, &nfl);

	/* popcnt rax, qword ptr [rbx + rcx*8 + 0x10] */
	fx_state_64(&f->st);
	fxt_put(f, FX_A + 0x40 + 3 * 8 + 0x10, &v, 8);
	f->st.gpr[EMUL_RBX] = FX_A + 0x40;
	f->st.gpr[EMUL_RCX] = 3;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x48, 0x0f, 0xb8, 0x44, 0xcb, 0x10), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "popcnt rax, qword ptr [rbx + rcx*8 + 0x10]");
	assert_int_equal(f->st.gpr[EMUL_RAX], want);
	assert_int_equal(f->st.rflags & FLAGS6, nfl & FLAGS6);

	/* popcnt rax, [rip + 0x10000]: RIP-relative to the next instruction */
	fx_state_64(&f->st);
	fxt_put(f, FX_CODE + 9 + 0x10000, &v, 8);
	assert_int_equal(RUN(f, &rep, 0xf3, 0x48, 0x0f, 0xb8, 0x05, 0x00, 0x00, 0x01, 0x00),
			 EMUL_DONE);
	assert_int_equal(f->st.gpr[EMUL_RAX], want);

	/* popcnt rax, fs:[rbx] */
	fx_state_64(&f->st);
	f->st.fs.base = FX_A;
	f->st.gpr[EMUL_RBX] = 0x100;
	fxt_put(f, FX_A + 0x100, &v, 8);
	assert_int_equal(RUN(f, &rep, 0x64, 0xf3, 0x48, 0x0f, 0xb8, 0x03), EMUL_DONE);
	assert_int_equal(f->st.gpr[EMUL_RAX], want);

	/* Crossing from data A (gpa 0x30000) into data B (gpa 0x50000). */
	for (unsigned off = 1; off < 8; off++) {
		fx_state_64(&f->st);
		fxt_put(f, FX_B - off, &v, 8);
		f->st.gpr[EMUL_RBX] = FX_B - off;
		assert_int_equal(RUN(f, &rep, 0xf3, 0x48, 0x0f, 0xb8, 0x03), EMUL_DONE);
		assert_int_equal(f->st.gpr[EMUL_RAX], want);
	}
	/* popcnt eax, dword ptr [rbx] across the pages: only 4 bytes are read. */
	fx_state_64(&f->st);
	fxt_put(f, FX_B - 2, &v, 8);
	f->st.gpr[EMUL_RBX] = FX_B - 2;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x0f, 0xb8, 0x03), EMUL_DONE);
	assert_int_equal(f->st.gpr[EMUL_RAX], native_popcnt(4, v & 0xffffffff, 0, 2, &nfl));

	/* Large pages. */
	fx_state_64(&f->st);
	memcpy(guest_mem_ptr(&f->mem, 0x400000 + 0x1238, 8), &v, 8);
	f->st.gpr[EMUL_RBX] = FX_2M + 0x1238;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x48, 0x0f, 0xb8, 0x03), EMUL_DONE);
	assert_int_equal(f->st.gpr[EMUL_RAX], want);
	fx_state_64(&f->st);
	memcpy(guest_mem_ptr(&f->mem, 0x5f000, 8), &v, 8);
	f->st.gpr[EMUL_RBX] = FX_1G + 0x5f000;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x48, 0x0f, 0xb8, 0x03), EMUL_DONE);
	assert_int_equal(f->st.gpr[EMUL_RAX], want);
}

/* Faults leave the state alone (RIP on the instruction) and say why. */
static void test_faults(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;

	/* Not present: #PF, read from supervisor, error code 0, CR2 = address. */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RAX] = 77;
	f->st.gpr[EMUL_RBX] = FX_NP + 8;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x48, 0x0f, 0xb8, 0x03), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_PF);
	assert_int_equal(f->st.exc.error_code, 0);
	assert_int_equal(f->st.cr2, FX_NP + 8);
	assert_int_equal(f->st.rip, FX_CODE);
	assert_int_equal(f->st.gpr[EMUL_RAX], 77);

	/* Operand that starts mapped and ends in the absent page: CR2 is the
	 * first byte of that page. */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_NP - 4;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x48, 0x0f, 0xb8, 0x03), EMUL_EXCEPTION);
	assert_int_equal(f->st.cr2, FX_NP);

	/* Non-canonical: #GP(0). */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = 0x0000800000000000ull;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x48, 0x0f, 0xb8, 0x03), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
	assert_true(f->st.exc.has_error_code);

	/* Memory outside guest RAM: refused with a report, nothing changed. */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RAX] = 77;
	f->st.gpr[EMUL_RBX] = FX_MMIO;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x48, 0x0f, 0xb8, 0x03), EMUL_UNHANDLED);
	assert_non_null(strstr(rep.why, "outside guest RAM"));
	assert_int_equal(f->st.gpr[EMUL_RAX], 77);
	assert_int_equal(f->st.rip, FX_CODE);

	/* Page tables pointing outside RAM: refused. */
	fx_state_64(&f->st);
	fxt_put(f, FX_CODE, (uint8_t[]){ 0x90 }, 1);
	f->st.cr3 = 0xE0000000ull;
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_UNHANDLED);
	assert_non_null(strstr(rep.why, "page-table entry"));
}

/* An instruction whose bytes cross pages, and one whose tail is not mapped. */
static void test_fetch(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	static const uint8_t popcnt_rax_rbx[] = { 0xf3, 0x48, 0x0f, 0xb8, 0xc3 };

	for (unsigned split = 1; split < sizeof(popcnt_rax_rbx); split++) {
		fx_state_64(&f->st);
		f->st.gpr[EMUL_RBX] = 0xff;
		assert_int_equal(fxt_run_at(f, FX_CODE + 0x1000 - split, popcnt_rax_rbx,
					sizeof(popcnt_rax_rbx), &rep),
				 EMUL_DONE);
		assert_int_equal(f->st.gpr[EMUL_RAX], 8);
		assert_int_equal(f->st.rip, FX_CODE + 0x1000 - split + 5);
	}
	/* Three bytes at the end of 0x11000; the rest would be in 0x12000 (absent):
	 * an instruction fetch #PF at 0x12000 (error code: fetch). */
	fx_state_64(&f->st);
	fxt_put(f, 0x12000 - 3, popcnt_rax_rbx, 3);
	f->st.rip = 0x12000 - 3;
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_PF);
	assert_int_equal(f->st.cr2, 0x12000);
	assert_int_equal(f->st.exc.error_code, 1u << 4);
	/* A complete short instruction right before the absent page is fine. */
	fx_state_64(&f->st);
	fxt_put(f, 0x12000 - 1, (uint8_t[]){ 0xcc }, 1);
	f->st.rip = 0x12000 - 1;
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_BP);
}

static void test_int3_fwait(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;

	fx_state_64(&f->st);
	assert_int_equal(RUN(f, &rep, 0xcc), EMUL_EXCEPTION);
	assert_int_equal(rep.kind, EMUL_KIND_INT3);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_BP);
	assert_false(f->st.exc.has_error_code);
	assert_int_equal(f->st.rip, FX_CODE + 1); /* a trap */

	fx_state_64(&f->st);
	assert_int_equal(RUN(f, &rep, 0x9b), EMUL_DONE);
	assert_int_equal(rep.kind, EMUL_KIND_FWAIT);
	assert_int_equal(f->st.rip, FX_CODE + 1);
	/* MP and TS set: #NM, RIP stays. */
	f->st.rip = FX_CODE;
	f->st.cr0 |= EMUL_CR0_TS;
	assert_int_equal(RUN(f, &rep, 0x9b), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_NM);
	assert_int_equal(f->st.rip, FX_CODE);
}

static void test_clac_stac(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;

	fx_state_64(&f->st);
	assert_int_equal(RUN(f, &rep, 0x0f, 0x01, 0xcb), EMUL_DONE); /* stac */
	assert_true(f->st.rflags & EMUL_RFLAGS_AC);
	assert_int_equal(f->st.rip, FX_CODE + 3);
	assert_int_equal(RUN(f, &rep, 0x0f, 0x01, 0xca), EMUL_DONE); /* clac */
	assert_false(f->st.rflags & EMUL_RFLAGS_AC);
	assert_int_equal(rep.kind, EMUL_KIND_CLAC);
	/* CPL 3 (running from a user page): #UD, as this process would see it. */
	f->st.ss.dpl = 3;
	assert_int_equal(fxt_run_at(f, FX_USER, (uint8_t[]){ 0x0f, 0x01, 0xcb }, 3, &rep),
			 EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_UD);
	/* LOCK prefix: #UD, or refused when the decoder rejects the bytes. */
	fx_state_64(&f->st);
	{
		enum emul_status r = RUN(f, &rep, 0xf0, 0x0f, 0x01, 0xcb);

		assert_true(r == EMUL_UNHANDLED ||
			    (r == EMUL_EXCEPTION && f->st.exc.vector == EMUL_VEC_UD));
		assert_false(f->st.rflags & EMUL_RFLAGS_AC);
	}
}

/* ---- MXCSR ---- */

static sigjmp_buf fault_jmp;

static void on_fault(int sig)
{
	siglongjmp(fault_jmp, sig);
}

/* Run ldmxcsr natively; returns the signal it raised (0 = none) and the
 * MXCSR read back. The host's MXCSR is restored. */
static int native_ldmxcsr(uint32_t v, uint32_t *back)
{
	struct sigaction sa = { .sa_handler = on_fault }, old_segv, old_ill;
	volatile uint32_t saved, in = v, out = 0;
	int sig;

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGILL, &sa, &old_ill);
	__asm__ volatile("stmxcsr %0" : "=m"(saved));
	sig = sigsetjmp(fault_jmp, 1);
	if (!sig) {
		__asm__ volatile("ldmxcsr %0" : : "m"(in));
		__asm__ volatile("stmxcsr %0" : "=m"(out));
	}
	__asm__ volatile("ldmxcsr %0" : : "m"(saved));
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGILL, &old_ill, NULL);
	*back = out;
	return sig;
}

static void test_mxcsr(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	static const uint32_t vals[] = { 0x1f80, 0x1fbf, 0x9fc0, 0x0000, 0xffff & 0xffbf,
					 0x10000, 0x80000000 };

	for (size_t i = 0; i < ARRAY_SIZE(vals); i++) {
		uint32_t native_back, emul_back = 0xeeeeeeee;
		int sig = native_ldmxcsr(vals[i], &native_back);
		enum emul_status r;

		/* ldmxcsr [rbx], then stmxcsr [rbx + 8] which crosses into page B. */
		fx_state_64(&f->st);
		fxt_put(f, FX_A + 0x100, &vals[i], 4);
		f->st.gpr[EMUL_RBX] = FX_A + 0x100;
		r = RUN(f, &rep, 0x0f, 0xae, 0x13);
		if (sig) {
			assert_int_equal(r, EMUL_EXCEPTION);
			assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
			assert_int_equal(f->st.mxcsr, 0x1f80);
			continue;
		}
		assert_int_equal(r, EMUL_DONE);
		assert_int_equal(rep.kind, EMUL_KIND_LDMXCSR);
		assert_true(f->st.mxcsr_dirty);
		f->st.gpr[EMUL_RBX] = FX_B - 2;
		assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x1b), EMUL_DONE);
		assert_int_equal(rep.kind, EMUL_KIND_STMXCSR);
		fxt_get(f, FX_B - 2, &emul_back, 4);
		assert_int_equal(emul_back, native_back);
	}
	/* VEX forms: vldmxcsr [rbx], vstmxcsr [rbx]. */
	fx_state_64(&f->st);
	fxt_put(f, FX_A, (uint32_t[]){ 0x9fc0 }, 4);
	f->st.gpr[EMUL_RBX] = FX_A;
	assert_int_equal(RUN(f, &rep, 0xc5, 0xf8, 0xae, 0x13), EMUL_DONE);
	assert_int_equal(f->st.mxcsr, 0x9fc0);
	f->st.mxcsr = 0x1f81;
	assert_int_equal(RUN(f, &rep, 0xc5, 0xf8, 0xae, 0x1b), EMUL_DONE);
	assert_int_equal(*(uint32_t *)fx_lin(f, FX_A), 0x1f81);
	/* CR0.TS: #NM; CR4.OSFXSR clear: #UD; read-only page: #PF (W|P). */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_A;
	f->st.cr0 |= EMUL_CR0_TS;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x13), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_NM);
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_A;
	f->st.cr4 &= ~EMUL_CR4_OSFXSR;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x13), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_UD);
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_RO;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x1b), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_PF);
	assert_int_equal(f->st.exc.error_code, 3);
	/* CR0.WP clear: supervisor writes to read-only pages are allowed. */
	f->st.cr0 &= ~EMUL_CR0_WP;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x1b), EMUL_DONE);
	/* SMAP: a supervisor write to a user page faults unless AC is set. */
	fx_state_64(&f->st);
	f->st.cr4 |= EMUL_CR4_SMAP;
	f->st.gpr[EMUL_RBX] = FX_USER;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x1b), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_PF);
	assert_int_equal(f->st.exc.error_code, 3);
	f->st.rflags |= EMUL_RFLAGS_AC;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x1b), EMUL_DONE);
	/* A write sets the dirty bit of the leaf entry. */
	{
		uint64_t pte;

		memcpy(&pte, guest_mem_ptr(&f->mem, FX_PT + 0x25 * 8, 8), 8);
		assert_true(pte & 0x40);
		assert_true(pte & 0x20);
	}
}

/* ---- cmpxchg8b / cmpxchg16b ---- */

static bool native_cx16(unsigned __int128 *m, uint64_t *rax, uint64_t *rdx, uint64_t rbx,
			uint64_t rcx)
{
	bool ok;

	__asm__ volatile("lock cmpxchg16b %1"
			 : "=@ccz"(ok), "+m"(*m), "+a"(*rax), "+d"(*rdx)
			 : "b"(rbx), "c"(rcx)
			 : "memory");
	return ok;
}

static bool native_cx8(uint64_t *m, uint64_t *rax, uint64_t *rdx, uint64_t rbx, uint64_t rcx)
{
	bool ok;

	__asm__ volatile("lock cmpxchg8b %1"
			 : "=@ccz"(ok), "+m"(*m), "+a"(*rax), "+d"(*rdx)
			 : "b"(rbx), "c"(rcx)
			 : "memory");
	return ok;
}

static void test_cmpxchg16b(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;

	for (int equal = 0; equal < 2; equal++) {
		unsigned __int128 host = ((unsigned __int128)0x1111222233334444ull << 64) |
					 0x5555666677778888ull;
		uint64_t rax = equal ? 0x5555666677778888ull : 1, rdx = 0x1111222233334444ull;
		uint64_t nrax = rax, nrdx = rdx, g[2];
		bool ok = native_cx16(&host, &nrax, &nrdx, 0xaaaa, 0xbbbb);

		fx_state_64(&f->st);
		fxt_put(f, FX_A + 0x200,
			(uint64_t[]){ 0x5555666677778888ull, 0x1111222233334444ull }, 16);
		f->st.gpr[EMUL_RAX] = rax;
		f->st.gpr[EMUL_RDX] = rdx;
		f->st.gpr[EMUL_RBX] = 0xaaaa;
		f->st.gpr[EMUL_RCX] = 0xbbbb;
		f->st.gpr[EMUL_RDI] = FX_A + 0x200;
		/* lock cmpxchg16b xmmword ptr [rdi] */
		assert_int_equal(RUN(f, &rep, 0xf0, 0x48, 0x0f, 0xc7, 0x0f), EMUL_DONE);
		assert_int_equal(rep.kind, EMUL_KIND_CMPXCHG16B);
		fxt_get(f, FX_A + 0x200, g, 16);
		assert_int_equal(g[0], (uint64_t)host);
		assert_int_equal(g[1], (uint64_t)(host >> 64));
		assert_int_equal(f->st.gpr[EMUL_RAX], nrax);
		assert_int_equal(f->st.gpr[EMUL_RDX], nrdx);
		assert_int_equal(!!(f->st.rflags & EMUL_RFLAGS_ZF), ok);
		assert_int_equal(ok, equal);
	}
	/* Misaligned: #GP(0); read-only page: #PF even when the compare fails. */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RDI] = FX_A + 8;
	assert_int_equal(RUN(f, &rep, 0x48, 0x0f, 0xc7, 0x0f), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RDI] = FX_RO;
	f->st.gpr[EMUL_RAX] = 12345;
	assert_int_equal(RUN(f, &rep, 0x48, 0x0f, 0xc7, 0x0f), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_PF);
	assert_int_equal(f->st.exc.error_code, 3);
	assert_int_equal(f->st.gpr[EMUL_RAX], 12345);
}

static void test_cmpxchg8b(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;

	/* In one page (atomic path) and across pages A/B (split path). */
	static const uint64_t where[] = { FX_A + 0x300, FX_B - 4, FX_B - 1 };

	for (size_t w = 0; w < ARRAY_SIZE(where); w++) {
		for (int equal = 0; equal < 2; equal++) {
			uint64_t mem = 0x9999aaaabbbbccccull, g;
			uint64_t rax = 0xffffffff00000000ull | (equal ? 0xbbbbccccull : 7);
			uint64_t rdx = 0xffffffff9999aaaaull, nrax = rax, nrdx = rdx;
			bool ok = native_cx8(&mem, &nrax, &nrdx, 0x12345678, 0x9abcdef0);

			fx_state_64(&f->st);
			fxt_put(f, where[w], (uint64_t[]){ 0x9999aaaabbbbccccull }, 8);
			f->st.gpr[EMUL_RAX] = rax;
			f->st.gpr[EMUL_RDX] = rdx;
			f->st.gpr[EMUL_RBX] = 0x12345678;
			f->st.gpr[EMUL_RCX] = 0x9abcdef0;
			f->st.gpr[EMUL_RSI] = where[w];
			assert_int_equal(RUN(f, &rep, 0x0f, 0xc7, 0x0e), EMUL_DONE);
			assert_int_equal(rep.kind, EMUL_KIND_CMPXCHG8B);
			fxt_get(f, where[w], &g, 8);
			assert_int_equal(g, mem);
			assert_int_equal(f->st.gpr[EMUL_RAX], nrax);
			assert_int_equal(f->st.gpr[EMUL_RDX], nrdx);
			assert_int_equal(!!(f->st.rflags & EMUL_RFLAGS_ZF), ok);
		}
	}
}

/* ---- xsave / xrstor against the host ---- */

static uint64_t host_xcr0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

/* Bytes an XSAVE of everything XCR0 enables needs: more than 4 KiB on a
 * host with AMX (the tile data alone is 8 KiB). */
static size_t host_xsave_size(void)
{
	uint32_t a, b, c, d;

	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0xd), "c"(0));
	return b > 4096 ? b : 4096;
}

static void native_xsave(void *buf, uint64_t rfbm)
{
	__asm__ volatile("xsave (%0)" : : "r"(buf), "a"((uint32_t)rfbm), "d"((uint32_t)(rfbm >> 32))
			 : "memory");
}

/* XRSTOR then XSAVE in one asm statement: nothing in between (a memset, an
 * ASan interceptor) may touch the vector registers. */
static void native_xrstor_xsave(const void *in, void *out, uint64_t rfbm)
{
	__asm__ volatile("xrstor (%0); xsave (%1)"
			 : : "r"(in), "r"(out), "a"((uint32_t)rfbm), "d"((uint32_t)(rfbm >> 32))
			 : "memory");
}

static void native_xrstor(const void *buf, uint64_t rfbm)
{
	__asm__ volatile("xrstor (%0)" : : "r"(buf), "a"((uint32_t)rfbm),
			 "d"((uint32_t)(rfbm >> 32)) : "memory");
}

/* A recognisable extended state: x87 control word, MXCSR, XMM and YMM halves. */
static void fill_state(uint8_t *area, uint64_t bv, uint8_t seed)
{
	uint16_t fcw = 0x027f;
	uint32_t mxcsr = 0x9fc0;

	memset(area, 0, 4096);
	memcpy(area, &fcw, 2);
	memcpy(area + 24, &mxcsr, 4);
	for (unsigned i = 160; i < 416; i++)
		area[i] = (uint8_t)(seed + i);
	for (unsigned i = 576; i < 576 + 256; i++)
		area[i] = (uint8_t)(seed * 3 + i);
	memcpy(area + 512, &bv, 8);
}

static void test_xsave_xrstor(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	uint64_t xcr0 = host_xcr0(), rfbm = xcr0 & 7, bv;
	size_t saved_len = ALIGN_UP(host_xsave_size(), 64);
	uint8_t *image = aligned_alloc(64, 4096), *saved = aligned_alloc(64, saved_len);
	uint8_t *src = aligned_alloc(64, 4096), *native = aligned_alloc(64, 4096);
	uint8_t guest[1024];
	static const uint64_t where[] = { FX_A, FX_B - 512 }; /* the second crosses pages */

	assert_non_null(image);
	assert_non_null(saved);
	assert_non_null(src);
	assert_non_null(native);
	memset(saved, 0, saved_len);
	native_xsave(saved, xcr0); /* this process's own state, restored below */

	for (size_t w = 0; w < ARRAY_SIZE(where); w++) {
		/* XSAVE: the image (a state the host really holds) into guest memory,
		 * against the host's own XSAVE of that state. */
		fill_state(src, rfbm, (uint8_t)(7 + w));
		memset(native, 0xa5, 4096);
		memset(image, 0, 4096);
		native_xrstor_xsave(src, native, rfbm);
		native_xrstor_xsave(src, image, rfbm);
		native_xrstor(saved, xcr0);

		fx_state_64(&f->st);
		f->st.xcr0 = xcr0;
		f->st.xsave = image;
		f->st.xsave_len = 4096;
		f->st.mxcsr = 0x9fc0;
		f->st.gpr[EMUL_RAX] = (uint32_t)rfbm;
		f->st.gpr[EMUL_RDI] = where[w];
		memset(guest, 0xa5, sizeof(guest));
		fxt_put(f, where[w], guest, sizeof(guest));
		assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x27), EMUL_DONE); /* xsave [rdi] */
		assert_int_equal(rep.kind, EMUL_KIND_XSAVE);
		fxt_get(f, where[w], guest, sizeof(guest));
		assert_memory_equal(guest, native, 416);        /* legacy region */
		assert_memory_equal(guest + 512, native + 512, 8); /* XSTATE_BV */
		assert_memory_equal(guest + 576, native + 576, 256); /* YMM_Hi128 */
		assert_int_equal(f->st.rip, FX_CODE + 3);

		/* XRSTOR: a crafted area into the image, against the host restoring
		 * the same area and saving it again. */
		fill_state(src, rfbm & ~XFEAT_YMM_TEST, (uint8_t)(40 + w)); /* YMM: initial */
		fxt_put(f, where[w], src, 1024);
		memset(native, 0, 4096);
		native_xrstor_xsave(src, native, rfbm);
		native_xrstor(saved, xcr0);
		f->st.rip = FX_CODE;
		assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x2f), EMUL_DONE); /* xrstor [rdi] */
		assert_int_equal(rep.kind, EMUL_KIND_XRSTOR);
		assert_true(f->st.xsave_dirty);
		assert_int_equal(f->st.mxcsr, 0x9fc0);
		assert_memory_equal(image, native, 24);
		assert_memory_equal(image + 32, native + 32, 416 - 32);
		assert_memory_equal(image + 576, native + 576, 256);
		memcpy(&bv, image + 512, 8);
		assert_int_equal(bv & rfbm, rfbm & ~XFEAT_YMM_TEST);
	}

	/* Faults: misaligned, CR4.OSXSAVE clear, CR0.TS, XSTATE_BV outside XCR0,
	 * XCOMP_BV in the standard form; compacted form refused. */
	fx_state_64(&f->st);
	f->st.xcr0 = xcr0;
	f->st.xsave = image;
	f->st.xsave_len = 4096;
	f->st.gpr[EMUL_RAX] = 7;
	f->st.gpr[EMUL_RDI] = FX_A + 16;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x2f), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
	f->st.gpr[EMUL_RDI] = FX_A;
	f->st.cr4 &= ~EMUL_CR4_OSXSAVE;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x27), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_UD);
	f->st.cr4 |= EMUL_CR4_OSXSAVE;
	f->st.cr0 |= EMUL_CR0_TS;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x2f), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_NM);
	f->st.cr0 &= ~EMUL_CR0_TS;
	fxt_put(f, FX_A + 512, (uint64_t[]){ 1ull << 40, 0 }, 16);
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x2f), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
	fxt_put(f, FX_A + 512, (uint64_t[]){ 3, 1 }, 16);
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x2f), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
	fxt_put(f, FX_A + 512, (uint64_t[]){ 3, (1ull << 63) | 3 }, 16);
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x2f), EMUL_UNHANDLED);
	assert_non_null(strstr(rep.why, "compacted"));
	assert_false(f->st.xsave_dirty);

	native_xrstor(saved, xcr0);
	free(image);
	free(saved);
	free(src);
	free(native);
}

/* 32-bit protected mode without paging, with a DS base; 16-bit real mode. */
static void test_modes(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	uint64_t v = 0xf0f0f0f0f0f0f0f0ull;

	memset(&f->st, 0, sizeof(f->st));
	f->st.cr0 = EMUL_CR0_PE;
	f->st.cr4 = EMUL_CR4_OSFXSR;
	f->st.rflags = 2;
	f->st.cs.db = 1;
	f->st.cs.present = f->st.ds.present = f->st.ss.present = 1;
	f->st.cs.limit = f->st.ds.limit = f->st.ss.limit = 0xffffffff;
	f->st.ds.base = 0x30000;
	f->st.gpr[EMUL_RBX] = 0x40;
	f->st.gpr[EMUL_RAX] = 0xffffffff00000000ull;
	memcpy(guest_mem_ptr(&f->mem, 0x30040, 8), &v, 8);
	f->st.rip = 0x10000;
	memcpy(guest_mem_ptr(&f->mem, 0x10000, 4), (uint8_t[]){ 0xf3, 0x0f, 0xb8, 0x03 }, 4);
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "popcnt eax, dword ptr [ebx]");
	assert_int_equal(f->st.gpr[EMUL_RAX], 16);
	assert_int_equal(f->st.rip, 0x10004);
	/* Segment limit: #GP(0). */
	f->st.rip = 0x10000;
	f->st.ds.limit = 0x40;
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
	/* 16-bit operand size from the 66 prefix in 32-bit code: popcnt ax, [ebx] */
	f->st.ds.limit = 0xffffffff;
	f->st.gpr[EMUL_RAX] = 0x12340000;
	memcpy(guest_mem_ptr(&f->mem, 0x10000, 5), (uint8_t[]){ 0x66, 0xf3, 0x0f, 0xb8, 0x03 }, 5);
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_DONE);
	assert_int_equal(f->st.gpr[EMUL_RAX], 0x12340008);

	/* Real mode, DS base 0x30000: ldmxcsr [bx]; a cmpxchg8b operand that
	 * runs past the 64 KiB segment limit: #GP. */
	memset(&f->st, 0, sizeof(f->st));
	f->st.rflags = 2;
	f->st.cr4 = EMUL_CR4_OSFXSR;
	f->st.cs.base = 0x10000;
	f->st.cs.limit = f->st.ds.limit = 0xffff;
	f->st.ds.base = 0x30000;
	f->st.gpr[EMUL_RBX] = 0x40;
	f->st.rip = 0x20;
	memcpy(guest_mem_ptr(&f->mem, 0x30040, 4), (uint32_t[]){ 0x9fc0 }, 4);
	memcpy(guest_mem_ptr(&f->mem, 0x10020, 3), (uint8_t[]){ 0x0f, 0xae, 0x17 }, 3);
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "ldmxcsr dword ptr [bx]");
	assert_int_equal(f->st.mxcsr, 0x9fc0);
	assert_int_equal(f->st.rip, 0x23);
	f->st.gpr[EMUL_RBX] = 0xfffc;
	memcpy(guest_mem_ptr(&f->mem, 0x10023, 3), (uint8_t[]){ 0x0f, 0xc7, 0x0f }, 3);
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
	/* Capstone 4 does not decode popcnt in 16-bit mode: refused, reported. */
	f->st.rip = 0x20;
	memcpy(guest_mem_ptr(&f->mem, 0x10020, 4), (uint8_t[]){ 0xf3, 0x0f, 0xb8, 0x07 }, 4);
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_UNHANDLED);
	assert_int_equal(f->st.rip, 0x20);
	f->st.rip = 0x24;
	memcpy(guest_mem_ptr(&f->mem, 0x10024, 3), (uint8_t[]){ 0x0f, 0x01, 0xca }, 3);
	assert_int_equal(emul_step(&f->ctx, &f->st, &rep), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_UD);
}

/* Unhandled instructions and unknown bytes: a report, the state untouched. */
static void test_unhandled(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	char line[512];

	fx_state_64(&f->st);
	assert_int_equal(RUN(f, &rep, 0x0f, 0x0b), EMUL_UNHANDLED); /* ud2 */
	assert_string_equal(rep.mnemonic, "ud2");
	assert_int_equal(rep.nbytes, 15);
	assert_int_equal(rep.bytes[0], 0x0f);
	assert_int_equal(f->st.rip, FX_CODE);
	emul_report_format(&rep, line, sizeof(line));
	assert_non_null(strstr(line, "RIP 0x10000"));
	assert_non_null(strstr(line, "0f 0b"));
	assert_non_null(strstr(line, "(ud2)"));

	/* xrstors [rdi]: known to the decoder, not emulated. */
	fx_state_64(&f->st);
	assert_int_equal(RUN(f, &rep, 0x0f, 0xc7, 0x1f), EMUL_UNHANDLED);
	assert_non_null(strstr(rep.mnemonic, "xrstors"));
	/* xrstor without the vCPU's XSAVE image: refused, said why. */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RDI] = FX_A;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xae, 0x2f), EMUL_UNHANDLED);
	assert_non_null(strstr(rep.why, "XSAVE state"));

	/* Bytes the decoder does not know. */
	fx_state_64(&f->st);
	assert_int_equal(RUN(f, &rep, 0x0f, 0x04), EMUL_UNHANDLED);
	assert_string_equal(rep.mnemonic, "");
	assert_non_null(strstr(rep.why, "decoder"));

	/* LOCK on popcnt: #UD (the host agrees: it raises SIGILL). */
	fx_state_64(&f->st);
	{
		enum emul_status r = RUN(f, &rep, 0xf0, 0xf3, 0x48, 0x0f, 0xb8, 0xc3);

		/* Either capstone refuses the combination (report) or we raise #UD. */
		if (r == EMUL_EXCEPTION)
			assert_int_equal(f->st.exc.vector, EMUL_VEC_UD);
		else
			assert_int_equal(r, EMUL_UNHANDLED);
		assert_int_equal(f->st.rip, FX_CODE);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_popcnt_reg, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_popcnt_mem, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_faults, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_fetch, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_int3_fwait, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_clac_stac, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_mxcsr, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_cmpxchg16b, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_cmpxchg8b, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_xsave_xrstor, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_modes, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_unhandled, fxt_setup, fxt_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
