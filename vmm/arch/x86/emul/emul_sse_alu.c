/* emul_sse_alu.c: SSE integer and logic operations on XMM registers, legacy
 * encodings, for ring-0 SIMD code KVM's emulator lacks. The set is what
 * Linux's built-in SSE code runs (a Debian kernel stopped on `paddq xmm14,
 * xmm15` in blake2s_compress_ssse3, whose rounds use paddd/paddq, pxor,
 * por, pshufb, pshufd, psrld/pslld by an immediate and punpckl*) and their
 * close relatives: lane-wise add/subtract (plain and unsigned saturating),
 * and/andn/or in their integer, ps and pd spellings, compare for equal,
 * min/max of unsigned bytes, pmuludq, the unpacks, the shuffles (pshufd,
 * pshuflw, pshufhw, pshufb, palignr) and the shifts (by an immediate or by
 * an XMM/m128 count; whole-register byte shifts psrldq/pslldq). All have the
 * form `op xmm, xmm/m128 [, imm8]` or `op xmm, imm8`; an m128 operand must
 * be 16-byte aligned (#GP(0)). MMX-register forms are refused as in
 * emul_sse.c. */
#include "arch/x86/emul/emul_priv.h"

#include <stdio.h>
#include <string.h>

/* One XMM value; the project is x86-only, so lanes are little-endian. */
union xmm {
	uint8_t b[16];
	uint16_t w[8];
	uint32_t d[4];
	uint64_t q[2];
	int16_t sw[8];
	int32_t sd[4];
};

/* How an operation takes its second input. */
enum alu_shape {
	SHAPE_RM,      /* xmm, xmm/m128 */
	SHAPE_RM_IMM,  /* xmm, xmm/m128, imm8 */
	SHAPE_SHIFT,   /* xmm, imm8  or  xmm, xmm/m128 (the count) */
	SHAPE_IMM,     /* xmm, imm8 (byte shifts) */
};

static const struct {
	x86_insn id;
	enum alu_shape shape;
} alu_ops[] = {
	{ X86_INS_PADDB, SHAPE_RM },     { X86_INS_PADDW, SHAPE_RM },
	{ X86_INS_PADDD, SHAPE_RM },     { X86_INS_PADDQ, SHAPE_RM },
	{ X86_INS_PADDUSB, SHAPE_RM },   { X86_INS_PADDUSW, SHAPE_RM },
	{ X86_INS_PSUBB, SHAPE_RM },     { X86_INS_PSUBW, SHAPE_RM },
	{ X86_INS_PSUBD, SHAPE_RM },     { X86_INS_PSUBQ, SHAPE_RM },
	{ X86_INS_PAND, SHAPE_RM },      { X86_INS_ANDPS, SHAPE_RM },
	{ X86_INS_ANDPD, SHAPE_RM },     { X86_INS_PANDN, SHAPE_RM },
	{ X86_INS_ANDNPS, SHAPE_RM },    { X86_INS_ANDNPD, SHAPE_RM },
	{ X86_INS_POR, SHAPE_RM },       { X86_INS_ORPS, SHAPE_RM },
	{ X86_INS_ORPD, SHAPE_RM },      { X86_INS_PCMPEQB, SHAPE_RM },
	{ X86_INS_PCMPEQW, SHAPE_RM },   { X86_INS_PCMPEQD, SHAPE_RM },
	{ X86_INS_PCMPEQQ, SHAPE_RM },   { X86_INS_PMINUB, SHAPE_RM },
	{ X86_INS_PMAXUB, SHAPE_RM },    { X86_INS_PMULUDQ, SHAPE_RM },
	{ X86_INS_PUNPCKLBW, SHAPE_RM }, { X86_INS_PUNPCKLWD, SHAPE_RM },
	{ X86_INS_PUNPCKLDQ, SHAPE_RM }, { X86_INS_PUNPCKLQDQ, SHAPE_RM },
	{ X86_INS_PUNPCKHBW, SHAPE_RM }, { X86_INS_PUNPCKHWD, SHAPE_RM },
	{ X86_INS_PUNPCKHDQ, SHAPE_RM }, { X86_INS_PUNPCKHQDQ, SHAPE_RM },
	{ X86_INS_PSHUFB, SHAPE_RM },    { X86_INS_PSHUFD, SHAPE_RM_IMM },
	{ X86_INS_PSHUFLW, SHAPE_RM_IMM }, { X86_INS_PSHUFHW, SHAPE_RM_IMM },
	{ X86_INS_PALIGNR, SHAPE_RM_IMM },
	{ X86_INS_PSLLW, SHAPE_SHIFT },  { X86_INS_PSLLD, SHAPE_SHIFT },
	{ X86_INS_PSLLQ, SHAPE_SHIFT },  { X86_INS_PSRLW, SHAPE_SHIFT },
	{ X86_INS_PSRLD, SHAPE_SHIFT },  { X86_INS_PSRLQ, SHAPE_SHIFT },
	{ X86_INS_PSRAW, SHAPE_SHIFT },  { X86_INS_PSRAD, SHAPE_SHIFT },
	{ X86_INS_PSLLDQ, SHAPE_IMM },   { X86_INS_PSRLDQ, SHAPE_IMM },
};

