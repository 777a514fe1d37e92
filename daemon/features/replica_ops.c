/* replica_ops.c: running a VM's replication (docs/replica.md, "Operating
 * replication"): pause and resume by an operator (kept in replica.json, so
 * a restarted cellad stays paused), retention by age on the target
 * (keep_for_s, sent with the replica's creation), every K-th point taken
 * after flush-disks and marked so on the target, the health with its
 * replica-health events, and a target whose storage is full: the
 * replication shows "paused" with that reason and each interval tries
 * again, going on by itself once there is room (the target makes no point
 * of a set it cannot store whole). */
#include "replica_out.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "replica_xfer.h"

/* Wall clock milliseconds (sup_now_wall counts seconds). */
static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define KEEP_FOR_MAX_S     (366u * 24 * 3600)
#define CONSISTENT_MAX     1000
#define KEEP_WITH_KEEP_FOR 1000 /* the most points, when only an age is given */

bool rep_ops_conf_key(const char *key)
{
	return !strcmp(key, "paused") || !strcmp(key, "keep_for_s") ||
	       !strcmp(key, "consistent_every") || !strcmp(key, "last_point_at") ||
	       !strcmp(key, "last_flushed");
}

int rep_ops_conf_parse(struct rep_out *r, const char *key, json_t *v, struct cerr *e)
{
	if (!strcmp(key, "last_point_at")) {
		/* A restarted cellad's lag and health go on from the last cut. */
		int64_t ago_ms = wall_ms() - (int64_t)json_integer_value(v);

		if (json_is_integer(v) && json_integer_value(v) > 0 && ago_ms >= 0 &&
		    (uint64_t)ago_ms * 1000000u < sup_mono_ns()) {
			r->last_point_at = (int64_t)json_integer_value(v);
			r->last_cut_ns = sup_mono_ns() - (uint64_t)ago_ms * 1000000u;
		}
	} else if (!strcmp(key, "last_flushed")) {
		r->last_flushed = json_is_true(v);
	} else if (!strcmp(key, "paused")) {
		if (!json_is_boolean(v))
			return cerr_set(e, CERR_INVALID, key, "expected a boolean");
		r->paused = json_is_true(v);
	} else if (!strcmp(key, "keep_for_s")) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > KEEP_FOR_MAX_S)
			return cerr_set(e, CERR_INVALID, key, "seconds of recovery points to keep: 1 "
					"to %u (a year), or 0 to keep by count only", KEEP_FOR_MAX_S);
		r->keep_for_s = (uint32_t)json_integer_value(v);
	} else {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > CONSISTENT_MAX)
			return cerr_set(e, CERR_INVALID, key, "every K-th point after a flush: K from "
					"1 to %d, or 0 for none", CONSISTENT_MAX);
		r->consistent_every = (uint32_t)json_integer_value(v);
	}
	return 0;
}

void rep_ops_conf_save(const struct rep_out *r, json_t *j)
{
	json_object_set_new(j, "paused", json_boolean(r->paused));
	if (r->last_cut_ns)
		json_object_set_new(j, "last_point_at", json_integer(r->last_point_at));
	json_object_set_new(j, "last_flushed", json_boolean(r->last_flushed));
	json_object_set_new(j, "keep_for_s", json_integer(r->keep_for_s));
	json_object_set_new(j, "consistent_every", json_integer(r->consistent_every));
}

void rep_ops_enable_defaults(struct rep_out *r, json_t *body, json_t *create)
{
	if (r->keep_for_s && !json_object_get(body, "keep")) {
		r->keep = KEEP_WITH_KEEP_FOR;
		json_object_set_new(create, "keep", json_integer(r->keep));
	}
	if (r->keep_for_s)
		json_object_set_new(create, "keep_for_s", json_integer(r->keep_for_s));
}

bool rep_ops_round_begin(struct sup *s, struct rep_out *r)
{
	struct cerr e = { 0 };
	json_t *req, *reply = NULL;
	bool flush;

	pthread_mutex_lock(&s->rep_out_lock);
	if (r->paused) {
		snprintf(r->state, sizeof(r->state), "paused");
		r->error[0] = 0;
		pthread_mutex_unlock(&s->rep_out_lock);
		return false;
	}
	flush = r->consistent_every && r->since_flush + 1 >= r->consistent_every;
	pthread_mutex_unlock(&s->rep_out_lock);
	r->round_flushed = false;
	r->round_together = false;
	if (flush) {
		/* The guest's completed writes on stable storage before the cut,
		 * as a production checkpoint does (checkpoint.c). */
		req = json_pack("{s:s}", "cmd", "flush-disks");
		if (!rep_out_worker(s, r, req, NULL, 0, &reply, &e))
			r->round_flushed = true;
		else if (e.kind != CERR_STATE && e.kind != CERR_NOT_FOUND)
			log_warn("vm %s: flush-disks before a consistent point: %s (the point is "
				 "crash-consistent)", r->name, e.reason);
		json_decref(req);
		json_decref(reply);
	}
	r->round_cut_ms = wall_ms();
	return true;
}

