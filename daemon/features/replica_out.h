/* replica_out.h: the source's replication state of one VM (replica_out.c),
 * shared with replica_ops.c (pause, retention by age, consistent points,
 * health) and replica_metrics.c. Fields under s->rep_out_lock unless said. */
#ifndef CELLA_REPLICA_OUT_H
#define CELLA_REPLICA_OUT_H

#include <stdlib.h>
#include <string.h>

#include "sup_priv.h"

#include "cbt.h"

/* Sets are cut at 4 KiB where the worker's in-memory map allows (a random
 * 4 KiB write then sends 4 KiB, not its 64 KiB tracking block); the target
 * must read sets of block size 4096 (this version). */
#define REP_GRAIN CBT_FINE_BLOCK

/* The grain asked of the worker: REP_GRAIN, or 65536 where the test knob
 * CELLA_TEST_REPLICA_GRAIN says so (bench/replica.py --grain compares). */
static inline int rep_grain(void)
{
	const char *v = getenv("CELLA_TEST_REPLICA_GRAIN");

	return v && !strcmp(v, "65536") ? (int)CBT_BLOCK : (int)REP_GRAIN;
}

struct rep_out {
	struct rep_out *next;
	struct sup *s;
	char name[VMDEF_NAME_MAX + 1], uuid[37];
	char to[64];
	uint32_t interval_ms;
	unsigned keep;
	uint64_t max_bandwidth;
	bool zstd;               /* change sets compressed on the wire */
	char last[CBT_NAME_MAX]; /* the point the target confirmed last ("" none: full) */
	unsigned seq;
	pthread_t thread;
	bool stop;
	pthread_cond_t wake;
	/* status */
	char state[16];          /* "starting", "normal", "waiting", "paused", "error" */
	char error[384];
	int64_t last_point_at;   /* wall ms of its cut */
	uint64_t last_cut_ns;    /* monotonic */
	uint64_t rounds, failures, bytes_sent, bytes_changed;
	uint64_t resumes, bytes_skipped, sets_refused; /* replica_xfer_out.c */
	uint64_t full_sets; /* full copies delivered: the first, and resynchronisations */
	uint32_t last_round_ms;
	/* replica_ops.c */
	bool paused;             /* by an operator: no rounds (kept in replica.json) */
	bool kick;               /* a round now (resume) rather than after the interval */
	bool target_full;        /* the target's storage was full (507) at the last round */
	uint32_t keep_for_s;     /* the target's retention by age (0: by count only) */
	uint32_t consistent_every; /* every K-th point after flush-disks (0: never) */
	uint64_t flushed_points; /* points taken after a flush */
	unsigned since_flush;    /* points since the last flushed one */
	bool last_flushed;       /* the last point was taken after a flush */
	char health[12];         /* the health last reported (replica-health events) */
	/* the round in progress (its shipper only) */
	int64_t round_cut_ms;    /* wall ms just before its first cut */
	bool round_flushed;      /* taken after flush-disks */
	bool round_together;     /* every disk cut at one instant (disk-export-group) */
	bool last_together;      /* so was the last point's */
};

/* replica_ops.c. Settings of replica.json this file owns: whether key is one
 * (conf_parse hands it over), its check into r (0, or -1 with e), and their
 * values added to j for conf_save. */
bool rep_ops_conf_key(const char *key);
int rep_ops_conf_parse(struct rep_out *r, const char *key, json_t *v, struct cerr *e) __must_check;
void rep_ops_conf_save(const struct rep_out *r, json_t *j);
/* After conf_parse of an enable request: keep_for without keep keeps up to
 * the most points; the target's create body gets keep_for_s. */
void rep_ops_enable_defaults(struct rep_out *r, json_t *body, json_t *create);
/* At a round's start (no lock): false when it must not run (paused: the
 * status says so); else takes the round's cut time and, every K-th point,
 * flushes the disks first (flush-disks). */
bool rep_ops_round_begin(struct sup *s, struct rep_out *r);
/* The round sends a set an earlier round cut and could not deliver (its
 * spool): the point's cut time and consistency are that round's, kept with
 * the spool, not this one's. Returns the monotonic instant of that cut
 * (round_ns, this round's start, when the spool does not say). */
uint64_t rep_ops_round_spooled(struct sup *s, struct rep_out *r, const char *const *disks,
			       unsigned n, const char *since, const char *point, uint64_t round_ns);
/* The upload's query for this round: "?cut_at=MS&consistency=flushed|crash". */
void rep_ops_upload_query(const struct rep_out *r, char *out, size_t len);
/* At a round's end (rep_out_lock held): ok, or e says why it failed. Sets
 * state/error for a full target ("paused": target storage full). */
void rep_ops_round_end_locked(struct rep_out *r, int ret, const struct cerr *e);
/* The health for the lag (rep_out_lock held): "starting", "normal",
 * "warning" (lag past 2x the interval), "critical" (past 6x, or failing
 * before any point). */
const char *rep_ops_health_locked(const struct rep_out *r, uint64_t lag_ms);
/* The health now, with a replica-health event when it changed (no lock). */
void rep_ops_health_check(struct sup *s, struct rep_out *r);
/* Every disk of the round cut at one instant (the worker's
 * disk-export-group): each disk's spool file (the one ship_disk uses)
 * opened into fds[i] with its export begun, the rest as disk-export. 0, or
 * -1 with e and every fds[i] -1 (nothing cut: export disk by disk). */
int rep_ops_cut_all(struct sup *s, struct rep_out *r, char (*ids)[40], unsigned nr,
		    const char *since, const char *point, uint32_t stall_ms, int *fds,
		    struct cerr *e) __must_check;
/* A disk cut by rep_ops_cut_all that the round will not ship (an earlier
 * disk failed): its export cancelled, fd closed, its spool file removed. */
void rep_ops_cut_drop(struct sup *s, struct rep_out *r, const char *id, int fd);
/* Status fields of replica_ops (rep_out_lock held). */
void rep_ops_status_locked(const struct rep_out *r, json_t *out);

/* replica_out.c, for replica_ops.c: the VM's replication and its settings
 * written (rep_out_lock held), a worker command on the running VM. */
struct rep_out *rep_out_find_locked(struct sup *s, const char *name);
void rep_out_conf_save_locked(struct sup *s, struct rep_out *r);
int rep_out_worker(struct sup *s, struct rep_out *r, json_t *req, const int *fds,
		   unsigned nfds, json_t **reply, struct cerr *e) __must_check;

#endif
