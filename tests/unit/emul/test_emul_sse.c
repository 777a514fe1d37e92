/* test_emul_sse.c: the SSE register moves of the emulation fallback on a
 * fake CPU: movd/movq between general registers, memory and XMM (checked
 * against the same instructions run natively here, zero extension
 * included), movq xmm/xmm, the 128-bit moves with their alignment rule,
 * pxor/xorps, the #UD/#NM/#PF/#GP cases, and the forms that are refused
 * (MMX registers, VEX). Among them the `movd xmm15, ecx` a Debian kernel
 * stopped on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fx_test.h"

/* ---- native references: the destination starts all ones ---- */

static void native_movd_load(uint32_t v, uint8_t out[16])
{
	__asm__ volatile("pcmpeqb %%xmm0, %%xmm0; movd %1, %%xmm0; movdqu %%xmm0, %0"
			 : "=m"(*(uint8_t(*)[16])out) : "r"(v) : "xmm0");
}

static void native_movq_load(uint64_t v, uint8_t out[16])
{
	__asm__ volatile("pcmpeqb %%xmm0, %%xmm0; movq %1, %%xmm0; movdqu %%xmm0, %0"
			 : "=m"(*(uint8_t(*)[16])out) : "r"(v) : "xmm0");
}

static void native_movq_xmm(const uint8_t in[16], uint8_t out[16])
{
	__asm__ volatile("movdqu %1, %%xmm1; pcmpeqb %%xmm0, %%xmm0; movq %%xmm1, %%xmm0;"
			 "movdqu %%xmm0, %0"
			 : "=m"(*(uint8_t(*)[16])out) : "m"(*(const uint8_t(*)[16])in)
			 : "xmm0", "xmm1");
}

static uint64_t native_movd_store(const uint8_t in[16])
{
	uint64_t r = ~0ull;

	__asm__ volatile("movdqu %1, %%xmm0; movd %%xmm0, %k0"
			 : "+r"(r) : "m"(*(const uint8_t(*)[16])in) : "xmm0");
	return r;
}

static const uint8_t pattern[16] = { 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
				     0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87 };

/* movd/movq between general registers and XMM, all 16 XMM registers. */
static void test_gpr_moves(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	uint8_t want[16];
	uint64_t v = 0x1122334455667788ull;

	/* movd xmm15, ecx: the instruction that stopped the Debian kernel. */
	fx_state_64(&f->st);
	memset(f->st.xmm[15], 0xff, 16);
	f->st.gpr[EMUL_RCX] = v;
	assert_int_equal(RUN(f, &rep, 0x66, 0x44, 0x0f, 0x6e, 0xf9), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "movd xmm15, ecx");
	assert_int_equal(rep.kind, EMUL_KIND_SSE);
	assert_string_equal(emul_kind_name(rep.kind), "sse-move");
	native_movd_load((uint32_t)v, want);
	assert_memory_equal(f->st.xmm[15], want, 16);
	assert_true(f->st.xmm_dirty);
	assert_int_equal(f->st.rip, FX_CODE + 5);
	assert_int_equal(f->st.gpr[EMUL_RCX], v);

	/* movq xmm1, rax (REX.W movd) */
	fx_state_64(&f->st);
	memset(f->st.xmm[1], 0xff, 16);
	f->st.gpr[EMUL_RAX] = v;
	assert_int_equal(RUN(f, &rep, 0x66, 0x48, 0x0f, 0x6e, 0xc8), EMUL_DONE);
	native_movq_load(v, want);
	assert_memory_equal(f->st.xmm[1], want, 16);

	/* movd eax, xmm2: a 32-bit write zero-extends */
	fx_state_64(&f->st);
	memcpy(f->st.xmm[2], pattern, 16);
	f->st.gpr[EMUL_RAX] = ~0ull;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x7e, 0xd0), EMUL_DONE);
	assert_int_equal(f->st.gpr[EMUL_RAX], native_movd_store(pattern));
	assert_int_equal(f->st.gpr[EMUL_RAX], 0x55667788ull);
	assert_false(f->st.xmm_dirty);

	/* movq rbx, xmm3 and movq r9, xmm8 (REX.R/B) */
	fx_state_64(&f->st);
	memcpy(f->st.xmm[3], pattern, 16);
	assert_int_equal(RUN(f, &rep, 0x66, 0x48, 0x0f, 0x7e, 0xdb), EMUL_DONE);
	assert_int_equal(f->st.gpr[EMUL_RBX], 0x1122334455667788ull);
	fx_state_64(&f->st);
	memcpy(f->st.xmm[8], pattern, 16);
	assert_int_equal(RUN(f, &rep, 0x66, 0x4d, 0x0f, 0x7e, 0xc1), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "movq r9, xmm8");
	assert_int_equal(f->st.gpr[9], 0x1122334455667788ull);

	/* movq xmm1, xmm2 (F3 0F 7E): the low half, the rest cleared */
	fx_state_64(&f->st);
	memcpy(f->st.xmm[2], pattern, 16);
	memset(f->st.xmm[1], 0xff, 16);
	assert_int_equal(RUN(f, &rep, 0xf3, 0x0f, 0x7e, 0xca), EMUL_DONE);
	native_movq_xmm(pattern, want);
	assert_memory_equal(f->st.xmm[1], want, 16);
	/* movq xmm1, xmm2 (66 0F D6, the store form with a register) */
	fx_state_64(&f->st);
	memcpy(f->st.xmm[1], pattern, 16);
	memset(f->st.xmm[2], 0xff, 16);
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xd6, 0xca), EMUL_DONE);
	assert_memory_equal(f->st.xmm[2], want, 16);
}