uint64_t rep_ops_round_spooled(struct sup *s, struct rep_out *r, const char *const *disks,
			       unsigned n, const char *since, const char *point, uint64_t round_ns)
{
	uint64_t ago_ns;
	int64_t cut_ms;
	bool flushed;

	if (!rep_spool_cut(s, r->uuid, disks, n, since, point, &cut_ms, &flushed) ||
	    cut_ms >= r->round_cut_ms)
		return round_ns;
	ago_ns = (uint64_t)(r->round_cut_ms - cut_ms) * 1000000u;
	r->round_cut_ms = cut_ms;
	r->round_flushed = flushed;
	return ago_ns < round_ns ? round_ns - ago_ns : round_ns;
}

void rep_ops_upload_query(const struct rep_out *r, char *out, size_t len)
{
	snprintf(out, len, "?cut_at=%lld&consistency=%s", (long long)r->round_cut_ms,
		 r->round_flushed ? "flushed" : "crash");
}

void rep_ops_round_end_locked(struct rep_out *r, int ret, const struct cerr *e)
{
	struct sup *s = r->s;
	bool full = ret && e->kind == CERR_NO_SPACE && !strcmp(e->field, "to");

	if (!ret) {
		r->last_point_at = r->round_cut_ms;
		r->last_flushed = r->round_flushed;
		r->last_together = r->round_together;
		if (r->round_flushed) {
			r->flushed_points++;
			r->since_flush = 0;
		} else {
			r->since_flush++;
		}
	}
	if (full) {
		snprintf(r->state, sizeof(r->state), "paused");
		snprintf(r->error, sizeof(r->error), "target storage full: %.300s (tried again every "
			 "interval; no point was made)", e->reason);
	}
	if (full != r->target_full) {
		r->target_full = full;
		/* sup_emit_named takes only the event lock, a leaf. */
		sup_emit_named(s, r->name, "", full ? "replica-paused" : "replica-resumed",
			       full ? "target storage full" : "target storage has room again");
		if (full)
			log_warn("vm %s: replication paused: %s's storage is full", r->name, r->to);
		else
			log_info("vm %s: replication resumed: %s has room again", r->name, r->to);
	}
	if (r->paused) /* paused during the round */
		snprintf(r->state, sizeof(r->state), "paused");
}

const char *rep_ops_health_locked(const struct rep_out *r, uint64_t lag_ms)
{
	/* Hyper-V's health: warning once the lag passes twice the interval. */
	if (!r->last_cut_ns)
		return strcmp(r->state, "error") && !r->target_full ? "starting" : "critical";
	return lag_ms > 6ULL * r->interval_ms ? "critical"
	       : lag_ms > 2ULL * r->interval_ms ? "warning" : "normal";
}

void rep_ops_health_check(struct sup *s, struct rep_out *r)
{
	char old[sizeof(r->health)], detail[64];
	const char *now;

	pthread_mutex_lock(&s->rep_out_lock);
	now = rep_ops_health_locked(r, r->last_cut_ns ? (sup_mono_ns() - r->last_cut_ns) / 1000000u
					: 0);
	snprintf(old, sizeof(old), "%s", r->health);
	snprintf(r->health, sizeof(r->health), "%s", now);
	pthread_mutex_unlock(&s->rep_out_lock);
	if (!old[0] || !strcmp(old, now))
		return;
	snprintf(detail, sizeof(detail), "%s -> %s", old, now);
	sup_emit_named(s, r->name, "", "replica-health", detail);
}

void rep_ops_status_locked(const struct rep_out *r, json_t *out)
{
	json_object_set_new(out, "paused", json_boolean(r->paused || r->target_full));
	if (r->paused) /* also before the shipper's first wake */
		json_object_set_new(out, "state", json_string("paused"));
	if (r->paused || r->target_full)
		json_object_set_new(out, "paused_reason", json_string(r->paused ? "by an operator "
					"(cella replica resume)" : "target storage full"));
	json_object_set_new(out, "keep_for_s", json_integer(r->keep_for_s));
	json_object_set_new(out, "consistent_every", json_integer(r->consistent_every));
	json_object_set_new(out, "flushed_points", json_integer((json_int_t)r->flushed_points));
	if (r->last[0])
		json_object_set_new(out, "last_point_consistency",
				    json_string(r->last_flushed ? "flushed" : "crash"));
	if (r->rounds) /* this cellad shipped it: how its disks were cut */
		json_object_set_new(out, "disks_cut_together", json_boolean(r->last_together));
}

