/* fuzz_portpol.c: a NIC's port policy (daemon/net/portpol.c) on arbitrary
 * bytes: parse, show, and parse what it showed (it must be accepted). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "portpol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	struct cerr e = { 0 };
	struct port_policy *p;

	if (!j)
		return 0;
	p = portpol_parse(j, &e);
	json_decref(j);
	if (p) {
		json_t *shown = portpol_json(p);
		struct port_policy *again = portpol_parse(shown, &e);

		if (!again)
			abort(); /* what it shows must read back */
		portpol_free(again);
		json_decref(shown);
		portpol_free(p);
	}
	return 0;
}
