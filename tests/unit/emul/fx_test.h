/* fx_test.h: cmocka helpers over the fake CPU of fixture.h, shared by the
 * emulation-fallback unit tests (test_emul.c, test_emul_sse.c); kept out of
 * fixture.h, which the fuzz target includes without cmocka. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "fixture.h"

/* cmocka setup and teardown of a struct fixture. */
int fxt_setup(void **state);
int fxt_teardown(void **state);
/* Copy bytes to or from the fixture's linear addresses (the test fails on
 * an unmapped one). */
void fxt_put(struct fixture *f, uint64_t lin, const void *src, size_t n);
void fxt_get(struct fixture *f, uint64_t lin, void *dst, size_t n);
/* Place the instruction at `at`, point RIP at it and run one step. */
enum emul_status fxt_run_at(struct fixture *f, uint64_t at, const uint8_t *b, size_t n,
			    struct emul_report *rep);

/* Run the instruction bytes given at FX_CODE. */
#define RUN(f, rep, ...)                                                        \
	({                                                                      \
		static const uint8_t b_[] = { __VA_ARGS__ };                    \
		fxt_run_at((f), FX_CODE, b_, sizeof(b_), (rep));                \
	})