/* Memory forms: loads zero-extend, stores write exactly their width, an
 * operand may cross into a physically distant page. */
static void test_mem_moves(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	uint8_t buf[24], want[16];
	static const uint8_t ones[24] = { [0 ... 23] = 0xee };

	/* movd xmm0, dword ptr [rbx] */
	fx_state_64(&f->st);
	memset(f->st.xmm[0], 0xff, 16);
	fxt_put(f, FX_A + 0x10, pattern, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x10;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x6e, 0x03), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "movd xmm0, dword ptr [rbx]");
	memset(want, 0, 16);
	memcpy(want, pattern, 4);
	assert_memory_equal(f->st.xmm[0], want, 16);

	/* movq xmm0, qword ptr [rbx] (F3 0F 7E) */
	fx_state_64(&f->st);
	memset(f->st.xmm[0], 0xff, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x10;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x0f, 0x7e, 0x03), EMUL_DONE);
	memcpy(want, pattern, 8);
	assert_memory_equal(f->st.xmm[0], want, 16);

	/* movq qword ptr [rbx], xmm0 (66 0F D6) across data A -> data B */
	fx_state_64(&f->st);
	memcpy(f->st.xmm[0], pattern, 16);
	fxt_put(f, FX_B - 12, ones, 24);
	f->st.gpr[EMUL_RBX] = FX_B - 4;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xd6, 0x03), EMUL_DONE);
	fxt_get(f, FX_B - 12, buf, 24);
	assert_memory_equal(buf, ones, 8);
	assert_memory_equal(buf + 8, pattern, 8);
	assert_memory_equal(buf + 16, ones, 8);

	/* movd dword ptr [rbx + 8], xmm3 */
	fx_state_64(&f->st);
	memcpy(f->st.xmm[3], pattern, 16);
	fxt_put(f, FX_A + 0x100, ones, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x100;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x7e, 0x5b, 0x08), EMUL_DONE);
	fxt_get(f, FX_A + 0x100, buf, 16);
	assert_memory_equal(buf, ones, 8);
	assert_memory_equal(buf + 8, pattern, 4);
	assert_memory_equal(buf + 12, ones, 4);

	/* movdqa xmm4, [rbx] aligned; movdqu [rbx+1], xmm4 across pages */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_A + 0x10;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x6f, 0x23), EMUL_DONE);
	assert_memory_equal(f->st.xmm[4], pattern, 16);
	f->st.gpr[EMUL_RBX] = FX_B - 9;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x0f, 0x7f, 0x63, 0x01), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "movdqu xmmword ptr [rbx + 1], xmm4");
	fxt_get(f, FX_B - 8, buf, 16);
	assert_memory_equal(buf, pattern, 16);

	/* movaps xmm5, xmm4; movups xmm6, [rbx]; movapd [rbx], xmm6 */
	fx_state_64(&f->st);
	memcpy(f->st.xmm[4], pattern, 16);
	assert_int_equal(RUN(f, &rep, 0x0f, 0x28, 0xec), EMUL_DONE);
	assert_memory_equal(f->st.xmm[5], pattern, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x10;
	assert_int_equal(RUN(f, &rep, 0x0f, 0x10, 0x33), EMUL_DONE);
	assert_memory_equal(f->st.xmm[6], pattern, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x200;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x29, 0x33), EMUL_DONE);
	fxt_get(f, FX_A + 0x200, buf, 16);
	assert_memory_equal(buf, pattern, 16);
}

