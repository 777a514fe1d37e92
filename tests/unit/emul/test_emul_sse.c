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

	/* only_kinds (the adapter's SSE runs): another kind is left alone. */
	fx_state_64(&f->st);
	f->st.only_kinds = (1u << EMUL_KIND_SSE) | (1u << EMUL_KIND_SSE_ALU);
	f->st.gpr[EMUL_RBX] = 0xff;
	assert_int_equal(RUN(f, &rep, 0xf3, 0x0f, 0xb8, 0xc3), EMUL_UNHANDLED); /* popcnt eax, ebx */
	assert_int_equal(f->st.gpr[EMUL_RAX], 0);
	assert_int_equal(f->st.rip, FX_CODE);
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xfe, 0xc1), EMUL_DONE); /* paddd xmm0, xmm1 */
}

/* movzx, which the adapter runs between SSE instructions: byte and word
 * sources, registers and memory, 16/32/64-bit destinations. */
static void test_movzx(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	static const uint8_t bytes[4] = { 0xfe, 0x81, 0x7f, 0x80 };

	fx_state_64(&f->st);
	fxt_put(f, FX_A + 0x100, bytes, 4);
	f->st.gpr[EMUL_RCX] = FX_A + 0x100;
	f->st.gpr[EMUL_RAX] = ~0ull;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xb6, 0x41, 0x01), EMUL_DONE); /* movzx eax, byte [rcx+1] */
	assert_string_equal(rep.mnemonic, "movzx eax, byte ptr [rcx + 1]");
	assert_int_equal(rep.kind, EMUL_KIND_MOVZX);
	assert_int_equal(f->st.gpr[EMUL_RAX], 0x81);
	assert_int_equal(f->st.rip, FX_CODE + 4);
	f->st.gpr[9] = ~0ull;
	assert_int_equal(RUN(f, &rep, 0x4c, 0x0f, 0xb7, 0x49, 0x02), EMUL_DONE); /* movzx r9, word [rcx+2] */
	assert_int_equal(f->st.gpr[9], 0x807f);
	f->st.gpr[EMUL_RBX] = 0x1234;
	f->st.gpr[EMUL_RDX] = 0xffffffffffffffffull;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xb6, 0xd7), EMUL_DONE); /* movzx dx, bh */
	assert_int_equal(f->st.gpr[EMUL_RDX], 0xffffffffffff0012ull);
	/* Not present: #PF, nothing written. */
	f->st.gpr[EMUL_RCX] = FX_NP;
	f->st.gpr[EMUL_RAX] = 5;
	assert_int_equal(RUN(f, &rep, 0x0f, 0xb6, 0x01), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_PF);
	assert_int_equal(f->st.gpr[EMUL_RAX], 5);
}

/* ---- SSE integer operations (emul_sse_alu.c) against native execution ---- */

/* xmm0 = d, xmm1 = s, run `text` (operands xmm1, xmm0 in AT&T order), d = xmm0. */
#define NATIVE(fn, text)                                                                \
	static void fn(uint8_t d[16], const uint8_t s[16])                              \
	{                                                                               \
		__asm__ volatile("movdqu %0, %%xmm0\n\tmovdqu %1, %%xmm1\n\t" text      \
				 "\n\tmovdqu %%xmm0, %0"                                \
				 : "+m"(*(uint8_t(*)[16])d)                             \
				 : "m"(*(const uint8_t(*)[16])s)                        \
				 : "xmm0", "xmm1");                                     \
	}
