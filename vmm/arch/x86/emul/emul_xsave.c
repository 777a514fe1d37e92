/* emul_xsave.c: xsave, xsaveopt and xrstor in the standard format: the
 * components of RFBM between guest memory and the vCPU's XSAVE image, with
 * the checks and exceptions the SDM lists (split from emul.c). */
#include "arch/x86/emul/emul_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define XSAVE_HDR 512
#define XFEAT_X87 1ull
#define XFEAT_SSE 2ull
#define XFEAT_YMM 4ull

/* The byte ranges of component i in the standard format: the x87 state and
 * the XMM registers share the 512-byte legacy region (MXCSR apart). Up to
 * two ranges; returns how many, 0 when the component is unknown. */
static unsigned xcomp_ranges(const struct emul_ctx *ctx, unsigned i, int mode,
			     uint32_t off[2], uint32_t len[2])
{
	switch (i) {
	case 0: /* FCW..FDS (bytes 0-23) and ST0-ST7 (32-159) */
		off[0] = 0, len[0] = 24, off[1] = 32, len[1] = 128;
		return 2;
	case 1: /* XMM0-15 (XMM0-7 outside 64-bit mode) */
		off[0] = 160, len[0] = mode == MODE64 ? 256 : 128;
		return 1;
	default:
		if (i >= 64 || !ctx->xsave_size[i])
			return 0;
		off[0] = ctx->xsave_off[i], len[0] = ctx->xsave_size[i];
		return 1;
	}
}

/* Component i of the image in its initial configuration. */
static void xcomp_init(uint8_t *img, const uint32_t off[2], const uint32_t len[2], unsigned n,
		       unsigned i)
{
	for (unsigned k = 0; k < n; k++)
		memset(img + off[k], 0, len[k]);
	if (i == 0) {
		uint16_t fcw = 0x037f;

		memcpy(img, &fcw, 2); /* FSW, abridged FTW (all empty), FOP, FIP, FDP: 0 */
	}
}

static enum emul_status xsave_checks(const struct emul_ctx *ctx, struct emul_state *st,
				     const struct insn *in, uint64_t *lin, uint64_t *rfbm,
				     struct emul_report *rep)
{
	const cs_x86_op *op = emul_mem_operand(in);
	enum emul_status r;

	if (!op || !(st->cr4 & EMUL_CR4_OSXSAVE))
		return emul_raise(st, EMUL_VEC_UD, false, 0);
	if (st->cr0 & EMUL_CR0_TS)
		return emul_raise(st, EMUL_VEC_NM, false, 0);
	r = emul_mem_linear(st, in, op, XSAVE_HDR + 64, lin);
	if (r != EMUL_DONE)
		return r;
	if (*lin & 63)
		return emul_raise(st, EMUL_VEC_GP, true, 0);
	if (!st->xsave || st->xsave_len < XSAVE_HDR + 64) {
		snprintf(rep->why, sizeof(rep->why), "the vCPU's XSAVE state is not available");
		return EMUL_UNHANDLED;
	}
	*rfbm = st->xcr0 & (((uint64_t)(uint32_t)st->gpr[EMUL_RDX] << 32) |
			    (uint32_t)st->gpr[EMUL_RAX]);
	for (unsigned i = 0; i < 64; i++) {
		uint32_t off[2], len[2];
		unsigned n;

		if (!(*rfbm & (1ull << i)))
			continue;
		n = xcomp_ranges(ctx, i, in->mode, off, len);
		if (!n || off[n - 1] + len[n - 1] > st->xsave_len) {
			snprintf(rep->why, sizeof(rep->why),
				 "XSAVE component %u is not in the vCPU's state image", i);
			return EMUL_UNHANDLED;
		}
	}
	return EMUL_DONE;
}

