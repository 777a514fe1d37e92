/* emul.h: the instruction-emulation fallback. When KVM's own emulator gives
 * up on a guest instruction (KVM_EXIT_INTERNAL_ERROR, emulation failure),
 * the VMM decodes it with capstone and carries it out here: int3 (inject
 * #BP), fwait (skip), popcnt, clac/stac, ldmxcsr/stmxcsr (and their VEX
 * forms), cmpxchg8b/cmpxchg16b, xsave/xsaveopt/xrstor in the standard
 * (non-compacted) form, and the SSE register moves (movd/movq between
 * general registers, memory and XMM; movdqa/movdqu/movaps/movups/movapd/
 * movupd; pxor/xorps/xorpd) in their legacy encodings, and the SSE
 * integer operations Linux's ring-0 SIMD code uses (padd/psub, and/andn/or,
 * pcmpeq, unpacks, pshufd/pshufb/palignr, shifts: emul_sse_alu.c).
 * Anything else is refused with a report.
 *
 * The CPU is a plain struct (struct emul_state) so that the library runs
 * without KVM: the unit tests fill it by hand, the KVM adapter
 * (emul_kvm_handle) fills it from KVM_GET_REGS/SREGS/FPU. Guest memory is
 * reached by linear address: the library walks the guest's page tables
 * (32-bit, PAE, 4- and 5-level; 4 KiB/2-4 MiB/1 GiB pages), honours the
 * present, writable, user, NX bits and SMAP/SMEP, sets accessed/dirty bits,
 * and touches each physical piece through guest_mem_ptr(), so operands that
 * cross a page are handled and memory outside guest RAM is refused.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "mem.h"

#include <capstone/capstone.h>

/* What was emulated, for statistics. */
enum emul_kind {
	EMUL_KIND_INT3,
	EMUL_KIND_FWAIT,
	EMUL_KIND_POPCNT,
	EMUL_KIND_CLAC,
	EMUL_KIND_STAC,
	EMUL_KIND_LDMXCSR,
	EMUL_KIND_STMXCSR,
	EMUL_KIND_CMPXCHG8B,
	EMUL_KIND_CMPXCHG16B,
	EMUL_KIND_XSAVE,   /* xsave, xsaveopt (standard form) */
	EMUL_KIND_XRSTOR,  /* xrstor (standard form) */
	EMUL_KIND_SSE,     /* SSE register moves and xors ("sse-move") */
	EMUL_KIND_SSE_ALU, /* SSE integer/logic operations, shuffles, shifts ("sse-alu") */
	EMUL_KIND_MOVZX,   /* movzx: KVM runs it; emulated only inside a run of SSE
			    * instructions (table-driven SIMD code indexes with it) */
	EMUL_KIND_COUNT
};
/* "int3", "popcnt", ... */
const char *emul_kind_name(enum emul_kind kind);

/* Segment as KVM describes it (struct kvm_segment): byte-granular limit. */
struct emul_seg {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type, present, dpl, db, s, l, g, unusable;
};

/* Indices of gpr[], the hardware register numbers. */
enum { EMUL_RAX, EMUL_RCX, EMUL_RDX, EMUL_RBX, EMUL_RSP, EMUL_RBP, EMUL_RSI, EMUL_RDI };

/* Architectural bits the library reads or writes. */
#define EMUL_RFLAGS_CF (1ull << 0)
#define EMUL_RFLAGS_PF (1ull << 2)
#define EMUL_RFLAGS_AF (1ull << 4)
#define EMUL_RFLAGS_ZF (1ull << 6)
#define EMUL_RFLAGS_SF (1ull << 7)
#define EMUL_RFLAGS_OF (1ull << 11)
#define EMUL_RFLAGS_VM (1ull << 17)
#define EMUL_RFLAGS_AC (1ull << 18)
#define EMUL_CR0_PE (1ull << 0)
#define EMUL_CR0_MP (1ull << 1)
#define EMUL_CR0_EM (1ull << 2)
#define EMUL_CR0_TS (1ull << 3)
#define EMUL_CR0_WP (1ull << 16)
#define EMUL_CR0_PG (1ull << 31)
#define EMUL_CR4_PSE (1ull << 4)
#define EMUL_CR4_PAE (1ull << 5)
#define EMUL_CR4_OSFXSR (1ull << 9)
#define EMUL_CR4_LA57 (1ull << 12)
#define EMUL_CR4_OSXSAVE (1ull << 18)
#define EMUL_CR4_SMEP (1ull << 20)
#define EMUL_CR4_SMAP (1ull << 21)
#define EMUL_EFER_LMA (1ull << 10)
#define EMUL_EFER_NXE (1ull << 11)

