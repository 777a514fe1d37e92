/* capstone_x86.c: the decoder module cella-capstone.so, capstone's x86
 * decoder alone, linked from the system's static libcapstone.a.
 *
 * Why: the shared libcapstone.so carries every architecture, and its
 * pointer tables (1.3 MiB of .data.rel.ro, 1 MiB of it M68K's) are written
 * by the dynamic loader's relocations, so every worker that loads it keeps
 * 1.33 MiB of private pages. cs.c reaches the other architectures only
 * through their <arch>_global_init and <arch>_option: defining those here,
 * ahead of the archive, keeps the linker from pulling their objects in, and
 * what is left relocates about 48 KiB. Same capstone, same answers:
 * cs_open of any other architecture fails with CS_ERR_ARCH.
 *
 * The module exports capstone's own cs_* entry points; decoder.c looks them
 * up by name, as in the shared library. */
#include <capstone/capstone.h>
#include <stddef.h>

struct cs_struct;

#define CELLA_NO_ARCH(a)                                                                   \
	cs_err a##_global_init(struct cs_struct *ud);                                      \
	cs_err a##_global_init(struct cs_struct *ud)                                       \
	{                                                                                  \
		(void)ud;                                                                  \
		return CS_ERR_ARCH;                                                        \
	}                                                                                  \
	cs_err a##_option(struct cs_struct *h, cs_opt_type t, size_t v);                   \
	cs_err a##_option(struct cs_struct *h, cs_opt_type t, size_t v)                    \
	{                                                                                  \
		(void)h;                                                                   \
		(void)t;                                                                   \
		(void)v;                                                                   \
		return CS_ERR_ARCH;                                                        \
	}

CELLA_NO_ARCH(AArch64)
CELLA_NO_ARCH(ARM)
CELLA_NO_ARCH(EVM)
CELLA_NO_ARCH(M680X)
CELLA_NO_ARCH(M68K)
CELLA_NO_ARCH(Mips)
CELLA_NO_ARCH(PPC)
CELLA_NO_ARCH(Sparc)
CELLA_NO_ARCH(SystemZ)
CELLA_NO_ARCH(TMS320C64x)
CELLA_NO_ARCH(XCore)

/* What decoder.c looks up: referenced here so that the linker takes cs.o
 * (and through it the x86 objects) from the archive. */
const void *const cella_capstone_entry[] = {
	(const void *)cs_open,	 (const void *)cs_option, (const void *)cs_close,
	(const void *)cs_malloc, (const void *)cs_disasm_iter, (const void *)cs_free,
};
