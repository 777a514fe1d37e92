/* replica_metrics.c: the replication series of cellad's /metrics
 * (Prometheus text, docs/cellad.md "Metrics"; docs/replica.md), one per VM
 * replicated from this host, labelled vm: the lag since the last point's
 * cut, that cut's time, bytes changed and sent, rounds and failures,
 * points taken after a flush, whether it is paused, and the health as a
 * state set (1 for the current one). */
#include "replica_out.h"
#include "mtext.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define mprintf mtext_printf

struct rep_snap {
	char name[VMDEF_NAME_MAX + 1];
	uint64_t lag_ms, rounds, failures, sent, changed, flushed;
	int64_t last_at;
	bool paused;
	const char *health; /* a string constant */
};

enum { S_LAG, S_LAST, S_CHANGED, S_SENT, S_ROUNDS, S_FAILURES, S_FLUSHED, S_PAUSED, S_COUNT };

static const struct {
	const char *name, *type, *help;
} series[S_COUNT] = {
	[S_LAG] = { "cella_replica_lag_seconds", "gauge",
		    "Time since the cut of the last point the target confirmed." },
	[S_LAST] = { "cella_replica_last_point_timestamp_seconds", "gauge",
		     "Wall time of the last confirmed point's cut (0: none yet)." },
	[S_CHANGED] = { "cella_replica_bytes_changed_total", "counter",
			"Bytes of changed blocks the rounds exported." },
	[S_SENT] = { "cella_replica_bytes_sent_total", "counter",
		     "Bytes sent to the target (compressed)." },
	[S_ROUNDS] = { "cella_replica_rounds_total", "counter", "Replication rounds run." },
	[S_FAILURES] = { "cella_replica_failures_total", "counter",
			 "Rounds that made no point (network, target, worker)." },
	[S_FLUSHED] = { "cella_replica_flushed_points_total", "counter",
			"Points taken after the disks were flushed." },
	[S_PAUSED] = { "cella_replica_paused", "gauge",
		       "1 while paused (by an operator, or the target's storage is full)." },
};

static double snap_value(const struct rep_snap *r, unsigned k)
{
	switch (k) {
	case S_LAG: return (double)r->lag_ms / 1000;
	case S_LAST: return (double)r->last_at / 1000;
	case S_CHANGED: return (double)r->changed;
	case S_SENT: return (double)r->sent;
	case S_ROUNDS: return (double)r->rounds;
	case S_FAILURES: return (double)r->failures;
	case S_FLUSHED: return (double)r->flushed;
	default: return r->paused;
	}
}

char *sup_replica_metrics(struct sup *s)
{
	static const char *const healths[] = { "starting", "normal", "warning", "critical" };
	struct rep_snap *snaps = NULL;
	struct mtext t;
	struct rep_out *r;
	unsigned n = 0, cap = 0;

	pthread_mutex_lock(&s->rep_out_lock);
	for (r = s->rep_out; r; r = r->next) {
		struct rep_snap *x;

		if (n == cap) {
			struct rep_snap *ns = realloc(snaps, (cap = cap ? cap * 2 : 8) * sizeof(*ns));

			if (!ns)
				break;
			snaps = ns;
		}
		x = &snaps[n++];
		snprintf(x->name, sizeof(x->name), "%s", r->name);
		x->lag_ms = r->last_cut_ns ? (sup_mono_ns() - r->last_cut_ns) / 1000000u : 0;
		x->rounds = r->rounds;
		x->failures = r->failures;
		x->sent = r->bytes_sent;
		x->changed = r->bytes_changed;
		x->flushed = r->flushed_points;
		x->last_at = r->last_cut_ns ? r->last_point_at : 0;
		x->paused = r->paused || r->target_full;
		x->health = rep_ops_health_locked(r, x->lag_ms);
	}
	pthread_mutex_unlock(&s->rep_out_lock);
	if (!n) {
		free(snaps);
		return NULL;
	}
	mtext_open(&t);
	for (unsigned k = 0; k < S_COUNT; k++) {
		mprintf(&t, "# HELP %s %s\n# TYPE %s %s\n", series[k].name, series[k].help,
			series[k].name, series[k].type);
		for (unsigned i = 0; i < n; i++)
			mprintf(&t, "%s{vm=\"%s\"} %.3f\n", series[k].name, snaps[i].name,
				snap_value(&snaps[i], k));
	}
	mprintf(&t, "# HELP cella_replica_health 1 for the replication's health: warning past "
		    "2x the interval's lag, critical past 6x.\n# TYPE cella_replica_health gauge\n");
	for (unsigned i = 0; i < n; i++)
		for (unsigned h = 0; h < sizeof(healths) / sizeof(healths[0]); h++)
			mprintf(&t, "cella_replica_health{vm=\"%s\",health=\"%s\"} %d\n",
				snaps[i].name, healths[h], !strcmp(healths[h], snaps[i].health));
	free(snaps);
	return mtext_close(&t);
}
