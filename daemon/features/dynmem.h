/* dynmem.h: cellad's dynamic-memory balancer (docs/memory.md, "Dynamic
 * memory"): a thread that, every period, reads the balloon statistics of
 * each running VM with dynamic memory and the host's memory, decides
 * (dynmem_decide.h) and sets balloon (and virtio-mem) targets; its
 * decisions are events (memory-balance) and metrics (cella_dynmem_*). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct sup;
struct dynmem;

/* cellad's "dynmem" configuration object. */
struct dynmem_conf {
	bool enabled;               /* false: no balancer (dynamic_memory is then inert) */
	unsigned period_ms;         /* how often it looks (default 1000) */
	int64_t host_reserve_mib;   /* what the host keeps (-1: 10 % of its memory, 512-4096) */
	double psi_threshold;       /* memory PSI some avg10 (%) taken as pressure (default 10) */
	uint64_t psi_step_mib;      /* memory freed while PSI is over it (default 256) */
	uint64_t min_change_mib;    /* smaller moves are not made (default 8) */
	unsigned shrink_delay_ms;   /* low demand this long before memory is taken (default 5000) */
	char test_host_file[512];   /* tests only: a simulated host (dynmem_priv.h) */
};

/* The defaults, then the members of o (NULL: none). 0, or -1 with err
 * naming the member. */
int dynmem_conf_parse(json_t *o, struct dynmem_conf *c, char *err, size_t len);

/* Start the balancer on s (NULL when disabled or out of resources; it is
 * then simply not there). */
struct dynmem *dynmem_start(struct sup *s, const struct dynmem_conf *c);
void dynmem_stop(struct dynmem *d);

/* For the metrics: the balancer's view of one VM ({target_mib,
 * desired_mib, demand_mib, resident_mib, squeezed, reason, changes}) or
 * NULL; and its Prometheus lines (malloc'ed, NULL when it does not run). */
json_t *dynmem_vm_json(struct sup *s, const char *uuid);
char *dynmem_prometheus(struct sup *s);
