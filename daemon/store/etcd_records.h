/* etcd_records.h: the etcd store's values, one JSON object per key
 * (docs/pool.md, "Key layout"): VM definitions, runtime records,
 * checkpoints, peer hosts and jobs, to JSON and back. The values come from
 * a cluster other hosts write too, so reading checks every field and its
 * length (fuzzed: tests/fuzz/daemon/fuzz_etcd.c). */
#pragma once
#include <stdbool.h>

#include <jansson.h>

#include "compiler.h"
#include "store.h"
#include "vmdef.h"

json_t *etcd_rec_vmdef_json(const struct vmdef *d);
/* d: initialised even on failure (vmdef_free it either way); -EINVAL. */
int etcd_rec_vmdef(json_t *j, struct vmdef *d) __must_check;

json_t *etcd_rec_runtime_json(const struct store_runtime *rt);
int etcd_rec_runtime(json_t *j, struct store_runtime *rt) __must_check;

/* A checkpoint in store_cp_list's shape {name, parent (null for a root),
 * kind, created_at, memory, layers}; missing fields get their defaults. */
json_t *etcd_rec_checkpoint(json_t *cp);

/* A peer host {name, url, tls_name} (+ token); NULL if j is not one. */
json_t *etcd_rec_host(json_t *j, bool with_token);

json_t *etcd_rec_job_json(const struct store_job *job);
/* job->data: a new reference (json_decref it). */
int etcd_rec_job(json_t *j, struct store_job *job) __must_check;