NATIVE(n_paddb, "paddb %%xmm1, %%xmm0")
NATIVE(n_paddw, "paddw %%xmm1, %%xmm0")
NATIVE(n_paddd, "paddd %%xmm1, %%xmm0")
NATIVE(n_paddq, "paddq %%xmm1, %%xmm0")
NATIVE(n_paddusb, "paddusb %%xmm1, %%xmm0")
NATIVE(n_paddusw, "paddusw %%xmm1, %%xmm0")
NATIVE(n_psubb, "psubb %%xmm1, %%xmm0")
NATIVE(n_psubw, "psubw %%xmm1, %%xmm0")
NATIVE(n_psubd, "psubd %%xmm1, %%xmm0")
NATIVE(n_psubq, "psubq %%xmm1, %%xmm0")
NATIVE(n_pand, "pand %%xmm1, %%xmm0")
NATIVE(n_pandn, "pandn %%xmm1, %%xmm0")
NATIVE(n_por, "por %%xmm1, %%xmm0")
NATIVE(n_andps, "andps %%xmm1, %%xmm0")
NATIVE(n_andnpd, "andnpd %%xmm1, %%xmm0")
NATIVE(n_orps, "orps %%xmm1, %%xmm0")
NATIVE(n_pcmpeqb, "pcmpeqb %%xmm1, %%xmm0")
NATIVE(n_pcmpeqw, "pcmpeqw %%xmm1, %%xmm0")
NATIVE(n_pcmpeqd, "pcmpeqd %%xmm1, %%xmm0")
NATIVE(n_pcmpeqq, "pcmpeqq %%xmm1, %%xmm0")
NATIVE(n_pminub, "pminub %%xmm1, %%xmm0")
NATIVE(n_pmaxub, "pmaxub %%xmm1, %%xmm0")
NATIVE(n_pmuludq, "pmuludq %%xmm1, %%xmm0")
NATIVE(n_punpcklbw, "punpcklbw %%xmm1, %%xmm0")
NATIVE(n_punpcklwd, "punpcklwd %%xmm1, %%xmm0")
NATIVE(n_punpckldq, "punpckldq %%xmm1, %%xmm0")
NATIVE(n_punpcklqdq, "punpcklqdq %%xmm1, %%xmm0")
NATIVE(n_punpckhbw, "punpckhbw %%xmm1, %%xmm0")
NATIVE(n_punpckhwd, "punpckhwd %%xmm1, %%xmm0")
NATIVE(n_punpckhdq, "punpckhdq %%xmm1, %%xmm0")
NATIVE(n_punpckhqdq, "punpckhqdq %%xmm1, %%xmm0")
NATIVE(n_pshufb, "pshufb %%xmm1, %%xmm0")
NATIVE(n_pshufd93, "pshufd $0x93, %%xmm1, %%xmm0")
NATIVE(n_pshuflw1b, "pshuflw $0x1b, %%xmm1, %%xmm0")
NATIVE(n_pshufhw4e, "pshufhw $0x4e, %%xmm1, %%xmm0")
NATIVE(n_palignr5, "palignr $5, %%xmm1, %%xmm0")
NATIVE(n_palignr20, "palignr $20, %%xmm1, %%xmm0")
NATIVE(n_psrld12, "psrld $12, %%xmm0")
NATIVE(n_pslld20, "pslld $20, %%xmm0")
NATIVE(n_psrlw3, "psrlw $3, %%xmm0")
NATIVE(n_psllq33, "psllq $33, %%xmm0")
NATIVE(n_psraw5, "psraw $5, %%xmm0")
NATIVE(n_psrad40, "psrad $40, %%xmm0")
NATIVE(n_psrlq64, "psrlq $64, %%xmm0")
NATIVE(n_psrldq3, "psrldq $3, %%xmm0")
NATIVE(n_pslldq7, "pslldq $7, %%xmm0")
NATIVE(n_psrld_x, "psrld %%xmm1, %%xmm0")
NATIVE(n_psllq_x, "psllq %%xmm1, %%xmm0")
NATIVE(n_psraw_x, "psraw %%xmm1, %%xmm0")

/* The encoding without ModRM: mandatory prefix (0 = none), opcode bytes
 * after 0F, and for the shifts by an immediate the ModRM reg field (/digit,
 * with the register in r/m); imm >= 0 is appended. */
