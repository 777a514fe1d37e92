/* fx_test.c: cmocka helpers over the emulation tests' fake CPU (see fx_test.h). */
#include "fx_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>

#include <cmocka.h>

int fxt_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || fx_init(f)) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

int fxt_teardown(void **state)
{
	fx_destroy(*state);
	free(*state);
	return 0;
}

void fxt_put(struct fixture *f, uint64_t lin, const void *src, size_t n)
{
	const uint8_t *s = src;

	for (size_t i = 0; i < n; i++) {
		uint8_t *p = fx_lin(f, lin + i);

		assert_non_null(p);
		*p = s[i];
	}
}

void fxt_get(struct fixture *f, uint64_t lin, void *dst, size_t n)
{
	uint8_t *d = dst;

	for (size_t i = 0; i < n; i++) {
		uint8_t *p = fx_lin(f, lin + i);

		assert_non_null(p);
		d[i] = *p;
	}
}

enum emul_status fxt_run_at(struct fixture *f, uint64_t at, const uint8_t *b, size_t n,
			    struct emul_report *rep)
{
	fxt_put(f, at, b, n);
	f->st.rip = at;
	return emul_step(&f->ctx, &f->st, rep);
}
