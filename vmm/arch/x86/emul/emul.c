/* emul.c: decode the instruction KVM could not emulate (capstone, detail
 * mode) and carry it out: operand addressing, mode and prefix checks, the
 * exceptions the SDM lists for each handled instruction, and the report for
 * everything else. */
#include "arch/x86/emul/emul_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <capstone/capstone.h>

static const char *const kind_names[EMUL_KIND_COUNT] = {
	[EMUL_KIND_INT3] = "int3",
	[EMUL_KIND_FWAIT] = "fwait",
	[EMUL_KIND_POPCNT] = "popcnt",
	[EMUL_KIND_CLAC] = "clac",
	[EMUL_KIND_STAC] = "stac",
	[EMUL_KIND_LDMXCSR] = "ldmxcsr",
	[EMUL_KIND_STMXCSR] = "stmxcsr",
	[EMUL_KIND_CMPXCHG8B] = "cmpxchg8b",
	[EMUL_KIND_CMPXCHG16B] = "cmpxchg16b",
	[EMUL_KIND_XSAVE] = "xsave",
	[EMUL_KIND_XRSTOR] = "xrstor",
	[EMUL_KIND_SSE] = "sse-move",
	[EMUL_KIND_SSE_ALU] = "sse-alu",
	[EMUL_KIND_MOVZX] = "movzx",
};

const char *emul_kind_name(enum emul_kind kind)
{
	return (unsigned)kind < EMUL_KIND_COUNT ? kind_names[kind] : "?";
}



static uint32_t host_mxcsr_mask(void)
{
	uint8_t area[512] __attribute__((aligned(16)));
	uint32_t mask;

	memset(area, 0, sizeof(area));
	__asm__ volatile("fxsave %0" : "=m"(area));
	memcpy(&mask, area + 28, sizeof(mask));
	/* Zero means the processor predates the field: the default mask. */
	return mask ? mask : 0xffbf;
}

int emul_ctx_init(struct emul_ctx *ctx, const struct guest_mem *mem)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->mem = mem;
	return 0;
}

/* Host facts the handlers need, read on the first emulation rather than at
 * start-up: 60-odd CPUID instructions per vCPU cost ~0.3 ms where CPUID
 * traps to an outer hypervisor, on every VM start, for nothing on hosts that
 * never need the fallback. */
static void ctx_read_host_facts(struct emul_ctx *ctx)
{
	if (ctx->host_facts_ready)
		return;
	ctx->host_facts_ready = true;
	ctx->mxcsr_mask = host_mxcsr_mask();
	for (unsigned i = 2; i < 64; i++) {
		uint32_t a, b, c, d;

		__asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0xd), "c"(i));
		/* ECX bit 0: a supervisor component, never in the standard form. */
		if (a && !(c & 1)) {
			ctx->xsave_size[i] = a;
			ctx->xsave_off[i] = b;
		}
	}
}

void emul_ctx_destroy(struct emul_ctx *ctx)
{
	for (unsigned i = 0; i < ARRAY_SIZE(ctx->cs_handle); i++) {
		if (ctx->cs_handle[i]) {
			csh h = ctx->cs_handle[i];

			ctx->dec.close(&h);
			ctx->cs_handle[i] = 0;
		}
	}
	emul_decoder_unload(&ctx->dec);
}

int emul_ctx_preload(struct emul_ctx *ctx, char *why, size_t whylen)
{
	return emul_decoder_load(&ctx->dec, why, whylen);
}

static int ctx_handle(struct emul_ctx *ctx, int mode, csh *out)
{
	static const cs_mode modes[] = { CS_MODE_16, CS_MODE_32, CS_MODE_64 };
	csh h;

	if (!ctx->cs_handle[mode]) {
		char why[128];

		if (emul_decoder_load(&ctx->dec, why, sizeof(why)))
			return -ENOENT;
		if (ctx->dec.open(CS_ARCH_X86, modes[mode], &h) != CS_ERR_OK)
			return -ENOMEM;
		if (ctx->dec.option(h, CS_OPT_DETAIL, CS_OPT_ON) != CS_ERR_OK) {
			ctx->dec.close(&h);
			return -ENOMEM;
		}
		ctx->cs_handle[mode] = h;
	}
	*out = ctx->cs_handle[mode];
	return 0;
}

/* ---- registers ---- */

