/* fuzz_statefile.c: a state file's header and sections (statefile_check_buffer:
 * framing, checksums, every x86 payload parser), then, when they pass, the
 * device sections loaded into a KVM-less VM with the i8042 and the platform
 * ports. The memory region is outside the input (its size is virtual). */
#include <stddef.h>
#include <stdint.h>

#include "hw/legacy.h"
#include "state/state.h"
#include "state/statefile.h"
#include "vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct statefile_info info;
	struct state_reader r;
	struct vm vm;
	char err[256];

	/* Pretend the file goes on for 64 MiB past the input. */
	if (statefile_check_buffer(data, size, (uint64_t)size + MiB(64), err, sizeof(err)))
		return 0;
	if (statefile_parse_header(data, size, (uint64_t)size + MiB(64), &info, err, sizeof(err)))
		__builtin_trap(); /* check_buffer accepted what parse_header refuses */
	if (vm_create_test(&vm, MiB(2)))
		return 0;
	if (!i8042_create(&vm) && !platform_ports_create(&vm)) {
		state_reader_init(&r, data + info.sections_off, (size_t)info.sections_len);
		(void)!vm_state_load(&vm, &r, info.version);
	}
	vm_destroy(&vm);
	return 0;
}
