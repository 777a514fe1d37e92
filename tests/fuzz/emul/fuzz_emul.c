/* fuzz_emul.c: the emulation fallback on arbitrary instruction bytes, CPU
 * modes, control bits, registers, page-table entries and memory contents (the
 * fake CPU of tests/unit/emul/fixture.h). Nothing may crash, read or write
 * outside guest RAM (ASan watches the host side), or change the state on
 * EMUL_UNHANDLED.
 *
 * Input: [0] mode (0: 64-bit, 1: 32-bit paged, 2: 32-bit flat, 3: real),
 * [1] control bits, [2..16] instruction bytes, [17..24] a PTE written over
 * the data page's entry, [25..152] sixteen registers, the rest: data page
 * (its first 256 bytes also XMM0-15).
 * Without control bit 0 (CR0.TS) the state carries an XSAVE image. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../unit/emul/fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fixture *fixture_get(void)
{
	/* One fixture for the process: 8 MiB of guest memory per input would
	 * dominate the run time. Its tables are rewritten for every input. */
	static struct fixture *f;

	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f || fx_init(f))
			abort();
	}
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture *f = fixture_get();
	struct emul_report rep;
	struct emul_state before;
	enum emul_status r;
	uint8_t ctl;

	if (size < 25)
		return 0;
	fx_map(f);
	fx_state_64(&f->st);
	ctl = data[1];
	switch (data[0] & 3) {
	case 1: /* 32-bit protected mode with 2-level paging (CR3 -> the PD page) */
		f->st.efer = 0;
		f->st.cr4 &= ~EMUL_CR4_PAE;
		f->st.cr3 = FX_PD;
		f->st.cs.l = 0;
		f->st.cs.db = 1;
		f->st.cs.limit = f->st.ds.limit = f->st.ss.limit = 0xffffffff;
		break;
	case 2: /* 32-bit flat, paging off */
		f->st.efer = 0;
		f->st.cr0 &= ~EMUL_CR0_PG;
		f->st.cs.l = 0;
		f->st.cs.db = 1;
		f->st.cs.limit = f->st.ds.limit = f->st.ss.limit = 0xfffff;
		break;
	case 3: /* real mode */
		f->st.efer = 0;
		f->st.cr0 = 0;
		f->st.cs.l = 0;
		f->st.cs.base = 0x10000;
		f->st.cs.limit = f->st.ds.limit = f->st.ss.limit = 0xffff;
		f->st.ds.base = 0x20000;
		break;
	default:
		break;
	}
	if (ctl & 1)
		f->st.cr0 |= EMUL_CR0_TS;
	if (ctl & 2)
		f->st.cr4 |= EMUL_CR4_SMAP;
	if (ctl & 4)
		f->st.rflags |= EMUL_RFLAGS_AC;
	if (ctl & 8)
		f->st.ss.dpl = 3;
	if (ctl & 16)
		f->st.cr4 |= EMUL_CR4_LA57;
	if (ctl & 32)
		f->st.fs.base = 0x20000;
	if (!(ctl & 1)) {
		/* An XSAVE image (x87, SSE, AVX), so that xsave/xrstor run. */
		memset(f->xsave, 0, sizeof(f->xsave));
		f->st.xcr0 = 7;
		f->st.xsave = f->xsave;
		f->st.xsave_len = sizeof(f->xsave);
	}
	{
		uint64_t pte;

		memcpy(&pte, data + 17, 8);
		if (ctl & 64)
			fx_pte(f, FX_PT, 0x20, pte);
	}
	for (unsigned i = 0; i < 16 && 25 + (i + 1) * 8 <= size; i++)
		memcpy(&f->st.gpr[i], data + 25 + i * 8, 8);
	/* Pointers into the data pages more often than not. */
	if (!(ctl & 128))
		for (unsigned i = 0; i < 16; i++)
			f->st.gpr[i] = FX_A + (f->st.gpr[i] & 0x1fff);
	if (size > 153) {
		memcpy(guest_mem_ptr(&f->mem, 0x30000, MIN(size - 153, 4096)), data + 153,
		       MIN(size - 153, 4096));
		/* The XMM registers start as the data page's first bytes. */
		memcpy(f->st.xmm, data + 153, MIN(size - 153, sizeof(f->st.xmm)));
	}
	memcpy(guest_mem_ptr(&f->mem, 0x10000 + 0xff8, 15), data + 2, 15);
	f->st.rip = (data[0] & 3) == 3 ? 0xff8 : FX_CODE + 0xff8; /* crosses into 0x11000 */
	before = f->st;
	{
		static uint8_t image_before[4096];

		memcpy(image_before, f->xsave, sizeof(image_before));
		r = emul_step(&f->ctx, &f->st, &rep);
		/* Refused or faulted: registers and the XSAVE image as they were. */
		if (r != EMUL_DONE && memcmp(image_before, f->xsave, sizeof(image_before)))
			abort();
	}
	if (r == EMUL_UNHANDLED && memcmp(&before, &f->st, sizeof(before)))
		abort();
	if (r == EMUL_DONE && f->st.rip == before.rip)
		abort();
	return 0;
}