/* Capstone register -> gpr[] index and width. false for non-GPRs. */
static bool reg_lookup(x86_reg r, struct reg_desc *d)
{
	static const x86_reg r64[16] = {
		X86_REG_RAX, X86_REG_RCX, X86_REG_RDX, X86_REG_RBX, X86_REG_RSP, X86_REG_RBP,
		X86_REG_RSI, X86_REG_RDI, X86_REG_R8, X86_REG_R9, X86_REG_R10, X86_REG_R11,
		X86_REG_R12, X86_REG_R13, X86_REG_R14, X86_REG_R15 };
	static const x86_reg r32[16] = {
		X86_REG_EAX, X86_REG_ECX, X86_REG_EDX, X86_REG_EBX, X86_REG_ESP, X86_REG_EBP,
		X86_REG_ESI, X86_REG_EDI, X86_REG_R8D, X86_REG_R9D, X86_REG_R10D, X86_REG_R11D,
		X86_REG_R12D, X86_REG_R13D, X86_REG_R14D, X86_REG_R15D };
	static const x86_reg r16[16] = {
		X86_REG_AX, X86_REG_CX, X86_REG_DX, X86_REG_BX, X86_REG_SP, X86_REG_BP,
		X86_REG_SI, X86_REG_DI, X86_REG_R8W, X86_REG_R9W, X86_REG_R10W, X86_REG_R11W,
		X86_REG_R12W, X86_REG_R13W, X86_REG_R14W, X86_REG_R15W };
	static const x86_reg r8[16] = {
		X86_REG_AL, X86_REG_CL, X86_REG_DL, X86_REG_BL, X86_REG_SPL, X86_REG_BPL,
		X86_REG_SIL, X86_REG_DIL, X86_REG_R8B, X86_REG_R9B, X86_REG_R10B, X86_REG_R11B,
		X86_REG_R12B, X86_REG_R13B, X86_REG_R14B, X86_REG_R15B };
	static const x86_reg r8h[4] = { X86_REG_AH, X86_REG_CH, X86_REG_DH, X86_REG_BH };

	for (uint8_t i = 0; i < 16; i++) {
		if (r == r64[i] || r == r32[i] || r == r16[i] || r == r8[i]) {
			d->idx = i;
			d->size = r == r64[i] ? 8 : r == r32[i] ? 4 : r == r16[i] ? 2 : 1;
			d->high8 = false;
			return true;
		}
	}
	for (uint8_t i = 0; i < 4; i++) {
		if (r == r8h[i]) {
			d->idx = i;
			d->size = 1;
			d->high8 = true;
			return true;
		}
	}
	return false;
}