static const struct alu_case {
	const char *mn;
	uint8_t pfx, op[2], oplen;
	int digit, imm;
	void (*native)(uint8_t d[16], const uint8_t s[16]);
} alu_cases[] = {
	{ "paddb", 0x66, { 0xfc }, 1, -1, -1, n_paddb },
	{ "paddw", 0x66, { 0xfd }, 1, -1, -1, n_paddw },
	{ "paddd", 0x66, { 0xfe }, 1, -1, -1, n_paddd },
	{ "paddq", 0x66, { 0xd4 }, 1, -1, -1, n_paddq },
	{ "paddusb", 0x66, { 0xdc }, 1, -1, -1, n_paddusb },
	{ "paddusw", 0x66, { 0xdd }, 1, -1, -1, n_paddusw },
	{ "psubb", 0x66, { 0xf8 }, 1, -1, -1, n_psubb },
	{ "psubw", 0x66, { 0xf9 }, 1, -1, -1, n_psubw },
	{ "psubd", 0x66, { 0xfa }, 1, -1, -1, n_psubd },
	{ "psubq", 0x66, { 0xfb }, 1, -1, -1, n_psubq },
	{ "pand", 0x66, { 0xdb }, 1, -1, -1, n_pand },
	{ "pandn", 0x66, { 0xdf }, 1, -1, -1, n_pandn },
	{ "por", 0x66, { 0xeb }, 1, -1, -1, n_por },
	{ "andps", 0, { 0x54 }, 1, -1, -1, n_andps },
	{ "andnpd", 0x66, { 0x55 }, 1, -1, -1, n_andnpd },
	{ "orps", 0, { 0x56 }, 1, -1, -1, n_orps },
	{ "pcmpeqb", 0x66, { 0x74 }, 1, -1, -1, n_pcmpeqb },
	{ "pcmpeqw", 0x66, { 0x75 }, 1, -1, -1, n_pcmpeqw },
	{ "pcmpeqd", 0x66, { 0x76 }, 1, -1, -1, n_pcmpeqd },
	{ "pcmpeqq", 0x66, { 0x38, 0x29 }, 2, -1, -1, n_pcmpeqq },
	{ "pminub", 0x66, { 0xda }, 1, -1, -1, n_pminub },
	{ "pmaxub", 0x66, { 0xde }, 1, -1, -1, n_pmaxub },
	{ "pmuludq", 0x66, { 0xf4 }, 1, -1, -1, n_pmuludq },
	{ "punpcklbw", 0x66, { 0x60 }, 1, -1, -1, n_punpcklbw },
	{ "punpcklwd", 0x66, { 0x61 }, 1, -1, -1, n_punpcklwd },
	{ "punpckldq", 0x66, { 0x62 }, 1, -1, -1, n_punpckldq },
	{ "punpcklqdq", 0x66, { 0x6c }, 1, -1, -1, n_punpcklqdq },
	{ "punpckhbw", 0x66, { 0x68 }, 1, -1, -1, n_punpckhbw },
	{ "punpckhwd", 0x66, { 0x69 }, 1, -1, -1, n_punpckhwd },
	{ "punpckhdq", 0x66, { 0x6a }, 1, -1, -1, n_punpckhdq },
	{ "punpckhqdq", 0x66, { 0x6d }, 1, -1, -1, n_punpckhqdq },
	{ "pshufb", 0x66, { 0x38, 0x00 }, 2, -1, -1, n_pshufb },
	{ "pshufd", 0x66, { 0x70 }, 1, -1, 0x93, n_pshufd93 },
	{ "pshuflw", 0xf2, { 0x70 }, 1, -1, 0x1b, n_pshuflw1b },
	{ "pshufhw", 0xf3, { 0x70 }, 1, -1, 0x4e, n_pshufhw4e },
	{ "palignr", 0x66, { 0x3a, 0x0f }, 2, -1, 5, n_palignr5 },
	{ "palignr", 0x66, { 0x3a, 0x0f }, 2, -1, 20, n_palignr20 },
	{ "psrld", 0x66, { 0x72 }, 1, 2, 12, n_psrld12 },
	{ "pslld", 0x66, { 0x72 }, 1, 6, 20, n_pslld20 },
	{ "psrlw", 0x66, { 0x71 }, 1, 2, 3, n_psrlw3 },
	{ "psllq", 0x66, { 0x73 }, 1, 6, 33, n_psllq33 },
	{ "psraw", 0x66, { 0x71 }, 1, 4, 5, n_psraw5 },
	{ "psrad", 0x66, { 0x72 }, 1, 4, 40, n_psrad40 },
	{ "psrlq", 0x66, { 0x73 }, 1, 2, 64, n_psrlq64 },
	{ "psrldq", 0x66, { 0x73 }, 1, 3, 3, n_psrldq3 },
	{ "pslldq", 0x66, { 0x73 }, 1, 7, 7, n_pslldq7 },
	{ "psrld", 0x66, { 0xd2 }, 1, -1, -1, n_psrld_x },
	{ "psllq", 0x66, { 0xf3 }, 1, -1, -1, n_psllq_x },
	{ "psraw", 0x66, { 0xe1 }, 1, -1, -1, n_psraw_x },
};

