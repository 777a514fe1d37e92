/* metrics.c: the pool's series in cellad's /metrics (Prometheus text,
 * docs/cellad.md "Metrics"): hosts by state as this host sees them, this
 * host's lease renewals and their failures, fences, failovers it took,
 * placements on start (made, elsewhere, refused),
 * etcd requests by kind and their errors, whether etcd answers, and watch
 * restarts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_stats.h"
#include "mtext.h"
#include "pool_priv.h"

#define mprintf mtext_printf

static void counter(struct mtext *t, const char *name, const char *help, uint64_t v)
{
	mprintf(t, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
		(unsigned long long)v);
}

char *pool_metrics_text(struct pool *p)
{
	struct etcd_stats *st = p->conf.etcd ? p->conf.etcd->stats : NULL;
	static const char *const states[] = { "up", "maintenance", "isolated", "down" };
	unsigned by_state[4] = { 0 };
	struct mtext t;
	const char *name, *own = pool_own_isolated(p);
	json_t *rec;

	if (!p->etcd)
		return NULL;
	mtext_open(&t);
	pthread_mutex_lock(&p->cache_lock);
	if (own && !json_object_get(p->members, p->host))
		by_state[2]++; /* started while etcd was away: its record unread */
	json_object_foreach(p->members, name, rec) {
		const char *s = json_string_value(json_object_get(rec, "state"));

		if (!strcmp(name, p->host) && own)
			by_state[2]++;
		else if (!json_object_get(p->alive, name))
			by_state[3]++;
		else if (s && !strcmp(s, "maintenance"))
			by_state[1]++;
		else
			by_state[0]++;
	}
	pthread_mutex_unlock(&p->cache_lock);
	mprintf(&t, "# HELP cella_pool_hosts Hosts of the pool by state, as this host sees them.\n"
		    "# TYPE cella_pool_hosts gauge\n");
	for (unsigned i = 0; i < 4; i++)
		mprintf(&t, "cella_pool_hosts{state=\"%s\"} %u\n", states[i], by_state[i]);
	mprintf(&t, "# HELP cella_pool_isolated 1 while this host cannot renew its lease or reach "
		    "etcd.\n# TYPE cella_pool_isolated gauge\ncella_pool_isolated %d\n", own ? 1 : 0);
	counter(&t, "cella_pool_lease_renewals_total", "Lease renewals etcd confirmed.",
		atomic_load(&p->ctr.renewals));
	counter(&t, "cella_pool_lease_renewal_failures_total",
		"Lease renewals that failed (etcd away, or the lease gone).",
		atomic_load(&p->ctr.renew_failures));
	counter(&t, "cella_pool_fences_total", "Times this host fenced its HA VMs.",
		atomic_load(&p->ctr.fences));
	counter(&t, "cella_pool_ride_through_retakes_total",
		"Isolations ridden through past the lease's TTL: ownership taken back.",
		atomic_load(&p->ctr.retakes));
	counter(&t, "cella_pool_failovers_total", "HA VMs this host took over from failed hosts.",
		atomic_load(&p->ctr.failovers));
	counter(&t, "cella_pool_placements_total", "Starts this host placed (as the VM's owner).",
		atomic_load(&p->ctr.placed));
	counter(&t, "cella_pool_placements_elsewhere_total",
		"... of which on another host (the VM handed over).",
		atomic_load(&p->ctr.placed_elsewhere));
	counter(&t, "cella_pool_placement_refusals_total",
		"Starts placement refused (no host could take the VM, or not the one named).",
		atomic_load(&p->ctr.place_refused));
	mprintf(&t, "# HELP cella_etcd_reachable 1 when etcd answered this host's last request.\n"
		    "# TYPE cella_etcd_reachable gauge\ncella_etcd_reachable %d\n",
		etcd_stats_reachable(st) ? 1 : 0);
	{
		uint64_t since = st ? atomic_load(&st->away_since_ms) : 0, now = pool_boot_ms();

		mprintf(&t, "# HELP cella_etcd_unreachable_seconds How long etcd has not answered "
			    "(0 while it does).\n# TYPE cella_etcd_unreachable_seconds gauge\n"
			    "cella_etcd_unreachable_seconds %.3f\n",
			since && now > since ? (double)(now - since) / 1000 : 0.0);
	}
	mprintf(&t, "# HELP cella_etcd_requests_total Requests to etcd by kind.\n"
		    "# TYPE cella_etcd_requests_total counter\n");
	for (int k = 0; k < ETCD_REQ_KINDS; k++)
		mprintf(&t, "cella_etcd_requests_total{kind=\"%s\"} %llu\n", etcd_req_kind_name(k),
			st ? (unsigned long long)atomic_load(&st->requests[k]) : 0ull);
	mprintf(&t, "# HELP cella_etcd_request_errors_total Requests to etcd that failed, by kind.\n"
		    "# TYPE cella_etcd_request_errors_total counter\n");
	for (int k = 0; k < ETCD_REQ_KINDS; k++)
		mprintf(&t, "cella_etcd_request_errors_total{kind=\"%s\"} %llu\n",
			etcd_req_kind_name(k),
			st ? (unsigned long long)atomic_load(&st->errors[k]) : 0ull);
	counter(&t, "cella_etcd_watch_restarts_total",
		"Watch streams that broke and were taken up again.",
		st ? atomic_load(&st->watch_restarts) : 0);
	return mtext_close(&t);
}