static uint64_t size_mask(unsigned size)
{
	return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

static uint64_t reg_read(const struct emul_state *st, const struct reg_desc *d)
{
	uint64_t v = st->gpr[d->idx];

	return d->high8 ? (v >> 8) & 0xff : v & size_mask(d->size);
}

/* Writes follow the architecture: 32-bit results zero-extend, 8/16-bit merge. */
static void reg_write(struct emul_state *st, const struct reg_desc *d, uint64_t v)
{
	uint64_t *r = &st->gpr[d->idx];

	if (d->high8)
		*r = (*r & ~0xff00ull) | ((v & 0xff) << 8);
	else if (d->size == 8)
		*r = v;
	else if (d->size == 4)
		*r = v & 0xffffffffull;
	else
		*r = (*r & ~size_mask(d->size)) | (v & size_mask(d->size));
}

bool emul_reg_lookup(x86_reg r, struct reg_desc *d)
{
	return reg_lookup(r, d);
}

uint64_t emul_reg_read(const struct emul_state *st, const struct reg_desc *d)
{
	return reg_read(st, d);
}

void emul_reg_write(struct emul_state *st, const struct reg_desc *d, uint64_t v)
{
	reg_write(st, d, v);
}

/* ---- exceptions and memory operands ---- */

enum emul_status emul_raise(struct emul_state *st, uint8_t vector, bool has_ec, uint32_t ec)
{
	st->exc.vector = vector;
	st->exc.has_error_code = has_ec;
	st->exc.error_code = ec;
	return EMUL_EXCEPTION;
}

static bool canonical(uint64_t a, const struct emul_state *st)
{
	unsigned bits = (st->cr4 & EMUL_CR4_LA57) ? 57 : 48;
	int64_t s = (int64_t)(a << (64 - bits)) >> (64 - bits);

	return (uint64_t)s == a;
}

static const struct emul_seg *seg_of(const struct emul_state *st, x86_reg r)
{
	switch (r) {
	case X86_REG_CS: return &st->cs;
	case X86_REG_SS: return &st->ss;
	case X86_REG_ES: return &st->es;
	case X86_REG_FS: return &st->fs;
	case X86_REG_GS: return &st->gs;
	default: return &st->ds;
	}
}

/* Linear address of a memory operand of `size` bytes. EMUL_DONE, or an
 * exception (#GP/#SS for a non-canonical address or a segment limit). */
enum emul_status emul_mem_linear(struct emul_state *st, const struct insn *in,
				   const cs_x86_op *op, unsigned size, uint64_t *lin)
{
	const x86_op_mem *m = &op->mem;
	uint64_t amask = size_mask(in->x->addr_size), ea = (uint64_t)m->disp;
	bool stack = false;
	x86_reg seg = m->segment;
	const struct emul_seg *s;
	struct reg_desc d;

	if (m->base == X86_REG_RIP || m->base == X86_REG_EIP) {
		ea += st->rip + in->len;
	} else if (m->base != X86_REG_INVALID) {
		if (!reg_lookup(m->base, &d))
			return emul_raise(st, EMUL_VEC_UD, false, 0);
		ea += reg_read(st, &d);
		stack = d.idx == EMUL_RSP || d.idx == EMUL_RBP;
	}
	if (m->index != X86_REG_INVALID) {
		if (!reg_lookup(m->index, &d))
			return emul_raise(st, EMUL_VEC_UD, false, 0);
		ea += reg_read(st, &d) * (uint64_t)m->scale;
	}
	ea &= amask;
	if (seg == X86_REG_INVALID)
		seg = stack ? X86_REG_SS : X86_REG_DS;
	s = seg_of(st, seg);
	if (in->mode == MODE64) {
		/* Only FS and GS have a base in 64-bit mode; no limits. */
		*lin = ea + ((seg == X86_REG_FS || seg == X86_REG_GS) ? s->base : 0);
		if (!canonical(*lin, st) || !canonical(*lin + size - 1, st))
			return emul_raise(st, seg == X86_REG_SS ? EMUL_VEC_SS : EMUL_VEC_GP, true, 0);
		return EMUL_DONE;
	}
	if ((st->cr0 & EMUL_CR0_PE) && !(st->rflags & EMUL_RFLAGS_VM) &&
	    (s->unusable || !s->present))
		return emul_raise(st, seg == X86_REG_SS ? EMUL_VEC_SS : EMUL_VEC_GP, true, 0);
	/* Expand-up data segments only; expand-down ones are refused by the limit
	 * check the wrong way round, which is safe (a fault, not a bad access). */
	if (ea + size - 1 > s->limit)
		return emul_raise(st, seg == X86_REG_SS ? EMUL_VEC_SS : EMUL_VEC_GP, true, 0);
	*lin = (s->base + ea) & 0xffffffffull;
	return EMUL_DONE;
}

/* Memory status of emul_mem_* into a step status. */
enum emul_status emul_mem_status(int ret, struct emul_report *rep)
{
	if (ret == 0)
		return EMUL_DONE;
	if (ret == 1)
		return EMUL_EXCEPTION;
	return EMUL_UNHANDLED; /* rep->why says which address */
}

const cs_x86_op *emul_mem_operand(const struct insn *in)
{
	for (unsigned i = 0; i < in->x->op_count; i++)
		if (in->x->operands[i].type == X86_OP_MEM)
			return &in->x->operands[i];
	return NULL;
}

void emul_advance(struct emul_state *st, const struct insn *in)
{
	uint64_t rip = st->rip + in->len;

	st->rip = in->mode == MODE64 ? rip : in->mode == MODE32 ? (rip & 0xffffffffull)
							      : (rip & 0xffffull);
}

/* ---- instructions ---- */

static enum emul_status do_int3(struct emul_state *st, const struct insn *in)
{
	/* A trap: the handler returns to the next instruction. */
	emul_advance(st, in);
	return emul_raise(st, EMUL_VEC_BP, false, 0);
}

static enum emul_status do_fwait(struct emul_state *st, const struct insn *in)
{
	if ((st->cr0 & (EMUL_CR0_MP | EMUL_CR0_TS)) == (EMUL_CR0_MP | EMUL_CR0_TS))
		return emul_raise(st, EMUL_VEC_NM, false, 0);
	/* Pending unmasked x87 exceptions (#MF) are not checked: the guest's
	 * x87 status word lives in KVM's FPU state, and Linux masks them. */
	emul_advance(st, in);
	return EMUL_DONE;
}

static enum emul_status do_popcnt(struct emul_ctx *ctx, struct emul_state *st,
				  const struct insn *in, struct emul_report *rep)
{
	const cs_x86_op *dst = &in->x->operands[0], *src = &in->x->operands[1];
	struct reg_desc d, s;
	uint64_t v = 0;
	unsigned size = dst->size;

	if (in->x->op_count != 2 || dst->type != X86_OP_REG || !reg_lookup(dst->reg, &d) ||
	    d.size < 2) {
		snprintf(rep->why, sizeof(rep->why), "unexpected popcnt operands");
		return EMUL_UNHANDLED;
	}
	size = d.size;
	if (src->type == X86_OP_REG) {
		if (!reg_lookup(src->reg, &s)) {
			snprintf(rep->why, sizeof(rep->why), "unexpected popcnt source");
			return EMUL_UNHANDLED;
		}
		v = reg_read(st, &s);
	} else if (src->type == X86_OP_MEM) {
		uint64_t lin;
		enum emul_status r = emul_mem_linear(st, in, src, size, &lin);

		if (r != EMUL_DONE)
			return r;
		r = emul_mem_status(emul_mem_read(ctx, st, lin, &v, size, EMUL_READ, rep->why,
					     sizeof(rep->why)), rep);
		if (r != EMUL_DONE)
			return r;
		v &= size_mask(size);
	} else {
		return EMUL_UNHANDLED;
	}
	reg_write(st, &d, (uint64_t)__builtin_popcountll(v));
	st->rflags &= ~(EMUL_RFLAGS_CF | EMUL_RFLAGS_PF | EMUL_RFLAGS_AF | EMUL_RFLAGS_ZF |
			EMUL_RFLAGS_SF | EMUL_RFLAGS_OF);
	if (!v)
		st->rflags |= EMUL_RFLAGS_ZF;
	emul_advance(st, in);
	return EMUL_DONE;
}

/* movzx r16/r32/r64, r/m8 or r/m16. KVM runs it itself; the adapter asks
 * for it inside runs of SSE code (emul_kvm.c). */
static enum emul_status do_movzx(struct emul_ctx *ctx, struct emul_state *st,
				 const struct insn *in, struct emul_report *rep)
{
	const cs_x86_op *dst = &in->x->operands[0], *src = &in->x->operands[1];
	struct reg_desc d, s;
	uint64_t v = 0;

	if (in->x->op_count != 2 || dst->type != X86_OP_REG || !reg_lookup(dst->reg, &d) ||
	    (src->size != 1 && src->size != 2)) {
		snprintf(rep->why, sizeof(rep->why), "unexpected movzx operands");
		return EMUL_UNHANDLED;
	}
	if (src->type == X86_OP_REG) {
		if (!reg_lookup(src->reg, &s)) {
			snprintf(rep->why, sizeof(rep->why), "unexpected movzx source");
			return EMUL_UNHANDLED;
		}
		v = reg_read(st, &s);
	} else if (src->type == X86_OP_MEM) {
		uint64_t lin;
		enum emul_status r = emul_mem_linear(st, in, src, src->size, &lin);

		if (r != EMUL_DONE)
			return r;
		r = emul_mem_status(emul_mem_read(ctx, st, lin, &v, src->size, EMUL_READ, rep->why,
						  sizeof(rep->why)), rep);
		if (r != EMUL_DONE)
			return r;
	} else {
		return EMUL_UNHANDLED;
	}
	reg_write(st, &d, v & size_mask(src->size));
	emul_advance(st, in);
	return EMUL_DONE;
}

static enum emul_status do_clac_stac(struct emul_state *st, const struct insn *in, bool set)
{
	if (!(st->cr0 & EMUL_CR0_PE) || (st->rflags & EMUL_RFLAGS_VM) || emul_cpl(st) > 0)
		return emul_raise(st, EMUL_VEC_UD, false, 0);
	if (set)
		st->rflags |= EMUL_RFLAGS_AC;
	else
		st->rflags &= ~EMUL_RFLAGS_AC;
	emul_advance(st, in);
	return EMUL_DONE;
}

static enum emul_status do_mxcsr(struct emul_ctx *ctx, struct emul_state *st,
				 const struct insn *in, bool load, bool vex,
				 struct emul_report *rep)
{
	const cs_x86_op *op = emul_mem_operand(in);
	enum emul_status r;
	uint64_t lin;
	uint32_t v;

	if (!op)
		return emul_raise(st, EMUL_VEC_UD, false, 0);
	if (vex ? !(st->cr4 & EMUL_CR4_OSXSAVE)
		: ((st->cr0 & EMUL_CR0_EM) || !(st->cr4 & EMUL_CR4_OSFXSR)))
		return emul_raise(st, EMUL_VEC_UD, false, 0);
	if (st->cr0 & EMUL_CR0_TS)
		return emul_raise(st, EMUL_VEC_NM, false, 0);
	r = emul_mem_linear(st, in, op, 4, &lin);
	if (r != EMUL_DONE)
		return r;
	if (load) {
		r = emul_mem_status(emul_mem_read(ctx, st, lin, &v, 4, EMUL_READ, rep->why,
					     sizeof(rep->why)), rep);
		if (r != EMUL_DONE)
			return r;
		if (v & ~ctx->mxcsr_mask)
			return emul_raise(st, EMUL_VEC_GP, true, 0);
		st->mxcsr = v;
		st->mxcsr_dirty = true;
	} else {
		v = st->mxcsr;
		r = emul_mem_status(emul_mem_write(ctx, st, lin, &v, 4, rep->why, sizeof(rep->why)),
			       rep);
		if (r != EMUL_DONE)
			return r;
	}
	emul_advance(st, in);
	return EMUL_DONE;
}

static bool host_cmpxchg8(void *p, uint32_t *lo, uint32_t *hi, uint32_t nlo, uint32_t nhi)
{
	bool ok;

	__asm__ volatile("lock cmpxchg8b %1"
			 : "=@ccz"(ok), "+m"(*(volatile uint64_t *)p), "+a"(*lo), "+d"(*hi)
			 : "b"(nlo), "c"(nhi)
			 : "memory");
	return ok;
}

static bool host_cmpxchg16(void *p, uint64_t *lo, uint64_t *hi, uint64_t nlo, uint64_t nhi)
{
	bool ok;

	__asm__ volatile("lock cmpxchg16b %1"
			 : "=@ccz"(ok), "+m"(*(volatile unsigned __int128 *)p), "+a"(*lo), "+d"(*hi)
			 : "b"(nlo), "c"(nhi)
			 : "memory");
	return ok;
}

/* cmpxchg8b/16b. Atomic against the other vCPUs when the operand lies in
 * one page (always for the 16-byte form, which must be aligned); an 8-byte
 * operand that crosses a page is compared and written without atomicity. */
static enum emul_status do_cmpxchg(struct emul_ctx *ctx, struct emul_state *st,
				   const struct insn *in, bool wide, struct emul_report *rep)
{
	const cs_x86_op *op = emul_mem_operand(in);
	unsigned size = wide ? 16 : 8;
	enum emul_status r;
	uint64_t lin, gpa;
	bool equal;
	int ret;

	if (!op)
		return emul_raise(st, EMUL_VEC_UD, false, 0);
	r = emul_mem_linear(st, in, op, size, &lin);
	if (r != EMUL_DONE)
		return r;
	if (wide && (lin & 15))
		return emul_raise(st, EMUL_VEC_GP, true, 0);
	if ((lin & 4095) + size <= 4096) {
		void *p;

		/* The processor always writes the destination: check for a write. */
		ret = emul_translate(ctx, st, lin, EMUL_WRITE, &gpa, rep->why, sizeof(rep->why));
		if (ret)
			return emul_mem_status(ret, rep);
		p = guest_mem_ptr(ctx->mem, gpa, size);
		if (!p) {
			snprintf(rep->why, sizeof(rep->why),
				 "operand at linear 0x%llx (gpa 0x%llx) is outside guest RAM (MMIO?)",
				 (unsigned long long)lin, (unsigned long long)gpa);
			return EMUL_UNHANDLED;
		}
		if (wide) {
			uint64_t lo = st->gpr[EMUL_RAX], hi = st->gpr[EMUL_RDX];

			equal = host_cmpxchg16(p, &lo, &hi, st->gpr[EMUL_RBX], st->gpr[EMUL_RCX]);
			if (!equal) {
				st->gpr[EMUL_RAX] = lo;
				st->gpr[EMUL_RDX] = hi;
			}
		} else {
			uint32_t lo = (uint32_t)st->gpr[EMUL_RAX], hi = (uint32_t)st->gpr[EMUL_RDX];

			equal = host_cmpxchg8(p, &lo, &hi, (uint32_t)st->gpr[EMUL_RBX],
					      (uint32_t)st->gpr[EMUL_RCX]);
			if (!equal) {
				st->gpr[EMUL_RAX] = lo;
				st->gpr[EMUL_RDX] = hi;
			}
		}
		guest_mem_mark_dirty_host(ctx->mem, p, size); /* live migration */
	} else {
		uint32_t cur[2], want[2] = { (uint32_t)st->gpr[EMUL_RAX],
					     (uint32_t)st->gpr[EMUL_RDX] };
		uint32_t repl[2] = { (uint32_t)st->gpr[EMUL_RBX], (uint32_t)st->gpr[EMUL_RCX] };

		/* Translate for writing first, so that a fault leaves nothing changed. */
		ret = emul_mem_read(ctx, st, lin, cur, 8, EMUL_WRITE, rep->why, sizeof(rep->why));
		if (ret)
			return emul_mem_status(ret, rep);
		equal = cur[0] == want[0] && cur[1] == want[1];
		ret = emul_mem_write(ctx, st, lin, equal ? repl : cur, 8, rep->why,
				     sizeof(rep->why));
		if (ret)
			return emul_mem_status(ret, rep);
		if (!equal) {
			st->gpr[EMUL_RAX] = cur[0];
			st->gpr[EMUL_RDX] = cur[1];
		}
	}
	if (equal)
		st->rflags |= EMUL_RFLAGS_ZF;
	else
		st->rflags &= ~EMUL_RFLAGS_ZF;
	emul_advance(st, in);
	return EMUL_DONE;
}

/* ---- decode and dispatch ---- */

static int cpu_mode(const struct emul_state *st)
{
	if (!(st->cr0 & EMUL_CR0_PE) || (st->rflags & EMUL_RFLAGS_VM))
		return MODE16;
	if ((st->efer & EMUL_EFER_LMA) && st->cs.l)
		return MODE64;
	return st->cs.db ? MODE32 : MODE16;
}

/* Legacy prefixes (and REX) before the opcode: capstone keeps only one of
 * LOCK/REP in its prefix[0], so LOCK is looked for in the bytes. */
static bool has_lock_prefix(const uint8_t *b, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		switch (b[i]) {
		case 0xf0:
			return true;
		case 0xf2: case 0xf3: case 0x2e: case 0x36: case 0x3e: case 0x26:
		case 0x64: case 0x65: case 0x66: case 0x67:
			continue;
		default:
			if ((b[i] & 0xf0) == 0x40) /* REX (or inc/dec in 32-bit: no LOCK either) */
				continue;
			return false;
		}
	}
	return false;
}