/* pxor/xorps/xorpd: the register-clearing idiom and a memory source. */
static void test_xor(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	uint8_t want[16];

	fx_state_64(&f->st);
	memcpy(f->st.xmm[4], pattern, 16);
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xef, 0xe4), EMUL_DONE); /* pxor xmm4, xmm4 */
	memset(want, 0, 16);
	assert_memory_equal(f->st.xmm[4], want, 16);
	assert_true(f->st.xmm_dirty);

	fx_state_64(&f->st);
	memset(f->st.xmm[5], 0xff, 16);
	fxt_put(f, FX_A + 0x30, pattern, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x30;
	assert_int_equal(RUN(f, &rep, 0x0f, 0x57, 0x2b), EMUL_DONE); /* xorps xmm5, [rbx] */
	for (unsigned i = 0; i < 16; i++)
		want[i] = (uint8_t)~pattern[i];
	assert_memory_equal(f->st.xmm[5], want, 16);
	fx_state_64(&f->st);
	memcpy(f->st.xmm[1], pattern, 16);
	memcpy(f->st.xmm[2], pattern, 16);
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x57, 0xca), EMUL_DONE); /* xorpd xmm1, xmm2 */
	memset(want, 0, 16);
	assert_memory_equal(f->st.xmm[1], want, 16);
}

/* Exceptions: nothing of the instruction happens. */
static void test_sse_faults(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;

	/* Without CR4.OSFXSR, or with CR0.EM: #UD. With CR0.TS: #NM. */
	fx_state_64(&f->st);
	f->st.cr4 &= ~EMUL_CR4_OSFXSR;
	assert_int_equal(RUN(f, &rep, 0x66, 0x44, 0x0f, 0x6e, 0xf9), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_UD);
	assert_int_equal(f->st.rip, FX_CODE);
	fx_state_64(&f->st);
	f->st.cr0 |= EMUL_CR0_EM;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x7e, 0xd0), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_UD);
	fx_state_64(&f->st);
	f->st.cr0 |= EMUL_CR0_TS;
	f->st.gpr[EMUL_RAX] = 5;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x7e, 0xd0), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_NM);
	assert_int_equal(f->st.gpr[EMUL_RAX], 5);

	/* movdqa with a misaligned operand: #GP(0), the register unchanged. */
	fx_state_64(&f->st);
	memset(f->st.xmm[4], 0xab, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x18;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x6f, 0x23), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
	assert_true(f->st.exc.has_error_code);
	assert_int_equal(f->st.xmm[4][0], 0xab);
	/* pxor with a misaligned memory source: #GP too. */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_A + 4;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xef, 0x03), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);

	/* Not-present source: #PF with CR2; read-only destination: #PF (write). */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_NP + 8;
	memset(f->st.xmm[0], 0xcd, 16);
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x6e, 0x03), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_PF);
	assert_int_equal(f->st.cr2, FX_NP + 8);
	assert_int_equal(f->st.xmm[0][0], 0xcd);
	assert_false(f->st.xmm_dirty);
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_RO;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xd6, 0x03), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_PF);
	assert_int_equal(f->st.exc.error_code & 2, 2);

	/* Memory outside guest RAM: refused with a report. */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_MMIO;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x6e, 0x03), EMUL_UNHANDLED);
	assert_non_null(strstr(rep.why, "outside guest RAM"));
}

/* Forms that are not emulated are refused with a reason, state untouched. */
static void test_refused(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;

	fx_state_64(&f->st);
	f->st.gpr[EMUL_RAX] = 9;
	assert_int_equal(RUN(f, &rep, 0x0f, 0x6e, 0xc0), EMUL_UNHANDLED); /* movd mm0, eax */
	assert_string_equal(rep.mnemonic, "movd mm0, eax");
	assert_non_null(strstr(rep.why, "MMX"));
	assert_int_equal(f->st.rip, FX_CODE);
	fx_state_64(&f->st);
	assert_int_equal(RUN(f, &rep, 0xc5, 0xf9, 0x6e, 0xc0), EMUL_UNHANDLED); /* vmovd */
	assert_non_null(strstr(rep.mnemonic, "vmovd"));
	assert_non_null(strstr(rep.why, "no emulation"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_gpr_moves, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_mem_moves, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_xor, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_sse_faults, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_refused, fxt_setup, fxt_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
