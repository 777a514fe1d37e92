/* dynmem.c: the dynamic-memory balancer (dynmem.h, docs/memory.md,
 * "Dynamic memory"). One thread; every period it takes the running VMs
 * with dynamic memory, asks each worker for fresh balloon statistics
 * (balloon-stats, which also returns the last ones), reads the host's
 * memory, lets dm_decide choose and applies the changes through the
 * workers: smaller targets first (they free memory), then larger ones by
 * weight, highest first. The worker's balloon target is the truth about
 * what a VM has, so a cellad that restarts finds the balance as it was. */
#include "dynmem.h"
#include "dynmem_decide.h"
#include "dynmem_priv.h"
#include "sup_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "wctl.h"

#define WORKER_MS 3000

struct dm_entry {
	char uuid[37];
	char name[VMDEF_NAME_MAX + 1];
	pid_t pid;
	uint64_t startup_mib, ceiling_mib;
	uint64_t inflated_mib; /* what the balloon holds now */
	struct dm_vm v;        /* settings, figures and the decision's state */
	unsigned long changes;
	enum dm_reason last_reason;
	/* The guest's statistics are older than the last change until its
	 * stats_updates reaches this: the last good demand holds till then. */
	uint64_t stats_seen, stats_fresh_from;
	bool had_demand;
	uint64_t last_demand_mib, last_free_mib;
	bool ok;               /* the worker answered this period */
};

struct dynmem {
	struct sup *s;
	struct dynmem_conf c;
	pthread_t thread;
	pthread_mutex_t lock; /* everything below (a leaf) */
	pthread_cond_t wake;
	bool stop;
	struct dm_entry *e;
	size_t n;
	struct dm_summary sum;
	int64_t avail_mib;
	double psi;
	bool ran;
};

int dynmem_conf_parse(json_t *o, struct dynmem_conf *c, char *err, size_t len)
{
	const char *key;
	json_t *v;

	*c = (struct dynmem_conf){ .enabled = true, .period_ms = 1000, .host_reserve_mib = -1,
				   .psi_threshold = 10.0, .psi_step_mib = 256,
				   .min_change_mib = 8, .shrink_delay_ms = 5000 };
	if (!o)
		return 0;
	if (!json_is_object(o)) {
		snprintf(err, len, "dynmem: expected an object");
		return -1;
	}
	json_object_foreach(o, key, v) {
		json_int_t n = json_integer_value(v);
		bool isint = json_is_integer(v);

#define RANGE(lo, hi)                                                                             \
	do {                                                                                      \
		if (!isint || n < (lo) || n > (hi)) {                                             \
			snprintf(err, len, "dynmem.%s: expected an integer from %lld to %lld", key,   \
				 (long long)(lo), (long long)(hi));                               \
			return -1;                                                                \
		}                                                                                 \
	} while (0)
		if (!strcmp(key, "enabled")) {
			if (!json_is_boolean(v)) {
				snprintf(err, len, "dynmem.enabled: expected true or false");
				return -1;
			}
			c->enabled = json_is_true(v);
		} else if (!strcmp(key, "period_ms")) {
			RANGE(50, 60000);
			c->period_ms = (unsigned)n;
		} else if (!strcmp(key, "host_reserve_mib")) {
			RANGE(0, 1LL << 30);
			c->host_reserve_mib = n;
		} else if (!strcmp(key, "psi_threshold")) {
			if (!json_is_number(v) || json_number_value(v) <= 0 ||
			    json_number_value(v) > 100) {
				snprintf(err, len, "dynmem.psi_threshold: expected a number above 0, "
					 "at most 100 (%%)");
				return -1;
			}
			c->psi_threshold = json_number_value(v);
		} else if (!strcmp(key, "psi_step_mib")) {
			RANGE(0, 1LL << 30);
			c->psi_step_mib = (uint64_t)n;
		} else if (!strcmp(key, "min_change_mib")) {
			RANGE(1, 1LL << 20);
			c->min_change_mib = (uint64_t)n;
		} else if (!strcmp(key, "shrink_delay_ms")) {
			RANGE(0, 3600000);
			c->shrink_delay_ms = (unsigned)n;
		} else if (!strcmp(key, "test_host_file")) {
			if (!json_is_string(v) || json_string_length(v) >= sizeof(c->test_host_file)) {
				snprintf(err, len, "dynmem.test_host_file: expected a path");
				return -1;
			}
			snprintf(c->test_host_file, sizeof(c->test_host_file), "%s",
				 json_string_value(v));
		} else {
			snprintf(err, len, "dynmem: unknown key '%s' (enabled, period_ms, "
				 "host_reserve_mib, psi_threshold, psi_step_mib, min_change_mib, "
				 "shrink_delay_ms, test_host_file)", key);
			return -1;
		}
#undef RANGE
	}
	return 0;
}