/* Fetch up to 15 bytes at CS:RIP, stopping quietly at the first page that
 * does not translate. Returns the byte count, or -EFAULT (why filled) when
 * a page is outside RAM. */
static int fetch(struct emul_ctx *ctx, struct emul_state *st, int mode, uint8_t *buf,
		 struct emul_report *rep)
{
	uint64_t lin = mode == MODE64 ? st->rip : ((st->cs.base + st->rip) & 0xffffffffull);
	unsigned got = 0;

	rep->linear = lin;
	while (got < 15) {
		struct emul_state probe = *st;
		unsigned n = (unsigned)MIN(15u - got, 4096 - ((lin + got) & 4095));
		int ret = emul_mem_read(ctx, &probe, lin + got, buf + got, n, EMUL_FETCH,
					rep->why, sizeof(rep->why));

		if (ret == 1)
			break;
		if (ret < 0)
			return got ? (int)got : ret;
		got += n;
	}
	return (int)got;
}

enum emul_status emul_step(struct emul_ctx *ctx, struct emul_state *st, struct emul_report *rep)
{
	struct emul_state saved = *st;
	enum emul_status r = EMUL_UNHANDLED;
	struct insn in = { 0 };
	uint8_t bytes[15];
	const uint8_t *code = bytes;
	size_t code_len;
	uint64_t addr;
	csh h;
	int mode = cpu_mode(st), n;

