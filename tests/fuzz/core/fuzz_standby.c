/* fuzz_standby.c: a standby worker's request line (vmm/standby_req.c) on
 * arbitrary bytes: the JSON array of a restore's arguments. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "standby.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct standby sb;
	char err[256];

	memset(&sb, 0, sizeof(sb));
	if (standby_parse_request((const char *)data, size, "cella-vm", size & 1 ? "fd:3" : NULL,
				  &sb, err, sizeof(err)) == 0) {
		/* argv is NULL-terminated, argv[0] the worker's own */
		if (!sb.argv || sb.argc < 2 || sb.argv[sb.argc] || strcmp(sb.argv[0], "cella-vm"))
			__builtin_trap();
	}
	standby_free(&sb);
	return 0;
}