/* Encode case c with destination xmm dst and source xmm src (or, for the
 * shifts by an immediate, the register alone); returns the length. */
static size_t alu_encode(const struct alu_case *c, unsigned dst, unsigned src, uint8_t *b)
{
	size_t n = 0;
	unsigned reg = c->digit >= 0 ? (unsigned)c->digit : dst, rm = c->digit >= 0 ? dst : src;

	if (c->pfx)
		b[n++] = c->pfx;
	if (reg >= 8 || rm >= 8)
		b[n++] = (uint8_t)(0x40 | (reg >= 8 ? 4 : 0) | (rm >= 8 ? 1 : 0)); /* REX.R, REX.B */
	b[n++] = 0x0f;
	for (unsigned i = 0; i < c->oplen; i++)
		b[n++] = c->op[i];
	b[n++] = (uint8_t)(0xc0 | ((reg & 7) << 3) | (rm & 7));
	if (c->imm >= 0)
		b[n++] = (uint8_t)c->imm;
	return n;
}

/* Inputs chosen to carry, saturate, compare equal in some lanes, select
 * zeroing pshufb lanes and give shift counts both small and too large. */
static const uint8_t alu_d[16] = { 0xff, 0x01, 0x80, 0x7f, 0x00, 0x90, 0xfe, 0x12,
				   0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0xff };
static const uint8_t alu_s[16] = { 0x01, 0x01, 0x80, 0x85, 0x00, 0x91, 0x8f, 0x03,
				   0x0e, 0x56, 0x07, 0x9a, 0x0f, 0x11, 0x22, 0xff };
static const uint8_t alu_count[16] = { 13 }; /* a shift count of 13 in the low quadword */