	ctx_read_host_facts(ctx);
	memset(rep, 0, sizeof(*rep));
	rep->rip = st->rip;
	rep->kind = EMUL_KIND_COUNT;
	rep->vector = -1;
	st->mxcsr_dirty = false;
	st->xsave_dirty = false;
	st->xmm_dirty = false;
	n = fetch(ctx, st, mode, bytes, rep);
	if (n < 0)
		return EMUL_UNHANDLED;
	rep->nbytes = (unsigned)n;
	memcpy(rep->bytes, bytes, (size_t)n);
	if (n == 0) {
		/* The first byte does not translate: the fetch faults. */
		uint64_t gpa;
		int ret = emul_translate(ctx, st, rep->linear, EMUL_FETCH, &gpa, rep->why,
					 sizeof(rep->why));

		if (ret == 1) {
			rep->vector = st->exc.vector;
			return EMUL_EXCEPTION;
		}
		if (!rep->why[0])
			snprintf(rep->why, sizeof(rep->why), "cannot fetch the instruction");
		return EMUL_UNHANDLED;
	}
	if (ctx_handle(ctx, mode, &h)) {
		snprintf(rep->why, sizeof(rep->why), "cannot open the capstone decoder");
		return EMUL_UNHANDLED;
	}
	in.ci = ctx->dec.malloc(h);
	if (!in.ci) {
		snprintf(rep->why, sizeof(rep->why), "out of memory");
		return EMUL_UNHANDLED;
	}
	code_len = (size_t)n;
	addr = st->rip;
	if (!ctx->dec.disasm_iter(h, &code, &code_len, &addr, in.ci)) {
		if (n < 15) {
			/* Decoding needs bytes from a page that does not translate. */
			uint64_t gpa;

			if (emul_translate(ctx, st, rep->linear + (unsigned)n, EMUL_FETCH, &gpa,
					   rep->why, sizeof(rep->why)) == 1) {
				r = EMUL_EXCEPTION;
				goto out;
			}
		}
		snprintf(rep->why, sizeof(rep->why), "the decoder does not know these bytes");
		goto out;
	}
	in.x = &in.ci->detail->x86;
	in.mode = mode;
	in.len = in.ci->size;
	in.lock = has_lock_prefix(bytes, in.len);
	snprintf(rep->mnemonic, sizeof(rep->mnemonic), "%s%s%s", in.ci->mnemonic,
		 in.ci->op_str[0] ? " " : "", in.ci->op_str);