/* A running VM with dynamic memory, as it is when the period begins. */
struct cand {
	struct dm_entry e;
	char ctl[512];
};

static size_t take_candidates(struct dynmem *d, struct cand **out)
{
	size_t nvm, n = 0;
	struct vmrt **all = sup_vm_pin_all(d->s, &nvm);
	struct cand *c = calloc(nvm ? nvm : 1, sizeof(*c));

	for (size_t i = 0; c && i < nvm; i++) {
		struct vmrt *vm = all[i];
		struct dm_entry *e = &c[n].e;

		pthread_mutex_lock(&vm->lock);
		/* Not while an action (a save, a move) works on it. */
		if (!vm->deleted && vm->state == VS_RUNNING && vm->pid && !vm->busy &&
		    vm->def.balloon && vm->def.dynmem.enabled) {
			snprintf(e->uuid, sizeof(e->uuid), "%s", vm->def.uuid);
			snprintf(e->name, sizeof(e->name), "%s", vm->def.name);
			e->pid = vm->pid;
			e->startup_mib = vm->def.memory_mib;
			e->ceiling_mib = vmdef_dynmem_ceiling(&vm->def);
			e->v.min_mib = vmdef_dynmem_min(&vm->def);
			e->v.max_mib = vmdef_dynmem_max(&vm->def);
			e->v.buffer_pct = vm->def.dynmem.buffer_pct;
			e->v.weight = vm->def.dynmem.weight;
			sup_paths(d->s, vm, ".ctl", c[n].ctl, sizeof(c[n].ctl));
			n++;
		}
		pthread_mutex_unlock(&vm->lock);
	}
	sup_vm_unpin_all(d->s, all, nvm);
	*out = c;
	return c ? n : 0;
}

/* Fresh figures from the worker and /proc (no lock held). */
static void measure(struct cand *c)
{
	json_t *req = json_pack("{s:s}", "cmd", "balloon-stats"), *rep = NULL, *b;
	struct dm_entry *e = &c->e;
	uint64_t bt;

	e->ok = false;
	if (wctl_request(c->ctl, req, WORKER_MS, &rep) == 0 &&
	    json_is_true(json_object_get(rep, "ok")) &&
	    json_is_object(b = json_object_get(rep, "balloon"))) {
		bt = (uint64_t)json_integer_value(json_object_get(b, "target_mib"));
		e->inflated_mib = (uint64_t)json_integer_value(json_object_get(b, "inflated_bytes")) >> 20;
		e->v.target_mib = e->startup_mib - (bt < e->startup_mib ? bt : e->startup_mib);
		e->v.have_demand = dynmem_guest_demand(b, e->startup_mib, &e->v.demand_mib,
						       &e->v.free_mib);
		e->stats_seen = (uint64_t)json_integer_value(json_object_get(b, "stats_updates"));
		e->v.resident_mib = dynmem_worker_resident_mib(e->pid);
		e->ok = true;
	}
	json_decref(req);
	json_decref(rep);
}

/* Set the VM's memory to mib: the balloon up to the startup memory,
 * virtio-mem above it where the VM can grow. 0 or -1 (logged). */
static int apply_target(const struct cand *c, uint64_t mib)
{
	const struct dm_entry *e = &c->e;
	uint64_t balloon = mib < e->startup_mib ? e->startup_mib - mib : 0;
	json_t *req = json_pack("{s:s, s:I}", "cmd", "balloon-set", "target_mib", (json_int_t)balloon);
	json_t *rep = NULL;
	int ret = wctl_request(c->ctl, req, WORKER_MS, &rep);

	if (!ret && !json_is_true(json_object_get(rep, "ok")))
		ret = -EPROTO;
	if (ret)
		log_warn("vm %s: dynamic memory: balloon-set %llu MiB failed: %s", e->name,
			 (unsigned long long)balloon,
			 json_string_value(json_object_get(rep, "error")) ?: strerror(-ret));
	json_decref(req);
	json_decref(rep);
	if (!ret && e->ceiling_mib > e->startup_mib) {
		/* Above the startup memory: hot-plugged memory (virtio-mem), in
		 * whole 2 MiB blocks above the startup memory rounded up to them
		 * (the worker's rule, features/vmem.c). */
		uint64_t base = (e->startup_mib + 1) & ~1ULL, plug = 0;

		if (mib > base)
			plug = (mib - base + 1) & ~1ULL;
		if (base + plug > e->ceiling_mib)
			plug = e->ceiling_mib > base ? (e->ceiling_mib - base) & ~1ULL : 0;
		rep = NULL;
		req = json_pack("{s:s, s:I}", "cmd", "virtio-mem-set", "requested_mib",
				(json_int_t)plug);
		ret = wctl_request(c->ctl, req, WORKER_MS, &rep);
		if (!ret && !json_is_true(json_object_get(rep, "ok")))
			ret = -EPROTO;
		if (ret)
			log_warn("vm %s: dynamic memory: virtio-mem-set failed: %s", e->name,
				 json_string_value(json_object_get(rep, "error")) ?: strerror(-ret));
		json_decref(req);
		json_decref(rep);
	}
	return ret ? -1 : 0;
}