/* Exception vectors the library raises. */
#define EMUL_VEC_BP 3
#define EMUL_VEC_UD 6
#define EMUL_VEC_NM 7
#define EMUL_VEC_GP 13
#define EMUL_VEC_SS 12
#define EMUL_VEC_PF 14

struct emul_state {
	uint64_t gpr[16];
	uint64_t rip, rflags;
	uint64_t cr0, cr2, cr3, cr4, efer;
	struct emul_seg cs, ds, es, fs, gs, ss;
	uint32_t mxcsr;
	/* Extended state: XCR0 and the vCPU's XSAVE image in the standard
	 * format (what KVM_GET_XSAVE returns), or xsave == NULL when unknown (the
	 * XSAVE family is then refused). MXCSR above is the image's when both
	 * are given; emul_step keeps them in step. */
	uint64_t xcr0;
	uint8_t *xsave;
	size_t xsave_len;
	bool xsave_dirty; /* output: the image changed (the adapter writes it back) */
	/* Output: the exception to deliver, when emul_step returns EMUL_EXCEPTION.
	 * For #PF, cr2 has been set too. */
	struct {
		uint8_t vector;
		bool has_error_code;
		uint32_t error_code;
	} exc;
	bool mxcsr_dirty; /* output: mxcsr changed (the adapter writes the FPU back) */
	/* XMM0-15 (low 128 bits, little-endian bytes): the adapter fills them
	 * from the XSAVE image (zeros when its XSTATE_BV says SSE is in its
	 * initial state) or KVM_GET_FPU. xmm_dirty (output): an SSE move
	 * changed one, the adapter writes them back. */
	uint8_t xmm[16][16];
	bool xmm_dirty;
	/* Input: when non-zero, only instructions of these kinds (bit
	 * 1 << enum emul_kind) are carried out; others give EMUL_UNHANDLED
	 * with nothing changed (the adapter's runs of SSE instructions). */
	uint32_t only_kinds;
};

/* Result of one emulation step. */
enum emul_status {
	EMUL_DONE,      /* retired: registers, RIP, memory updated */
	EMUL_EXCEPTION, /* deliver state->exc (RIP is the faulting one, or after
			 * int3 for #BP, which is a trap) */
	EMUL_UNHANDLED, /* not emulated: state and memory untouched, report filled */
};

/* What the VMM logs when it cannot go on. */
struct emul_report {
	uint64_t rip;          /* as the guest sees it (not CS-relative) */
	uint64_t linear;       /* CS.base + RIP */
	uint8_t bytes[15];
	unsigned nbytes;       /* how many bytes could be fetched */
	char mnemonic[200];    /* decoder's text, "" when it does not know the bytes */
	char why[128];
	enum emul_kind kind;   /* valid after EMUL_DONE / EMUL_EXCEPTION */
	int vector;            /* the exception raised (EMUL_EXCEPTION), else -1 */
	unsigned retired;      /* emul_kvm_handle: instructions carried out (a run
				* of SSE instructions counts each) */
};
/* "RIP 0x... bytes 0f 01 ca ... (clac): why" into buf. */
void emul_report_format(const struct emul_report *r, char *buf, size_t len);