static void test_alu_vs_native(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	/* Register pairs: plain, REX.R, REX.B, both; the same register. */
	static const unsigned pairs[][2] = { { 0, 1 }, { 12, 3 }, { 2, 15 }, { 14, 15 }, { 5, 5 } };

	for (size_t i = 0; i < ARRAY_SIZE(alu_cases); i++) {
		const struct alu_case *c = &alu_cases[i];

		for (size_t p = 0; p < ARRAY_SIZE(pairs); p++) {
			unsigned dst = pairs[p][0], src = pairs[p][1];
			const uint8_t *sv = c->native == n_psrld_x || c->native == n_psllq_x ||
							    c->native == n_psraw_x
						    ? alu_count
						    : alu_s;
			uint8_t b[16], want[16], dv[16];
			size_t n = alu_encode(c, dst, src, b);
			bool same = dst == src && c->digit < 0;

			/* One register for both operands holds one value. */
			memcpy(dv, same ? sv : alu_d, 16);
			fx_state_64(&f->st);
			memset(f->st.xmm[7], 0x5a, 16); /* a bystander */
			memcpy(f->st.xmm[dst], dv, 16);
			if (c->digit < 0)
				memcpy(f->st.xmm[src], sv, 16);
			memcpy(want, dv, 16);
			c->native(want, same ? dv : sv);
			if (fxt_run_at(f, FX_CODE, b, n, &rep) != EMUL_DONE)
				fail_msg("%s xmm%u, xmm%u: %s (%s)", c->mn, dst, src, rep.why,
					 rep.mnemonic);
			if (strncmp(rep.mnemonic, c->mn, strlen(c->mn)) != 0)
				fail_msg("case %s decoded as %s", c->mn, rep.mnemonic);
			assert_int_equal(rep.kind, EMUL_KIND_SSE_ALU);
			if (memcmp(f->st.xmm[dst], want, 16) != 0)
				fail_msg("%s (xmm%u, xmm%u) differs from the CPU", rep.mnemonic, dst, src);
			assert_true(f->st.xmm_dirty);
			assert_int_equal(f->st.rip, FX_CODE + n);
			assert_int_equal(f->st.xmm[7][15], 0x5a);
			if (c->digit < 0 && !same)
				assert_memory_equal(f->st.xmm[src], sv, 16);
		}
	}
	assert_string_equal(emul_kind_name(EMUL_KIND_SSE_ALU), "sse-alu");
}

/* paddq xmm14, xmm15 (the instruction that stopped the Debian kernel after
 * `movd xmm15, ecx`), memory sources, alignment and the faults. */