static void read_host(struct dynmem *d, const struct cand *c, size_t n, struct dm_host *h)
{
	uint64_t total = 0, sim;
	double psi;

	dynmem_host_read(&h->available_mib, &total, &h->psi_some_avg10);
	if (d->c.test_host_file[0] && dynmem_test_host_read(d->c.test_host_file, &sim, &psi)) {
		int64_t held = 0;

		for (size_t i = 0; i < n; i++)
			held += c[i].e.ok ? (int64_t)c[i].e.v.resident_mib : 0;
		h->available_mib = (int64_t)sim - held;
		h->psi_some_avg10 = psi;
		total = sim;
	}
	if (d->c.host_reserve_mib >= 0) {
		h->reserve_mib = (uint64_t)d->c.host_reserve_mib;
	} else { /* 10 % of the host, 512 MiB to 4 GiB */
		h->reserve_mib = total / 10;
		h->reserve_mib = h->reserve_mib < 512 ? 512 : h->reserve_mib > 4096 ? 4096 : h->reserve_mib;
	}
	if (h->available_mib < 0 && !d->c.test_host_file[0]) /* unknown: no pressure from it */
		h->available_mib = INT64_MAX / 4;
}

static int by_apply_order(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	bool xs = x->e.v.new_target_mib < x->e.v.target_mib;
	bool ys = y->e.v.new_target_mib < y->e.v.target_mib;

	if (xs != ys)
		return xs ? -1 : 1; /* shrinking first: it frees memory */
	if (x->e.v.weight != y->e.v.weight)
		return x->e.v.weight > y->e.v.weight ? -1 : 1;
	return strcmp(x->e.name, y->e.name);
}

static void announce(struct dynmem *d, const struct cand *c)
{
	const struct dm_vm *v = &c->e.v;
	char detail[200];
	json_t *f;

	snprintf(detail, sizeof(detail), "memory %llu -> %llu MiB (%s; demand %llu MiB, weight %u)",
		 (unsigned long long)v->target_mib, (unsigned long long)v->new_target_mib,
		 dm_reason_name(v->reason), (unsigned long long)v->demand_mib, v->weight);
	f = json_pack("{s:I, s:I, s:s, s:I, s:I, s:i, s:b}", "old_target_mib",
		      (json_int_t)v->target_mib, "new_target_mib", (json_int_t)v->new_target_mib,
		      "reason", dm_reason_name(v->reason), "demand_mib", (json_int_t)v->demand_mib,
		      "desired_mib", (json_int_t)v->desired_mib, "weight", (int)v->weight,
		      "host_pressure", d->sum.pressure);
	sup_emit_extra(d->s, c->e.name, "running", "memory-balance", detail, f);
}

