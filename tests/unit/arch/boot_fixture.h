/* boot_fixture.h: the fixture shared by the kernel loader tests
 * (test_boot.c, test_boot32.c): guest memory of a chosen size, an image
 * buffer to build kernels in, and x86_load_kernel's results. */
#pragma once
#include <stdint.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

#define IMG_CAP (256 * 1024)

struct fixture {
	struct guest_mem mem;
	uint8_t *img; /* IMG_CAP bytes */
	char err[256];
	struct x86_boot_info bi;
};

/* cmocka setup with `size` bytes of guest memory; -1 if it cannot be had. */
int bf_setup_mem(void **state, uint64_t size);
int bf_setup_128m(void **state);
int bf_teardown(void **state);
/* Guest memory at `gpa` (the test fails if the range is outside it). */
const uint8_t *bf_gp(struct fixture *f, uint64_t gpa, uint64_t len);
/* x86_load_kernel into the fixture (its error in f->err). */
int bf_load(struct fixture *f, const char *kernel, const char *initrd, const char *cmdline);