static void test_alu_mem_faults(void **state)
{
	struct fixture *f = *state;
	struct emul_report rep;
	uint8_t want[16];

	fx_state_64(&f->st);
	memcpy(f->st.xmm[14], alu_d, 16);
	memcpy(f->st.xmm[15], alu_s, 16);
	assert_int_equal(RUN(f, &rep, 0x66, 0x45, 0x0f, 0xd4, 0xf7), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "paddq xmm14, xmm15");
	memcpy(want, alu_d, 16);
	n_paddq(want, alu_s);
	assert_memory_equal(f->st.xmm[14], want, 16);
	assert_memory_equal(f->st.xmm[15], alu_s, 16);

	/* pxor xmm3, [rip + disp] style: paddd xmm3, [rbx]; pshufd xmm2, [rbx+0x10], 0x93 */
	fx_state_64(&f->st);
	fxt_put(f, FX_A + 0x40, alu_s, 16);
	fxt_put(f, FX_A + 0x50, alu_d, 16);
	memcpy(f->st.xmm[3], alu_d, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x40;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xfe, 0x1b), EMUL_DONE);
	assert_string_equal(rep.mnemonic, "paddd xmm3, xmmword ptr [rbx]");
	memcpy(want, alu_d, 16);
	n_paddd(want, alu_s);
	assert_memory_equal(f->st.xmm[3], want, 16);
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x70, 0x53, 0x10, 0x93), EMUL_DONE);
	memset(want, 0, 16);
	n_pshufd93(want, alu_d);
	assert_memory_equal(f->st.xmm[2], want, 16);
	/* pshufb xmm12, [rbx] (REX.R, three-byte opcode) */
	fx_state_64(&f->st);
	memcpy(f->st.xmm[12], alu_d, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x40;
	assert_int_equal(RUN(f, &rep, 0x66, 0x44, 0x0f, 0x38, 0x00, 0x23), EMUL_DONE);
	memcpy(want, alu_d, 16);
	n_pshufb(want, alu_s);
	assert_memory_equal(f->st.xmm[12], want, 16);
	/* psrld xmm4, [rbx]: the count from memory (the low quadword) */
	fx_state_64(&f->st);
	fxt_put(f, FX_A + 0x60, alu_count, 16);
	memcpy(f->st.xmm[4], alu_d, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x60;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xd2, 0x23), EMUL_DONE);
	memcpy(want, alu_d, 16);
	n_psrld_x(want, alu_count);
	assert_memory_equal(f->st.xmm[4], want, 16);

	/* A misaligned m128: #GP(0), nothing changed. */
	fx_state_64(&f->st);
	memcpy(f->st.xmm[3], alu_d, 16);
	f->st.gpr[EMUL_RBX] = FX_A + 0x48;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xfe, 0x1b), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_GP);
	assert_true(f->st.exc.has_error_code);
	assert_int_equal(f->st.exc.error_code, 0);
	assert_memory_equal(f->st.xmm[3], alu_d, 16);
	assert_int_equal(f->st.rip, FX_CODE);
	/* Not present: #PF with CR2. */
	fx_state_64(&f->st);
	f->st.gpr[EMUL_RBX] = FX_NP + 0x10;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0xeb, 0x1b), EMUL_EXCEPTION); /* por */
	assert_int_equal(f->st.exc.vector, EMUL_VEC_PF);
	assert_int_equal(f->st.cr2, FX_NP + 0x10);
	/* #UD without CR4.OSFXSR or with CR0.EM, #NM with CR0.TS. */
	fx_state_64(&f->st);
	f->st.cr4 &= ~EMUL_CR4_OSFXSR;
	assert_int_equal(RUN(f, &rep, 0x66, 0x45, 0x0f, 0xd4, 0xf7), EMUL_EXCEPTION);
	assert_int_equal(f->st.exc.vector, EMUL_VEC_UD);
	fx_state_64(&f->st);
	f->st.cr0 |= EMUL_CR0_EM;
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x72, 0xd1, 0x0c), EMUL_EXCEPTION); /* psrld */
	assert_int_equal(f->st.exc.vector, EMUL_VEC_UD);
	fx_state_64(&f->st);
	f->st.cr0 |= EMUL_CR0_TS;
	memcpy(f->st.xmm[1], alu_d, 16);
	assert_int_equal(RUN(f, &rep, 0x66, 0x0f, 0x70, 0xc1, 0x39), EMUL_EXCEPTION); /* pshufd */
	assert_int_equal(f->st.exc.vector, EMUL_VEC_NM);
	assert_false(f->st.xmm_dirty);
	/* LOCK: capstone refuses the bytes (the CPU raises #UD): a report. */
	fx_state_64(&f->st);
	assert_int_equal(RUN(f, &rep, 0xf0, 0x66, 0x0f, 0xd4, 0xc1), EMUL_UNHANDLED);
	assert_int_equal(f->st.rip, FX_CODE);

	/* MMX forms (no 66 prefix) are refused, state untouched. */
	fx_state_64(&f->st);
	assert_int_equal(RUN(f, &rep, 0x0f, 0xd4, 0xc1), EMUL_UNHANDLED); /* paddq mm0, mm1 */
	assert_non_null(strstr(rep.why, "MMX"));
	assert_int_equal(f->st.rip, FX_CODE);
	assert_int_equal(RUN(f, &rep, 0x0f, 0x72, 0xd1, 0x0c), EMUL_UNHANDLED); /* psrld mm1, 12 */
	assert_non_null(strstr(rep.why, "MMX"));
	/* VEX forms decode to other instructions and stay unemulated. */
	assert_int_equal(RUN(f, &rep, 0xc5, 0xf9, 0xd4, 0xc1), EMUL_UNHANDLED); /* vpaddq */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_gpr_moves, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_mem_moves, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_xor, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_sse_faults, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_refused, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_alu_vs_native, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_alu_mem_faults, fxt_setup, fxt_teardown),
		cmocka_unit_test_setup_teardown(test_movzx, fxt_setup, fxt_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
