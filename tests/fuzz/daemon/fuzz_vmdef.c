/* fuzz_vmdef.c: cellad's VM definitions (the API's POST /v1/vms and PATCH
 * bodies) on arbitrary bytes: parse, show, copy, and patch a valid one. */
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "vmdef.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	struct vmdef d, base, copy;
	struct cerr e = { 0 };
	bool limits = false;

	if (!body)
		return 0;
	if (vmdef_from_json(&d, body, &e) == 0) {
		json_t *shown = vmdef_to_json(&d);

		json_decref(shown);
		if (vmdef_copy(&copy, &d) == 0)
			vmdef_free(&copy);
	}
	vmdef_free(&d);
	/* The same bytes as a change of a small valid definition. */
	{
		json_t *b = json_pack("{s:s, s:s}", "name", "fz", "kernel", "/proc/self/exe");

		if (vmdef_from_json(&base, b, &e) == 0 &&
		    vmdef_patch(&base, body, false, &limits, &e))
			e.kind = CERR_NONE; /* a refused change is an expected outcome */
		vmdef_free(&base);
		json_decref(b);
	}
	json_decref(body);
	return 0;
}
