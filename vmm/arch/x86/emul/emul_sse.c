/* emul_sse.c: the SSE register moves KVM's emulator lacks in ring 0 (a
 * Debian kernel stopped on `movd xmm15, ecx`): movd/movq between general
 * registers, memory and XMM registers, the 128-bit moves movdqa/movdqu/
 * movaps/movups/movapd/movupd, and pxor/xorps/xorpd (the idiom that clears
 * a register), legacy encodings only (VEX forms decode to other ids and are
 * refused). MMX register forms are refused too: their registers live in the
 * x87 state, which the fallback does not carry. */
#include "arch/x86/emul/emul_priv.h"

#include <stdio.h>
#include <string.h>

enum sse_opk { OPK_XMM, OPK_GPR, OPK_MEM, OPK_OTHER };

struct sse_op {
	enum sse_opk kind;
	int xmm;            /* OPK_XMM: 0..15 */
	struct reg_desc gpr;/* OPK_GPR */
	const cs_x86_op *op;
};

static void classify(const cs_x86_op *op, struct sse_op *o)
{
	o->op = op;
	o->kind = OPK_OTHER;
	if (op->type == X86_OP_MEM) {
		o->kind = OPK_MEM;
	} else if (op->type == X86_OP_REG) {
		if (op->reg >= X86_REG_XMM0 && op->reg <= X86_REG_XMM15) {
			o->kind = OPK_XMM;
			o->xmm = (int)(op->reg - X86_REG_XMM0);
		} else if (emul_reg_lookup(op->reg, &o->gpr) && !o->gpr.high8 &&
			   o->gpr.size >= 4) {
			o->kind = OPK_GPR;
		}
	}
}

static enum emul_status unhandled(struct emul_report *rep, const char *why)
{
	snprintf(rep->why, sizeof(rep->why), "%s", why);
	return EMUL_UNHANDLED;
}

/* Linear address of the memory operand, with the alignment rule of the
 * aligned forms (#GP(0) when a 16-byte operand is not 16-byte aligned). */
static enum emul_status mem_linear(struct emul_state *st, const struct insn *in,
				   const struct sse_op *o, unsigned width, bool aligned,
				   uint64_t *lin)
{
	enum emul_status r = emul_mem_linear(st, in, o->op, width, lin);

	if (r == EMUL_DONE && aligned && (*lin & 15))
		return emul_raise(st, EMUL_VEC_GP, true, 0);
	return r;
}

enum emul_status emul_do_sse(struct emul_ctx *ctx, struct emul_state *st,
			     const struct insn *in, struct emul_report *rep)
{
	struct sse_op dst, src;
	unsigned width = 16;
	bool aligned = false, xor = false;
	uint8_t val[16];
	enum emul_status r;
	uint64_t lin, v;

	switch (in->ci->id) {
	case X86_INS_MOVD:
		width = 4;
		break;
	case X86_INS_MOVQ:
		width = 8;
		break;
	case X86_INS_MOVDQA:
	case X86_INS_MOVAPS:
	case X86_INS_MOVAPD:
		aligned = true;
		break;
	case X86_INS_PXOR:
	case X86_INS_XORPS:
	case X86_INS_XORPD:
		aligned = xor = true;
		break;
	default:
		break; /* movdqu, movups, movupd */
	}
	if (in->x->op_count != 2)
		return unhandled(rep, "unexpected SSE operands");
	classify(&in->x->operands[0], &dst);
	classify(&in->x->operands[1], &src);
	if (dst.kind == OPK_OTHER || src.kind == OPK_OTHER ||
	    (dst.kind != OPK_XMM && src.kind != OPK_XMM))
		return unhandled(rep, "MMX register forms are not emulated (no x87 state here)");
	if (width == 16 && (dst.kind == OPK_GPR || src.kind == OPK_GPR))
		return unhandled(rep, "unexpected SSE operands");
	if (xor && dst.kind != OPK_XMM)
		return unhandled(rep, "unexpected SSE operands");
	/* A GPR operand gives movd/movq its width (movq r64 is REX.W movd). */
	if (dst.kind == OPK_GPR)
		width = dst.gpr.size;
	if (src.kind == OPK_GPR)
		width = src.gpr.size;
	if (width != 4 && width != 8 && width != 16)
		return unhandled(rep, "unexpected SSE operand width");

	/* SDM, SSE instructions: #UD with CR0.EM or without CR4.OSFXSR, then
	 * #NM with CR0.TS (LOCK was refused by the caller). */
	if ((st->cr0 & EMUL_CR0_EM) || !(st->cr4 & EMUL_CR4_OSFXSR))
		return emul_raise(st, EMUL_VEC_UD, false, 0);
	if (st->cr0 & EMUL_CR0_TS)
		return emul_raise(st, EMUL_VEC_NM, false, 0);

	memset(val, 0, sizeof(val));
	switch (src.kind) {
	case OPK_XMM:
		memcpy(val, st->xmm[src.xmm], width);
		break;
	case OPK_GPR:
		v = emul_reg_read(st, &src.gpr);
		memcpy(val, &v, width);
		break;
	default:
		r = mem_linear(st, in, &src, width, aligned, &lin);
		if (r != EMUL_DONE)
			return r;
		r = emul_mem_status(emul_mem_read(ctx, st, lin, val, width, EMUL_READ, rep->why,
						  sizeof(rep->why)), rep);
		if (r != EMUL_DONE)
			return r;
		break;
	}
	if (xor)
		for (unsigned i = 0; i < 16; i++)
			val[i] ^= st->xmm[dst.xmm][i];

	switch (dst.kind) {
	case OPK_XMM:
		/* Narrower loads zero the rest of the register (legacy SSE:
		 * bits 127:width; the VEX upper halves are not ours to touch). */
		memcpy(st->xmm[dst.xmm], val, 16);
		st->xmm_dirty = true;
		break;
	case OPK_GPR:
		v = 0;
		memcpy(&v, val, width);
		emul_reg_write(st, &dst.gpr, v);
		break;
	default:
		r = mem_linear(st, in, &dst, width, aligned, &lin);
		if (r != EMUL_DONE)
			return r;
		r = emul_mem_status(emul_mem_write(ctx, st, lin, val, width, rep->why,
						   sizeof(rep->why)), rep);
		if (r != EMUL_DONE)
			return r;
		break;
	}
	emul_advance(st, in);
	return EMUL_DONE;
}
