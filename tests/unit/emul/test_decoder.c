/* test_decoder.c: which capstone the emulation fallback loads. With
 * CELLA_DECODER_MODULE naming the x86-only module (set by meson where the
 * module is built), emul_decoder_load takes that file, the module decodes
 * x86 in all three modes with operand details, answers CS_ERR_ARCH for the
 * architectures it leaves out, and costs few private pages; a module path
 * that does not load is an error, not a quiet fallback. */
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/emul/emul.h"

static void test_decodes_x86(void **state)
{
	static const uint8_t add[] = { 0x01, 0xc8 }; /* add eax, ecx (ax, cx in 16-bit) */
	static const cs_mode modes[] = { CS_MODE_16, CS_MODE_32, CS_MODE_64 };
	struct emul_decoder d = { 0 };
	char why[160] = "";

	(void)state;
	assert_int_equal(emul_decoder_load(&d, why, sizeof(why)), 0);
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
		const uint8_t *code = add;
		size_t len = sizeof(add);
		uint64_t addr = 0x1000;
		cs_insn *in;
		csh h;

		assert_int_equal(d.open(CS_ARCH_X86, modes[i], &h), CS_ERR_OK);
		assert_int_equal(d.option(h, CS_OPT_DETAIL, CS_OPT_ON), CS_ERR_OK);
		in = d.malloc(h);
		assert_non_null(in);
		if (!d.disasm_iter(h, &code, &len, &addr, in))
			fail_msg("mode %zu: not decoded", i);
		assert_int_equal(in->id, X86_INS_ADD);
		assert_int_equal(in->size, 2);
		assert_int_equal(in->detail->x86.op_count, 2);
		assert_int_equal(in->detail->x86.operands[1].type, X86_OP_REG);
		d.free(in, 1);
		assert_int_equal(d.close(&h), CS_ERR_OK);
	}
	emul_decoder_unload(&d);
}

static void test_module_is_loaded(void **state)
{
	const char *want = getenv("CELLA_DECODER_MODULE");
	struct emul_decoder d = { 0 };
	char why[160] = "";
	Dl_info info;
	csh h;

	(void)state;
	if (!want || !*want) {
		print_message("SKIP: no decoder module built (no static libcapstone 4)\n");
		skip();
	}
	assert_int_equal(emul_decoder_load(&d, why, sizeof(why)), 0);
	assert_true(dladdr((void *)d.open, &info));
	assert_string_equal(info.dli_fname, want);
	/* The other architectures are left out of the module. */
	assert_int_equal(d.open(CS_ARCH_ARM, CS_MODE_ARM, &h), CS_ERR_ARCH);
	assert_int_equal(d.open(CS_ARCH_M68K, CS_MODE_BIG_ENDIAN, &h), CS_ERR_ARCH);
	emul_decoder_unload(&d);
}

static void test_bad_module_path(void **state)
{
	const char *saved = getenv("CELLA_DECODER_MODULE");
	char *keep = saved ? strdup(saved) : NULL;
	struct emul_decoder d = { 0 };
	char why[160] = "";

	(void)state;
	setenv("CELLA_DECODER_MODULE", "/nonexistent/cella-capstone.so", 1);
	assert_int_equal(emul_decoder_load(&d, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "decoder module"));
	assert_null(d.lib);
	if (keep)
		setenv("CELLA_DECODER_MODULE", keep, 1);
	else
		unsetenv("CELLA_DECODER_MODULE");
	free(keep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decodes_x86),
		cmocka_unit_test(test_module_is_loaded),
		cmocka_unit_test(test_bad_module_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