	switch (in.ci->id) {
	case X86_INS_INT3:
		rep->kind = EMUL_KIND_INT3;
		break;
	case X86_INS_WAIT:
		rep->kind = EMUL_KIND_FWAIT;
		break;
	case X86_INS_POPCNT:
		rep->kind = EMUL_KIND_POPCNT;
		break;
	case X86_INS_CLAC:
		rep->kind = EMUL_KIND_CLAC;
		break;
	case X86_INS_STAC:
		rep->kind = EMUL_KIND_STAC;
		break;
	case X86_INS_LDMXCSR:
	case X86_INS_VLDMXCSR:
		rep->kind = EMUL_KIND_LDMXCSR;
		break;
	case X86_INS_STMXCSR:
	case X86_INS_VSTMXCSR:
		rep->kind = EMUL_KIND_STMXCSR;
		break;
	case X86_INS_CMPXCHG8B:
		rep->kind = EMUL_KIND_CMPXCHG8B;
		break;
	case X86_INS_CMPXCHG16B:
		rep->kind = EMUL_KIND_CMPXCHG16B;
		break;
	case X86_INS_XSAVE:
	case X86_INS_XSAVE64:
	case X86_INS_XSAVEOPT:
	case X86_INS_XSAVEOPT64:
		rep->kind = EMUL_KIND_XSAVE;
		break;
	case X86_INS_XRSTOR:
	case X86_INS_XRSTOR64:
		rep->kind = EMUL_KIND_XRSTOR;
		break;
	case X86_INS_MOVD:
	case X86_INS_MOVQ:
	case X86_INS_MOVDQA:
	case X86_INS_MOVDQU:
	case X86_INS_MOVAPS:
	case X86_INS_MOVUPS:
	case X86_INS_MOVAPD:
	case X86_INS_MOVUPD:
	case X86_INS_PXOR:
	case X86_INS_XORPS:
	case X86_INS_XORPD:
		rep->kind = EMUL_KIND_SSE;
		break;
	case X86_INS_MOVZX:
		rep->kind = EMUL_KIND_MOVZX;
		break;
	default:
		if (emul_sse_alu_known(in.ci->id)) {
			rep->kind = EMUL_KIND_SSE_ALU;
			break;
		}
		snprintf(rep->why, sizeof(rep->why), "no emulation for this instruction");
		goto out;
	}
	if (st->only_kinds && !(st->only_kinds & (1u << rep->kind))) {
		snprintf(rep->why, sizeof(rep->why), "not among the kinds asked for");
		goto out;
	}
	if (in.lock && rep->kind != EMUL_KIND_CMPXCHG8B && rep->kind != EMUL_KIND_CMPXCHG16B) {
		r = emul_raise(st, EMUL_VEC_UD, false, 0);
		goto out;
	}
	switch (rep->kind) {
	case EMUL_KIND_INT3:
		r = do_int3(st, &in);
		break;
	case EMUL_KIND_FWAIT:
		r = do_fwait(st, &in);
		break;
	case EMUL_KIND_POPCNT:
		r = do_popcnt(ctx, st, &in, rep);
		break;
	case EMUL_KIND_CLAC:
	case EMUL_KIND_STAC:
		r = do_clac_stac(st, &in, rep->kind == EMUL_KIND_STAC);
		break;
	case EMUL_KIND_LDMXCSR:
	case EMUL_KIND_STMXCSR:
		r = do_mxcsr(ctx, st, &in, rep->kind == EMUL_KIND_LDMXCSR,
			     in.ci->id == X86_INS_VLDMXCSR || in.ci->id == X86_INS_VSTMXCSR, rep);
		break;
	case EMUL_KIND_CMPXCHG8B:
	case EMUL_KIND_CMPXCHG16B:
		r = do_cmpxchg(ctx, st, &in, rep->kind == EMUL_KIND_CMPXCHG16B, rep);
		break;
	case EMUL_KIND_XSAVE:
		r = emul_do_xsave(ctx, st, &in, rep);
		break;
	case EMUL_KIND_XRSTOR:
		r = emul_do_xrstor(ctx, st, &in, rep);
		break;
	case EMUL_KIND_SSE:
		r = emul_do_sse(ctx, st, &in, rep);
		break;
	case EMUL_KIND_SSE_ALU:
		r = emul_do_sse_alu(ctx, st, &in, rep);
		break;
	case EMUL_KIND_MOVZX:
		r = do_movzx(ctx, st, &in, rep);
		break;
	default:
		break;
	}
out:
	if (r == EMUL_UNHANDLED) {
		/* Leave the CPU as it was; only the report carries news. */
		*st = saved;
		if (!rep->why[0])
			snprintf(rep->why, sizeof(rep->why), "not emulated");
	} else if (r == EMUL_EXCEPTION && st->exc.vector != EMUL_VEC_BP) {
		/* A fault: nothing of the instruction happened, but CR2 for #PF. */
		uint64_t cr2 = st->cr2;
		__typeof__(st->exc) exc = st->exc;

		*st = saved;
		st->exc = exc;
		if (exc.vector == EMUL_VEC_PF)
			st->cr2 = cr2;
	}
	rep->vector = r == EMUL_EXCEPTION ? st->exc.vector : -1;
	ctx->dec.free(in.ci, 1);
	return r;
}

void emul_report_format(const struct emul_report *r, char *buf, size_t len)
{
	char hex[15 * 3 + 1] = "";
	size_t off = 0;

	for (unsigned i = 0; i < r->nbytes && i < 15; i++)
		off += (size_t)snprintf(hex + off, sizeof(hex) - off, "%s%02x", i ? " " : "",
					r->bytes[i]);
	snprintf(buf, len, "RIP 0x%llx (linear 0x%llx), bytes [%s]%s%s%s: %s",
		 (unsigned long long)r->rip, (unsigned long long)r->linear,
		 r->nbytes ? hex : "unreadable", r->mnemonic[0] ? " (" : "", r->mnemonic,
		 r->mnemonic[0] ? ")" : "", r->why[0] ? r->why : "not emulated");
}