static int alu_find(unsigned id)
{
	for (unsigned i = 0; i < ARRAY_SIZE(alu_ops); i++)
		if (alu_ops[i].id == id)
			return (int)i;
	return -1;
}

bool emul_sse_alu_known(unsigned id)
{
	return alu_find(id) >= 0;
}

static uint8_t sat_u8(unsigned v)
{
	return v > 0xff ? 0xff : (uint8_t)v;
}

static uint16_t sat_u16(unsigned v)
{
	return v > 0xffff ? 0xffff : (uint16_t)v;
}

/* Interleave the low (hi = false) or high halves of d and s in lanes of
 * `lane` bytes: d0 s0 d1 s1 ... */
static void unpack(union xmm *r, const union xmm *d, const union xmm *s, unsigned lane, bool hi)
{
	unsigned half = hi ? 8 : 0;
	union xmm t;

	for (unsigned i = 0; i < 8 / lane; i++) {
		memcpy(&t.b[2 * i * lane], &d->b[half + i * lane], lane);
		memcpy(&t.b[(2 * i + 1) * lane], &s->b[half + i * lane], lane);
	}
	*r = t;
}

/* Lane shifts by `count` (any value: past the lane width, logical shifts
 * give 0 and arithmetic ones the sign). */
static void shift(union xmm *r, unsigned id, uint64_t count)
{
	switch (id) {
	case X86_INS_PSLLW:
	case X86_INS_PSRLW:
		for (unsigned i = 0; i < 8; i++)
			r->w[i] = count > 15 ? 0 : id == X86_INS_PSLLW ? (uint16_t)(r->w[i] << count)
								     : (uint16_t)(r->w[i] >> count);
		break;
	case X86_INS_PSLLD:
	case X86_INS_PSRLD:
		for (unsigned i = 0; i < 4; i++)
			r->d[i] = count > 31 ? 0 : id == X86_INS_PSLLD ? r->d[i] << count
								     : r->d[i] >> count;
		break;
	case X86_INS_PSLLQ:
	case X86_INS_PSRLQ:
		for (unsigned i = 0; i < 2; i++)
			r->q[i] = count > 63 ? 0 : id == X86_INS_PSLLQ ? r->q[i] << count
								     : r->q[i] >> count;
		break;
	case X86_INS_PSRAW:
		for (unsigned i = 0; i < 8; i++)
			r->sw[i] = (int16_t)(r->sw[i] >> (count > 15 ? 15 : count));
		break;
	case X86_INS_PSRAD:
		for (unsigned i = 0; i < 4; i++)
			r->sd[i] = r->sd[i] >> (count > 31 ? 31 : count);
		break;
	default:
		break;
	}
}

/* Byte shift of the whole register (psrldq/pslldq), or of the 32-byte
 * d:s for palignr (d the high half). */
static void byte_shift_right(union xmm *r, const union xmm *hi, const union xmm *lo, unsigned n)
{
	uint8_t cat[48];

	memset(cat, 0, sizeof(cat));
	memcpy(cat, lo->b, 16);
	memcpy(cat + 16, hi->b, 16);
	memcpy(r->b, cat + (n > 32 ? 32 : n), 16);
}