static void balance_once(struct dynmem *d, uint64_t now_ms)
{
	struct cand *c = NULL;
	size_t n = take_candidates(d, &c), live = 0;
	struct dm_vm *v;
	struct dm_host h;
	struct dm_summary sum;
	bool was_pressure;

	for (size_t i = 0; i < n; i++)
		measure(&c[i]);
	/* The VMs whose workers answered, with the state of earlier periods. */
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < n; i++) {
		if (!c[i].e.ok)
			continue;
		for (size_t j = 0; j < d->n; j++) {
			if (!strcmp(d->e[j].uuid, c[i].e.uuid) && d->e[j].pid == c[i].e.pid) {
				c[i].e.v.low_since_ms = d->e[j].v.low_since_ms;
				c[i].e.v.squeezed = d->e[j].v.squeezed;
				c[i].e.changes = d->e[j].changes;
				c[i].e.last_reason = d->e[j].last_reason;
				c[i].e.stats_fresh_from = d->e[j].stats_fresh_from;
				/* Above the startup memory the balloon is empty and
				 * the hot-plugged part is what was set last. */
				if (d->e[j].v.target_mib > c[i].e.startup_mib &&
				    c[i].e.v.target_mib == c[i].e.startup_mib)
					c[i].e.v.target_mib = d->e[j].v.target_mib;
				if (c[i].e.stats_seen < c[i].e.stats_fresh_from) {
					/* Figures from before the balloon moved: they
					 * mix old use with the new balloon. */
					c[i].e.v.have_demand = d->e[j].had_demand;
					c[i].e.v.demand_mib = d->e[j].last_demand_mib;
					c[i].e.v.free_mib = d->e[j].last_free_mib;
				}
			}
		}
		if (live != i)
			c[live] = c[i];
		live++;
	}
	pthread_mutex_unlock(&d->lock);
	read_host(d, c, live, &h);
	v = calloc(live ? live : 1, sizeof(*v));
	if (!v) {
		free(c);
		return;
	}
	for (size_t i = 0; i < live; i++)
		v[i] = c[i].e.v;
	dm_decide(&(struct dm_params){ .psi_threshold = d->c.psi_threshold,
				       .psi_step_mib = d->c.psi_step_mib,
				       .min_change_mib = d->c.min_change_mib,
				       .shrink_delay_ms = d->c.shrink_delay_ms },
		  &h, v, live, now_ms, &sum);
	for (size_t i = 0; i < live; i++)
		c[i].e.v = v[i];
	free(v);
	qsort(c, live, sizeof(*c), by_apply_order);
	pthread_mutex_lock(&d->lock);
	was_pressure = d->ran && d->sum.pressure;
	d->sum = sum;
	d->avail_mib = h.available_mib;
	d->psi = h.psi_some_avg10;
	d->ran = true;
	pthread_mutex_unlock(&d->lock);
	if (sum.pressure != was_pressure) {
		char detail[160];

		snprintf(detail, sizeof(detail), "%s: available %lld MiB, reserve %llu MiB, PSI "
			 "some avg10 %.2f; dynamic VMs want %llu MiB, budget %lld MiB",
			 sum.pressure ? "on" : "off", (long long)h.available_mib,
			 (unsigned long long)h.reserve_mib, h.psi_some_avg10,
			 (unsigned long long)sum.desired_mib, (long long)sum.budget_mib);
		sup_emit_named(d->s, "", "", "memory-pressure", detail);
	}
	for (size_t i = 0; i < live; i++) {
		struct dm_entry *e = &c[i].e;

		if (e->v.reason == DM_NONE)
			continue;
		if (apply_target(&c[i], e->v.new_target_mib)) {
			e->v.new_target_mib = e->v.target_mib; /* try again next period */
			continue;
		}
		announce(d, &c[i]);
		/* Our next request is answered after the guest followed. */
		e->stats_fresh_from = e->stats_seen + 2;
		e->changes++;
		e->last_reason = e->v.reason;
		e->v.target_mib = e->v.new_target_mib;
	}
	pthread_mutex_lock(&d->lock);
	free(d->e);
	d->e = calloc(live ? live : 1, sizeof(*d->e));
	d->n = 0;
	for (size_t i = 0; d->e && i < live; i++) {
		c[i].e.had_demand = c[i].e.v.have_demand;
		c[i].e.last_demand_mib = c[i].e.v.demand_mib;
		c[i].e.last_free_mib = c[i].e.v.free_mib;
		d->e[d->n++] = c[i].e;
	}
	pthread_mutex_unlock(&d->lock);
	free(c);
}

static void *dynmem_thread(void *arg)
{
	struct dynmem *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		struct timespec ts;

		pthread_mutex_unlock(&d->lock);
		balance_once(d, sup_mono_ns() / 1000000 + 1);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += d->c.period_ms / 1000;
		ts.tv_nsec += (long)(d->c.period_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&d->lock);
		while (!d->stop && pthread_cond_timedwait(&d->wake, &d->lock, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

struct dynmem *dynmem_start(struct sup *s, const struct dynmem_conf *c)
{
	struct dynmem *d;
	pthread_condattr_t ca;

	if (!c->enabled || !(d = calloc(1, sizeof(*d))))
		return NULL;
	d->s = s;
	d->c = *c;
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&d->thread, NULL, dynmem_thread, d)) {
		pthread_cond_destroy(&d->wake);
		pthread_mutex_destroy(&d->lock);
		free(d);
		return NULL;
	}
	s->dynmem = d;
	log_info("dynamic memory: balancer every %u ms%s", c->period_ms,
		 c->test_host_file[0] ? " (test host file)" : "");
	return d;
}

void dynmem_stop(struct dynmem *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->stop = true;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
	d->s->dynmem = NULL;
	free(d->e);
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static json_t *entry_json(const struct dm_entry *e)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:b, s:b, s:s, s:I, s:I, s:I, s:i, s:i}", "target_mib",
			 (json_int_t)e->v.target_mib, "desired_mib", (json_int_t)e->v.desired_mib,
			 "demand_mib", (json_int_t)e->v.demand_mib, "resident_mib",
			 (json_int_t)e->v.resident_mib, "have_demand", e->v.have_demand,
			 "squeezed", e->v.squeezed, "last_reason", dm_reason_name(e->last_reason),
			 "changes", (json_int_t)e->changes, "minimum_mib", (json_int_t)e->v.min_mib,
			 "maximum_mib", (json_int_t)e->v.max_mib, "weight", (int)e->v.weight,
			 "buffer_pct", (int)e->v.buffer_pct);
}

