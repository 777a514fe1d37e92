/* fuzz_standby.c: a standby worker's request line (vmm/standby_req.c) on
 * arbitrary bytes: the JSON array of a restore's arguments, or the object
 * with it and the numbers of its descriptors. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
		/* an object's numbers: in range, each once, kvm_fd's used by the args */
		if (sb.nr_fds < 0 || sb.nr_fds > STANDBY_FDS_MAX || (sb.nr_fds && !sb.fd_to))
			__builtin_trap();
		for (int i = 0; i < sb.nr_fds; i++) {
			if (sb.fd_to[i] < 0 || sb.fd_to[i] > STANDBY_FD_TOP || sb.fd_to[i] == sb.kvm_to)
				__builtin_trap();
			for (int k = 0; k < i; k++)
				if (sb.fd_to[k] == sb.fd_to[i])
					__builtin_trap();
		}
		if (sb.kvm_to >= 0) {
			char want[32];
			const char *v = standby_kvm_value(sb.argv, sb.argc);

			snprintf(want, sizeof(want), "fd:%d", sb.kvm_to);
			if (sb.kvm_to > STANDBY_FD_TOP || !v || strcmp(v, want))
				__builtin_trap();
		}
	}
	standby_free(&sb);
	return 0;
}