/* d = d OP s (imm where the operation takes one). */
static void alu_apply(unsigned id, union xmm *d, const union xmm *s, unsigned imm)
{
	union xmm t = *d, z;
	unsigned i;

	memset(&z, 0, sizeof(z));
	switch (id) {
	case X86_INS_PADDB: for (i = 0; i < 16; i++) t.b[i] = (uint8_t)(d->b[i] + s->b[i]); break;
	case X86_INS_PADDW: for (i = 0; i < 8; i++) t.w[i] = (uint16_t)(d->w[i] + s->w[i]); break;
	case X86_INS_PADDD: for (i = 0; i < 4; i++) t.d[i] = d->d[i] + s->d[i]; break;
	case X86_INS_PADDQ: for (i = 0; i < 2; i++) t.q[i] = d->q[i] + s->q[i]; break;
	case X86_INS_PADDUSB: for (i = 0; i < 16; i++) t.b[i] = sat_u8(d->b[i] + s->b[i]); break;
	case X86_INS_PADDUSW: for (i = 0; i < 8; i++) t.w[i] = sat_u16(d->w[i] + s->w[i]); break;
	case X86_INS_PSUBB: for (i = 0; i < 16; i++) t.b[i] = (uint8_t)(d->b[i] - s->b[i]); break;
	case X86_INS_PSUBW: for (i = 0; i < 8; i++) t.w[i] = (uint16_t)(d->w[i] - s->w[i]); break;
	case X86_INS_PSUBD: for (i = 0; i < 4; i++) t.d[i] = d->d[i] - s->d[i]; break;
	case X86_INS_PSUBQ: for (i = 0; i < 2; i++) t.q[i] = d->q[i] - s->q[i]; break;
	case X86_INS_PAND: case X86_INS_ANDPS: case X86_INS_ANDPD:
		for (i = 0; i < 2; i++) t.q[i] = d->q[i] & s->q[i];
		break;
	case X86_INS_PANDN: case X86_INS_ANDNPS: case X86_INS_ANDNPD:
		for (i = 0; i < 2; i++) t.q[i] = ~d->q[i] & s->q[i];
		break;
	case X86_INS_POR: case X86_INS_ORPS: case X86_INS_ORPD:
		for (i = 0; i < 2; i++) t.q[i] = d->q[i] | s->q[i];
		break;
	case X86_INS_PCMPEQB: for (i = 0; i < 16; i++) t.b[i] = d->b[i] == s->b[i] ? 0xff : 0; break;
	case X86_INS_PCMPEQW: for (i = 0; i < 8; i++) t.w[i] = d->w[i] == s->w[i] ? 0xffff : 0; break;
	case X86_INS_PCMPEQD: for (i = 0; i < 4; i++) t.d[i] = d->d[i] == s->d[i] ? ~0u : 0; break;
	case X86_INS_PCMPEQQ: for (i = 0; i < 2; i++) t.q[i] = d->q[i] == s->q[i] ? ~0ull : 0; break;
	case X86_INS_PMINUB: for (i = 0; i < 16; i++) t.b[i] = MIN(d->b[i], s->b[i]); break;
	case X86_INS_PMAXUB: for (i = 0; i < 16; i++) t.b[i] = MAX(d->b[i], s->b[i]); break;
	case X86_INS_PMULUDQ:
		t.q[0] = (uint64_t)d->d[0] * s->d[0];
		t.q[1] = (uint64_t)d->d[2] * s->d[2];
		break;
	case X86_INS_PUNPCKLBW: unpack(&t, d, s, 1, false); break;
	case X86_INS_PUNPCKLWD: unpack(&t, d, s, 2, false); break;
	case X86_INS_PUNPCKLDQ: unpack(&t, d, s, 4, false); break;
	case X86_INS_PUNPCKLQDQ: unpack(&t, d, s, 8, false); break;
	case X86_INS_PUNPCKHBW: unpack(&t, d, s, 1, true); break;
	case X86_INS_PUNPCKHWD: unpack(&t, d, s, 2, true); break;
	case X86_INS_PUNPCKHDQ: unpack(&t, d, s, 4, true); break;
	case X86_INS_PUNPCKHQDQ: unpack(&t, d, s, 8, true); break;
	case X86_INS_PSHUFB:
		for (i = 0; i < 16; i++)
			t.b[i] = (s->b[i] & 0x80) ? 0 : d->b[s->b[i] & 15];
		break;
	case X86_INS_PSHUFD:
		for (i = 0; i < 4; i++)
			t.d[i] = s->d[(imm >> (2 * i)) & 3];
		break;
	case X86_INS_PSHUFLW:
		t.q[1] = s->q[1];
		for (i = 0; i < 4; i++)
			t.w[i] = s->w[(imm >> (2 * i)) & 3];
		break;
	case X86_INS_PSHUFHW:
		t.q[0] = s->q[0];
		for (i = 0; i < 4; i++)
			t.w[4 + i] = s->w[4 + ((imm >> (2 * i)) & 3)];
		break;
	case X86_INS_PALIGNR: byte_shift_right(&t, d, s, imm); break;
	case X86_INS_PSRLDQ: byte_shift_right(&t, &z, d, imm); break;
	case X86_INS_PSLLDQ:
		/* Left by n: the bytes of d moved up, zeros below. */
		memset(t.b, 0, 16);
		if (imm < 16)
			memcpy(t.b + imm, d->b, 16 - imm);
		break;
	default: /* the shifts by an immediate */
		shift(&t, id, imm);
		break;
	}
	*d = t;
}

