/* fuzz_pool_cache.c: the local cache file a pool member reads at start
 * when etcd is away (daemon/store/etcd_cache.c), on arbitrary bytes: what
 * is accepted dumps and parses back to the same entries. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "etcd_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *vms = NULL, *again = NULL;
	unsigned skipped = 0, skipped2 = 0;
	char *s;

	if (etcd_cache_parse((const char *)data, size, "/cella/p", "h1", &vms, &skipped))
		return 0;
	s = etcd_cache_dump("/cella/p", "h1", vms);
	if (!s)
		abort();
	if (etcd_cache_parse(s, strlen(s), "/cella/p", "h1", &again, &skipped2) || skipped2 ||
	    !json_equal(vms, again))
		abort(); /* what we write, we read back whole */
	free(s);
	json_decref(vms);
	json_decref(again);
	return 0;
}
