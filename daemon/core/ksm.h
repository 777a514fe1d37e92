/* ksm.h: page sharing (KSM) and huge pages as cellad sees them
 * (docs/memory.md): the host's and each worker's KSM counters, KSM turned
 * on when a VM that opted in starts, and the huge-page check before a
 * start. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

#include "cerr.h"
#include "compiler.h"
#include "vmdef.h"

/* The host's KSM state from /sys/kernel/mm/ksm: {run, pages_shared,
 * pages_sharing, pages_unshared, pages_volatile, full_scans,
 * general_profit_bytes, saved_bytes}; {"available": false} without KSM. */
json_t *ksm_host_json(void);
/* One process's KSM counters from /proc/PID/ksm_stat: {merging_pages,
 * rmap_items, zero_pages, profit_bytes, saved_bytes}; zeros when the file
 * cannot be read (no KSM, the process is gone). */
json_t *ksm_proc_json(pid_t pid);
/* Prometheus lines for the host's counters (malloc'ed; NULL without KSM). */
char *ksm_prometheus_host(void);
/* The host's huge pages: {"size_kib", "total", "free"}. */
json_t *hugepages_host_json(void);

/* What a start of d needs from the host, checked and done before the
 * worker is spawned: memory.merge turns KSM on (run 0 -> 1; a failure is
 * logged, the VM starts without sharing); memory.hugepages needs enough
 * free 2 MiB pages (CERR_CAPACITY naming memory.hugepages otherwise). 0 or
 * -1 with e. */
int ksm_prepare_start(const struct vmdef *d, struct cerr *e) __must_check;
