/* emul_priv.h: what emul.c and emul_xsave.c share; not for other users. */
#pragma once
#include <capstone/capstone.h>

#include "arch/x86/emul/emul.h"

enum { MODE16, MODE32, MODE64 };

/* One decoded instruction and what the handlers need to know about it. */
struct insn {
	cs_insn *ci;
	const cs_x86 *x;
	int mode;
	bool lock;        /* F0 prefix seen in the raw bytes */
	unsigned len;
};

/* A general register operand: gpr[] index, width, AH..BH. */
struct reg_desc {
	uint8_t idx, size;
	bool high8; /* AH, CH, DH, BH */
};
/* Capstone register -> gpr[] index and width; false for non-GPRs. */
bool emul_reg_lookup(x86_reg r, struct reg_desc *d);
uint64_t emul_reg_read(const struct emul_state *st, const struct reg_desc *d);
/* Architectural write: 32-bit results zero-extend, 8/16-bit ones merge. */
void emul_reg_write(struct emul_state *st, const struct reg_desc *d, uint64_t v);

/* Raise exception `vector` (with error code ec when has_ec): EMUL_EXCEPTION. */
enum emul_status emul_raise(struct emul_state *st, uint8_t vector, bool has_ec, uint32_t ec);
/* Linear address of memory operand op of `size` bytes, with the segment checks. */
enum emul_status emul_mem_linear(struct emul_state *st, const struct insn *in,
				 const cs_x86_op *op, unsigned size, uint64_t *lin);
/* Status for an emul_mem_read/write result (the report is filled on failure). */
enum emul_status emul_mem_status(int ret, struct emul_report *rep);
/* The instruction's memory operand, or NULL. */
const cs_x86_op *emul_mem_operand(const struct insn *in);
/* Move RIP past the instruction. */
void emul_advance(struct emul_state *st, const struct insn *in);

/* xsave/xsaveopt and xrstor in the standard format (emul_xsave.c). */
enum emul_status emul_do_xsave(struct emul_ctx *ctx, struct emul_state *st,
			       const struct insn *in, struct emul_report *rep);
enum emul_status emul_do_xrstor(struct emul_ctx *ctx, struct emul_state *st,
				const struct insn *in, struct emul_report *rep);
/* SSE register moves and xors, legacy (non-VEX) encodings (emul_sse.c). */
enum emul_status emul_do_sse(struct emul_ctx *ctx, struct emul_state *st,
			     const struct insn *in, struct emul_report *rep);
/* SSE integer and logic operations on XMM registers (emul_sse_alu.c):
 * whether capstone's instruction id is one, and carrying it out. */
bool emul_sse_alu_known(unsigned id);
enum emul_status emul_do_sse_alu(struct emul_ctx *ctx, struct emul_state *st,
				 const struct insn *in, struct emul_report *rep);