/* The capstone entry points (decoder.c loads the library on demand). */
struct emul_decoder {
	void *lib;
	cs_err (*open)(cs_arch arch, cs_mode mode, csh *handle);
	cs_err (*option)(csh handle, cs_opt_type type, size_t value);
	cs_err (*close)(csh *handle);
	cs_insn *(*malloc)(csh handle);
	bool (*disasm_iter)(csh handle, const uint8_t **code, size_t *size, uint64_t *address,
			    cs_insn *insn);
	void (*free)(cs_insn *insn, size_t count);
};
/* Load capstone (once). Returns 0, or -ENOENT with the reason in why. */
int emul_decoder_load(struct emul_decoder *d, char *why, size_t whylen) __must_check;
void emul_decoder_unload(struct emul_decoder *d);

/* Per-vCPU context: the decoder handles (capstone handles are not shared
 * between threads) and the memory it works on. */
struct emul_ctx {
	struct emul_decoder dec;
	size_t cs_handle[3]; /* 16-, 32-, 64-bit decoders; 0 = not opened yet */
	const struct guest_mem *mem;
	bool host_facts_ready; /* the two fields below were read (first emul_step) */
	uint32_t mxcsr_mask;  /* bits LDMXCSR accepts (from the host's FXSAVE) */
	/* Standard-format offset and size of XSAVE components 2..63 (CPUID 0xD,
	 * which the guest shares with the host wherever these instructions need
	 * emulating). 0 = unknown component. */
	uint32_t xsave_off[64], xsave_size[64];
};
int emul_ctx_init(struct emul_ctx *ctx, const struct guest_mem *mem) __must_check;
void emul_ctx_destroy(struct emul_ctx *ctx);
/* Load the decoder now (e.g. before a sandbox hides the library). */
int emul_ctx_preload(struct emul_ctx *ctx, char *why, size_t whylen) __must_check;

/* Decode the instruction at CS:RIP and carry it out on *st and guest memory. */
enum emul_status emul_step(struct emul_ctx *ctx, struct emul_state *st, struct emul_report *rep);

/* Memory by linear address, as the instruction at CPL cpl would access it
 * (the page walk of emul_mmu.c). Return 0; 1 when an exception was raised
 * (st->exc filled; nothing written); -EFAULT when a physical piece is not
 * guest RAM (why filled). Writes translate every piece before copying. */
enum emul_access { EMUL_READ = 0, EMUL_WRITE = 1, EMUL_FETCH = 2 };
int emul_mem_read(const struct emul_ctx *ctx, struct emul_state *st, uint64_t lin, void *buf,
		  size_t len, enum emul_access acc, char *why, size_t whylen) __must_check;
int emul_mem_write(const struct emul_ctx *ctx, struct emul_state *st, uint64_t lin,
		   const void *buf, size_t len, char *why, size_t whylen) __must_check;
/* Translate one linear address to a guest-physical one. Same
 * return convention. Sets accessed (and for writes dirty) bits. */
int emul_translate(const struct emul_ctx *ctx, struct emul_state *st, uint64_t lin,
		   enum emul_access acc, uint64_t *gpa, char *why, size_t whylen) __must_check;
/* CPL of the state: CS.dpl in protected mode, 3 in virtual-8086, 0 in real mode. */
unsigned emul_cpl(const struct emul_state *st);

/* KVM adapter: handle the emulation failure that just ended KVM_RUN on
 * vcpu_fd. Reads the registers, emulates, writes back, injects the exception
 * if one was raised. After an SSE instruction it goes on with the SSE
 * instructions (and movzx, which SIMD code interleaves to index its tables)
 * that follow it, up to EMUL_KVM_RUN_MAX, stopping before any other
 * instruction or a fault, since KVM would fail on each SSE one in turn: one
 * exit and one register round trip for a run of SIMD code. Returns the status; -errno (as a negative int, with
 * rep->why filled) if an ioctl failed. */
int emul_kvm_handle(struct emul_ctx *ctx, int vcpu_fd, struct emul_report *rep) __must_check;
#define EMUL_KVM_RUN_MAX 128
