/* boot_fixture.c: the kernel loader tests' shared fixture (see boot_fixture.h). */
#include "boot_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

int bf_setup_mem(void **state, uint64_t size)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, size))
		return -1;
	f->img = calloc(1, IMG_CAP);
	*state = f;
	return 0;
}

int bf_setup_128m(void **state)
{
	return bf_setup_mem(state, MiB(128));
}

int bf_teardown(void **state)
{
	struct fixture *f = *state;

	guest_mem_destroy(&f->mem);
	free(f->img);
	free(f);
	return 0;
}

const uint8_t *bf_gp(struct fixture *f, uint64_t gpa, uint64_t len)
{
	const uint8_t *p = guest_mem_ptr(&f->mem, gpa, len);

	assert_non_null(p);
	return p;
}

int bf_load(struct fixture *f, const char *kernel, const char *initrd, const char *cmdline)
{
	return x86_load_kernel(&f->mem, kernel, initrd, cmdline, &f->bi, f->err, sizeof(f->err));
}