enum emul_status emul_do_xsave(struct emul_ctx *ctx, struct emul_state *st,
				 const struct insn *in, struct emul_report *rep)
{
	uint64_t lin, rfbm, img_bv, mem_bv;
	enum emul_status r = xsave_checks(ctx, st, in, &lin, &rfbm, rep);
	uint8_t init[4096];

	if (r != EMUL_DONE)
		return r;
	memcpy(&img_bv, st->xsave + XSAVE_HDR, 8);
	/* The header is read first: a fault there must leave memory alone. */
	r = emul_mem_status(emul_mem_read(ctx, st, lin + XSAVE_HDR, &mem_bv, 8, EMUL_WRITE, rep->why,
				     sizeof(rep->why)), rep);
	if (r != EMUL_DONE)
		return r;
	for (unsigned i = 0; i < 64; i++) {
		uint32_t off[2], len[2];
		unsigned n;
		const uint8_t *src = st->xsave;

		if (!(rfbm & (1ull << i)))
			continue;
		n = xcomp_ranges(ctx, i, in->mode, off, len);
		if (!(img_bv & (1ull << i))) {
			/* In its initial configuration: XSAVE writes the initial values. */
			if (off[n - 1] + len[n - 1] > sizeof(init)) {
				snprintf(rep->why, sizeof(rep->why), "XSAVE component %u too large", i);
				return EMUL_UNHANDLED;
			}
			xcomp_init(init, off, len, n, i);
			src = init;
		}
		for (unsigned k = 0; k < n; k++) {
			r = emul_mem_status(emul_mem_write(ctx, st, lin + off[k], src + off[k], len[k],
							   rep->why, sizeof(rep->why)),
				       rep);
			if (r != EMUL_DONE)
				return r;
		}
	}
	if (rfbm & (XFEAT_SSE | XFEAT_YMM)) {
		uint32_t mx[2] = { st->mxcsr, ctx->mxcsr_mask };

		r = emul_mem_status(emul_mem_write(ctx, st, lin + 24, mx, 8, rep->why, sizeof(rep->why)),
			       rep);
		if (r != EMUL_DONE)
			return r;
	}
	mem_bv = (mem_bv & ~rfbm) | (img_bv & rfbm);
	r = emul_mem_status(emul_mem_write(ctx, st, lin + XSAVE_HDR, &mem_bv, 8, rep->why,
				      sizeof(rep->why)), rep);
	if (r != EMUL_DONE)
		return r;
	emul_advance(st, in);
	return EMUL_DONE;
}

enum emul_status emul_do_xrstor(struct emul_ctx *ctx, struct emul_state *st,
				  const struct insn *in, struct emul_report *rep)
{
	uint64_t lin, rfbm, hdr[8], img_bv;
	enum emul_status r = xsave_checks(ctx, st, in, &lin, &rfbm, rep);
	uint32_t mxcsr = st->mxcsr;
	/* Built aside and committed at the end: a fault changes nothing. */
	uint8_t img[8192];

	if (r != EMUL_DONE)
		return r;
	if (st->xsave_len > sizeof(img)) {
		snprintf(rep->why, sizeof(rep->why), "XSAVE image too large");
		return EMUL_UNHANDLED;
	}
	r = emul_mem_status(emul_mem_read(ctx, st, lin + XSAVE_HDR, hdr, sizeof(hdr), EMUL_READ,
				     rep->why, sizeof(rep->why)), rep);
	if (r != EMUL_DONE)
		return r;
	if (hdr[1] & (1ull << 63)) {
		snprintf(rep->why, sizeof(rep->why), "compacted-form XRSTOR is not emulated");
		return EMUL_UNHANDLED;
	}
	/* Standard form: XCOMP_BV and header bytes 16-23 zero, XSTATE_BV within XCR0. */
	if (hdr[1] || hdr[2] || (hdr[0] & ~st->xcr0))
		return emul_raise(st, EMUL_VEC_GP, true, 0);
	if (rfbm & (XFEAT_SSE | XFEAT_YMM)) {
		r = emul_mem_status(emul_mem_read(ctx, st, lin + 24, &mxcsr, 4, EMUL_READ, rep->why,
					     sizeof(rep->why)), rep);
		if (r != EMUL_DONE)
			return r;
		if (mxcsr & ~ctx->mxcsr_mask)
			return emul_raise(st, EMUL_VEC_GP, true, 0);
	}
	memcpy(img, st->xsave, st->xsave_len);
	memcpy(&img_bv, img + XSAVE_HDR, 8);
	for (unsigned i = 0; i < 64; i++) {
		uint32_t off[2], len[2];
		unsigned n;

		if (!(rfbm & (1ull << i)))
			continue;
		n = xcomp_ranges(ctx, i, in->mode, off, len);
		if (!(hdr[0] & (1ull << i))) {
			xcomp_init(img, off, len, n, i);
			continue;
		}
		for (unsigned k = 0; k < n; k++) {
			r = emul_mem_status(emul_mem_read(ctx, st, lin + off[k], img + off[k], len[k],
						     EMUL_READ, rep->why, sizeof(rep->why)),
				       rep);
			if (r != EMUL_DONE)
				return r;
		}
	}
	img_bv = (img_bv & ~rfbm) | (hdr[0] & rfbm);
	memcpy(img + XSAVE_HDR, &img_bv, 8);
	memcpy(img + 24, &mxcsr, 4);
	memcpy(st->xsave, img, st->xsave_len);
	st->xsave_dirty = true;
	if (mxcsr != st->mxcsr) {
		st->mxcsr = mxcsr;
		st->mxcsr_dirty = true;
	}
	emul_advance(st, in);
	return EMUL_DONE;
}