json_t *dynmem_vm_json(struct sup *s, const char *uuid)
{
	struct dynmem *d = s->dynmem;
	json_t *o = NULL;

	if (!d)
		return NULL;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->n && !o; i++)
		if (!strcmp(d->e[i].uuid, uuid))
			o = entry_json(&d->e[i]);
	pthread_mutex_unlock(&d->lock);
	return o;
}

char *dynmem_prometheus(struct sup *s)
{
	struct dynmem *d = s->dynmem;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	if (!d || !(f = open_memstream(&out, &len)))
		return NULL;
	pthread_mutex_lock(&d->lock);
	fprintf(f, "# HELP cella_dynmem_host_pressure 1 while the balancer sees host memory pressure.\n"
		   "# TYPE cella_dynmem_host_pressure gauge\ncella_dynmem_host_pressure %d\n",
		d->sum.pressure ? 1 : 0);
	fprintf(f, "# HELP cella_dynmem_host_psi_some_avg10 Memory PSI some avg10 (%%; -1 unknown).\n"
		   "# TYPE cella_dynmem_host_psi_some_avg10 gauge\n"
		   "cella_dynmem_host_psi_some_avg10 %.2f\n", d->psi);
	fprintf(f, "# HELP cella_dynmem_host_available_bytes Host memory available (balancer's view).\n"
		   "# TYPE cella_dynmem_host_available_bytes gauge\n"
		   "cella_dynmem_host_available_bytes %lld\n", (long long)d->avail_mib << 20);
	fprintf(f, "# HELP cella_dynmem_budget_bytes Memory the dynamic VMs may have together.\n"
		   "# TYPE cella_dynmem_budget_bytes gauge\ncella_dynmem_budget_bytes %lld\n",
		(long long)d->sum.budget_mib << 20);
	fprintf(f, "# HELP cella_dynmem_shortfall_bytes What the dynamic VMs want beyond the budget.\n"
		   "# TYPE cella_dynmem_shortfall_bytes gauge\ncella_dynmem_shortfall_bytes %llu\n",
		(unsigned long long)d->sum.shortfall_mib << 20);
#define PER_VM(metric, type, help, expr)                                                          \
	fprintf(f, "# HELP cella_dynmem_" metric " " help "\n# TYPE cella_dynmem_" metric " " type "\n"); \
	for (size_t i = 0; i < d->n; i++)                                                         \
		fprintf(f, "cella_dynmem_" metric "{vm=\"%s\"} %llu\n", d->e[i].name,            \
			(unsigned long long)(expr));
	PER_VM("target_bytes", "gauge", "Memory the balancer gives the VM.",
	       d->e[i].v.target_mib << 20)
	PER_VM("actual_bytes", "gauge", "Memory the VM has (startup less what its balloon holds).",
	       (d->e[i].startup_mib - (d->e[i].inflated_mib < d->e[i].startup_mib ?
				       d->e[i].inflated_mib : d->e[i].startup_mib)) << 20)
	PER_VM("desired_bytes", "gauge", "Demand plus buffer, within minimum and maximum.",
	       d->e[i].v.desired_mib << 20)
	PER_VM("demand_bytes", "gauge", "Memory the guest uses (its balloon statistics).",
	       d->e[i].v.demand_mib << 20)
	PER_VM("resident_bytes", "gauge", "Guest memory the host holds for the VM.",
	       d->e[i].v.resident_mib << 20)
	PER_VM("changes_total", "counter", "Targets the balancer set.", d->e[i].changes)
#undef PER_VM
	pthread_mutex_unlock(&d->lock);
	fclose(f);
	return out;
}
