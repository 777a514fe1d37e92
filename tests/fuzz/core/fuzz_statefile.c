/* fuzz_statefile.c: a state file's header and sections (statefile_check_buffer:
 * framing, checksums, every x86 payload parser), then, when they pass, the
 * device sections loaded into a KVM-less VM with the i8042 and the platform
 * ports. The memory region is outside the input (its size is virtual).
 * The "mem-order" record's parser also gets the raw input (byte 0 picks the
 * RAM size). */
#include <stddef.h>
#include <stdint.h>

#include "hw/legacy.h"
#include "state/memorder.h"
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

	/* The mem-order record's parser on its own as well: in a file it sits
	 * behind a section checksum. RAM of 2 MiB << (first byte % 8). */
	if (size >= 1) {
		struct mem_order o;

		if (!mem_order_parse(data + 1, size - 1, MiB(2) << (data[0] % 8), &o, err,
				     sizeof(err))) {
			if (o.nr_runs && (!o.runs || !o.pages))
				__builtin_trap(); /* accepted runs must be there and count */
			mem_order_free(&o);
		}
	}
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