static enum emul_status unhandled(struct emul_report *rep, const char *why)
{
	snprintf(rep->why, sizeof(rep->why), "%s", why);
	return EMUL_UNHANDLED;
}

static int xmm_index(const cs_x86_op *op)
{
	if (op->type == X86_OP_REG && op->reg >= X86_REG_XMM0 && op->reg <= X86_REG_XMM15)
		return (int)(op->reg - X86_REG_XMM0);
	return -1;
}

enum emul_status emul_do_sse_alu(struct emul_ctx *ctx, struct emul_state *st,
				 const struct insn *in, struct emul_report *rep)
{
	int k = alu_find(in->ci->id), dst, src = -1;
	const cs_x86_op *ops = in->x->operands, *mem = NULL;
	unsigned n = in->x->op_count, imm = 0;
	union xmm d, s;

	if (k < 0)
		return unhandled(rep, "no emulation for this instruction");
	memset(&s, 0, sizeof(s));
	dst = n >= 1 ? xmm_index(&ops[0]) : -1;
	switch (alu_ops[k].shape) {
	case SHAPE_RM:
	case SHAPE_RM_IMM:
		if (n != (alu_ops[k].shape == SHAPE_RM ? 2u : 3u) ||
		    (alu_ops[k].shape == SHAPE_RM_IMM && ops[2].type != X86_OP_IMM))
			return unhandled(rep, "unexpected SSE operands");
		if (alu_ops[k].shape == SHAPE_RM_IMM)
			imm = (unsigned)(ops[2].imm & 0xff);
		if (ops[1].type == X86_OP_MEM)
			mem = &ops[1];
		else if ((src = xmm_index(&ops[1])) < 0)
			dst = -1;
		break;
	case SHAPE_SHIFT:
	case SHAPE_IMM:
		if (n != 2)
			return unhandled(rep, "unexpected SSE operands");
		if (ops[1].type == X86_OP_IMM)
			imm = (unsigned)(ops[1].imm & 0xff);
		else if (alu_ops[k].shape == SHAPE_IMM)
			return unhandled(rep, "unexpected SSE operands");
		else if (ops[1].type == X86_OP_MEM)
			mem = &ops[1];
		else if ((src = xmm_index(&ops[1])) < 0)
			dst = -1;
		break;
	}
	if (dst < 0)
		return unhandled(rep, "MMX register forms are not emulated (no x87 state here)");

	/* As for every legacy SSE instruction: #UD, then #NM (emul_sse.c). */
	if ((st->cr0 & EMUL_CR0_EM) || !(st->cr4 & EMUL_CR4_OSFXSR))
		return emul_raise(st, EMUL_VEC_UD, false, 0);
	if (st->cr0 & EMUL_CR0_TS)
		return emul_raise(st, EMUL_VEC_NM, false, 0);

	if (mem) {
		enum emul_status r;
		uint64_t lin;

		r = emul_mem_linear(st, in, mem, 16, &lin);
		if (r != EMUL_DONE)
			return r;
		if (lin & 15)
			return emul_raise(st, EMUL_VEC_GP, true, 0);
		r = emul_mem_status(emul_mem_read(ctx, st, lin, s.b, 16, EMUL_READ, rep->why,
						  sizeof(rep->why)), rep);
		if (r != EMUL_DONE)
			return r;
	} else if (src >= 0) {
		memcpy(s.b, st->xmm[src], 16);
	}
	memcpy(d.b, st->xmm[dst], 16);
	if (alu_ops[k].shape == SHAPE_SHIFT && ops[1].type != X86_OP_IMM) {
		/* The count is the source's whole low quadword. */
		shift(&d, in->ci->id, s.q[0]);
	} else {
		alu_apply(in->ci->id, &d, &s, imm);
	}
	memcpy(st->xmm[dst], d.b, 16);
	st->xmm_dirty = true;
	emul_advance(st, in);
	return EMUL_DONE;
}