int sup_replica_pause(struct sup *s, const char *name, bool pause, json_t **out, struct cerr *e)
{
	struct rep_out *r;

	*out = NULL;
	pthread_mutex_lock(&s->rep_out_lock);
	r = rep_out_find_locked(s, name);
	if (!r) {
		pthread_mutex_unlock(&s->rep_out_lock);
		return cerr_set(e, CERR_NOT_FOUND, "name", "'%s' is not replicated", name);
	}
	if (r->paused == pause) {
		pthread_mutex_unlock(&s->rep_out_lock);
		return cerr_set(e, CERR_CONFLICT, "", "the replication of '%s' is %s already", name,
				pause ? "paused" : "running (not paused)");
	}
	r->paused = pause;
	if (pause) {
		snprintf(r->state, sizeof(r->state), "paused");
	} else {
		/* A round at once, from the last point the target confirmed. */
		snprintf(r->state, sizeof(r->state), "resuming");
		r->kick = true;
		pthread_cond_broadcast(&r->wake);
	}
	r->error[0] = 0;
	rep_out_conf_save_locked(s, r); /* a restarted cellad stays paused */
	pthread_mutex_unlock(&s->rep_out_lock);
	sup_emit_named(s, name, "", pause ? "replica-paused" : "replica-resumed",
		       pause ? "by an operator" : "by an operator: from the last point");
	return sup_replica_status(s, name, out, e);
}

/* Cutting every disk at once ------------------------------------------------------------ */

#define GROUP_MAX 8 /* the worker's VIRTIO_BLK_GROUP_MAX */

static void spool_path(struct sup *s, struct rep_out *r, const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/vms/%s/replica-%s.set", s->conf.state_dir, r->uuid, id);
}

int rep_ops_cut_all(struct sup *s, struct rep_out *r, char (*ids)[40], unsigned nr,
		    const char *since, const char *point, uint32_t stall_ms, int *fds,
		    struct cerr *e)
{
	json_t *req, *list, *reply = NULL;
	char path[PATH_MAX];
	unsigned i;
	int ret;

	for (i = 0; i < nr; i++)
		fds[i] = -1;
	if (nr < 2 || nr > GROUP_MAX)
		return cerr_set(e, CERR_INVALID, "", "%u disks: cut in turn", nr);
	list = json_array();
	req = json_pack("{s:s, s:o}", "cmd", "disk-export-group", "exports", list);
	for (i = 0; i < nr; i++) {
		json_t *x = json_pack("{s:s, s:s, s:i, s:b, s:i}", "disk", ids[i], "point", point,
				      "fd", (int)i, "deferred_commit", 1, "stall_ms", (int)stall_ms);

		if (since[0])
			json_object_set_new(x, "since", json_string(since));
		json_object_set_new(x, "grain", json_integer(rep_grain())); /* 4 KiB sets */
		if (r->max_bandwidth)
			json_object_set_new(x, "max_bandwidth",
					    json_integer((json_int_t)r->max_bandwidth));
		json_array_append_new(list, x);
		spool_path(s, r, ids[i], path, sizeof(path));
		fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fds[i] < 0) {
			ret = cerr_set(e, CERR_NO_SPACE, "", "cannot make %s: %s", path,
				       strerror(errno));
			goto fail;
		}
	}
	ret = rep_out_worker(s, r, req, fds, nr, &reply, e);
	r->round_together = !ret;
	if (!ret)
		log_debug("vm %s: %u disks cut at one instant for %s (vCPUs held %lld us)", r->name,
			  nr, point, (long long)json_integer_value(json_object_get(reply, "held_us")));
	json_decref(reply);
fail:
	json_decref(req);
	if (ret)
		for (i = 0; i < nr; i++)
			if (fds[i] >= 0) {
				close(fds[i]);
				fds[i] = -1;
				spool_path(s, r, ids[i], path, sizeof(path));
				unlink(path);
			}
	return ret;
}

void rep_ops_cut_drop(struct sup *s, struct rep_out *r, const char *id, int fd)
{
	json_t *req = json_pack("{s:s, s:s}", "cmd", "disk-export-cancel", "disk", id);
	json_t *reply = NULL;
	char path[PATH_MAX];
	struct cerr e = { 0 };

	/* Ended already ("no export is running"): nothing to cancel. */
	if (rep_out_worker(s, r, req, NULL, 0, &reply, &e))
		log_debug("vm %s: disk %s: %s", r->name, id, e.reason);
	json_decref(req);
	json_decref(reply);
	close(fd);
	spool_path(s, r, id, path, sizeof(path));
	unlink(path);
}
