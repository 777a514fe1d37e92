/* fuzz_config.c: the JSON VM configuration parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config c;
	char err[256];

	config_init(&c);
	if (config_load_json_text(&c, (const char *)data, size, err, sizeof(err)) == 0 &&
	    config_validate(&c, err, sizeof(err)) != 0)
		err[0] = '\0'; /* invalid configurations are an expected outcome */
	config_free(&c);
	return 0;
}
