/* etcd_cache.h: this host's part of the etcd store kept in a local file
 * (state_dir/pool-cache.json), so that a cellad that starts while etcd is
 * unreachable loads its own VMs and re-adopts their workers
 * (docs/pool.md, "When etcd is away"). The file:
 *   {"cella_pool_cache": 1, "prefix": P, "host": H,
 *    "vms": {UUID: {"vm": <P/vms/UUID's record>, "runtime": <record>|null}}}
 * in the order the VMs were defined. Written whole (temporary file, fsync,
 * rename) whenever this host's VM definitions or runtime records change or
 * are read from etcd. Read back at start: parsed like untrusted input
 * (fuzzed: tests/fuzz/daemon/fuzz_pool_cache.c). */
#pragma once
#include <stddef.h>

#include <jansson.h>

#include "compiler.h"

#define ETCD_CACHE_VERSION 1
#define ETCD_CACHE_MAX (64u << 20) /* bytes: a file larger than this is refused */

/* Parse a cache file's bytes for prefix and host: *vms (a new object UUID
 * -> {"vm", "runtime"}) holds the entries that are whole (a definition
 * whose uuid is its key, a runtime record or null); the others are left
 * out and counted in *skipped. 0, or -EINVAL (not a cache, another
 * version, another pool or host) with *vms NULL. */
int etcd_cache_parse(const char *buf, size_t len, const char *prefix, const char *host,
		     json_t **vms, unsigned *skipped) __must_check;
/* The file's text for vms (malloc'd), or NULL. */
char *etcd_cache_dump(const char *prefix, const char *host, json_t *vms);
