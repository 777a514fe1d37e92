/* fixture.h: a fake x86 CPU for the emulation-fallback tests and fuzz
 * target: 8 MiB of guest RAM with 4-level page tables, and a 64-bit CPL0
 * state. Header-only so that the unit test and the fuzz target share it.
 *
 * Linear layout (4 KiB pages unless said otherwise):
 *   0x10000  code        -> gpa 0x10000
 *   0x11000  code, 2nd   -> gpa 0x60000 (an instruction can cross into it)
 *   0x12000  not present
 *   0x20000  data A      -> gpa 0x30000
 *   0x21000  data B      -> gpa 0x50000 (not contiguous with A)
 *   0x22000  not present
 *   0x23000  read-only   -> gpa 0x70000
 *   0x24000  -> gpa 0xD0000000, outside guest RAM (MMIO)
 *   0x25000  user page   -> gpa 0x80000
 *   0x200000 2 MiB page  -> gpa 0x400000
 *   0x40000000 1 GiB page -> gpa 0
 */
#pragma once
#include <stdint.h>
#include <string.h>

#include "arch/x86/emul/emul.h"
#include "mem.h"

#define FX_PML4 0x1000ull
#define FX_PDPT 0x2000ull
#define FX_PD   0x3000ull
#define FX_PT   0x4000ull
#define FX_CODE 0x10000ull
#define FX_A    0x20000ull
#define FX_B    0x21000ull
#define FX_NP   0x22000ull
#define FX_RO   0x23000ull
#define FX_MMIO 0x24000ull
#define FX_USER 0x25000ull
#define FX_2M   0x200000ull
#define FX_1G   0x40000000ull
#define FX_MEM  (8ull << 20)

struct fixture {
	struct guest_mem mem;
	struct emul_ctx ctx;
	struct emul_state st;
	uint8_t xsave[4096] __attribute__((aligned(64))); /* an XSAVE image, for the fuzzer */
};

static inline void fx_pte(struct fixture *f, uint64_t table, unsigned idx, uint64_t val)
{
	memcpy(guest_mem_ptr(&f->mem, table + idx * 8, 8), &val, 8);
}

static inline void fx_state_64(struct emul_state *st)
{
	memset(st, 0, sizeof(*st));
	st->cr0 = EMUL_CR0_PE | EMUL_CR0_MP | EMUL_CR0_WP | EMUL_CR0_PG;
	st->cr3 = FX_PML4;
	st->cr4 = EMUL_CR4_PAE | EMUL_CR4_OSFXSR | EMUL_CR4_OSXSAVE;
	st->efer = EMUL_EFER_LMA | EMUL_EFER_NXE | (1ull << 8) /* LME */;
	st->rflags = 0x2;
	st->mxcsr = 0x1f80;
	st->cs.l = 1;
	st->cs.present = st->ds.present = st->ss.present = st->es.present = 1;
	st->fs.present = st->gs.present = 1;
	st->cs.selector = 0x10;
	st->ss.selector = 0x18;
	st->rip = FX_CODE;
}

/* (Re)write the fixture's page tables, as the layout above says. */
static inline void fx_map(struct fixture *f)
{
	const uint64_t P = 1, RW = 2, US = 4, PS = 0x80;

	memset(guest_mem_ptr(&f->mem, FX_PML4, 0x4000), 0, 0x4000);
	fx_pte(f, FX_PML4, 0, FX_PDPT | P | RW | US);
	fx_pte(f, FX_PDPT, 0, FX_PD | P | RW | US);
	fx_pte(f, FX_PDPT, 1, 0 | P | RW | PS);           /* 1 GiB at 0x40000000 */
	fx_pte(f, FX_PD, 0, FX_PT | P | RW | US);
	fx_pte(f, FX_PD, 1, 0x400000 | P | RW | PS);      /* 2 MiB at 0x200000 */
	fx_pte(f, FX_PT, 0x10, 0x10000 | P | RW);
	fx_pte(f, FX_PT, 0x11, 0x60000 | P | RW);
	fx_pte(f, FX_PT, 0x20, 0x30000 | P | RW);
	fx_pte(f, FX_PT, 0x21, 0x50000 | P | RW);
	fx_pte(f, FX_PT, 0x23, 0x70000 | P);
	fx_pte(f, FX_PT, 0x24, 0xD0000000ull | P | RW);
	fx_pte(f, FX_PT, 0x25, 0x80000 | P | RW | US);
}

/* Returns 0, or -1 when the memory cannot be set up. */
static inline int fx_init(struct fixture *f)
{
	if (guest_mem_init(&f->mem, FX_MEM))
		return -1;
	if (emul_ctx_init(&f->ctx, &f->mem)) {
		guest_mem_destroy(&f->mem);
		return -1;
	}
	fx_map(f);
	fx_state_64(&f->st);
	return 0;
}

static inline void fx_destroy(struct fixture *f)
{
	emul_ctx_destroy(&f->ctx);
	guest_mem_destroy(&f->mem);
}

/* Host pointer of a linear address in the fixture's mapping. */
static inline uint8_t *fx_lin(struct fixture *f, uint64_t lin)
{
	uint64_t gpa;
	char why[128];
	struct emul_state probe;

	fx_state_64(&probe); /* the test's own view: CPL0, the fixture's tables */

	if (emul_translate(&f->ctx, &probe, lin, EMUL_READ, &gpa, why, sizeof(why)))
		return NULL;
	return guest_mem_ptr(&f->mem, gpa, 1);
}
