/* replica_ops_in.c: what the target knows of each recovery point beyond its
 * layer (docs/replica.md, "Operating replication"): the instant the source
 * cut it and whether the source flushed the disks first ("flushed") or not
 * ("crash"), sent with each upload and kept in replica.json as
 * point_meta {NAME: {cut_at, consistency}}; and retention by age
 * (keep_for_s): points cut longer ago than that merge into the base, down
 * to the latest point every disk has, which always stays. */
#include "replica_in.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Wall clock milliseconds (sup_now_wall counts seconds). */
static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define KEEP_FOR_MAX_S (366u * 24 * 3600)

bool rep_in_ops_create_key(const char *key)
{
	return !strcmp(key, "keep_for_s");
}

int rep_in_ops_create_check(json_t *body, struct cerr *e)
{
	json_t *v = json_object_get(body, "keep_for_s");

	if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
		  json_integer_value(v) > KEEP_FOR_MAX_S))
		return cerr_set(e, CERR_INVALID, "keep_for_s", "seconds of recovery points to "
				"keep: 1 to %u, or 0 to keep by count only", KEEP_FOR_MAX_S);
	return 0;
}

void rep_in_ops_create_record(json_t *body, json_t *old, json_t *rec)
{
	json_t *v = json_object_get(body, "keep_for_s");

	if (v && json_integer_value(v))
		json_object_set(rec, "keep_for_s", v);
	/* Enabled again: the points there are still what they were. */
	if (old && json_is_object(json_object_get(old, "point_meta")))
		json_object_set(rec, "point_meta", json_object_get(old, "point_meta"));
}

void rep_in_ops_point_json(json_t *rec, json_t *point)
{
	json_t *m = json_object_get(json_object_get(rec, "point_meta"),
				    json_string_value(json_object_get(point, "name")) ?: "");
	json_int_t made_ms = json_integer_value(json_object_get(point, "made_ns")) / 1000000;

	/* Points from before this record: when they were made here. */
	json_object_set_new(point, "cut_at", json_integer(json_integer_value(
				   json_object_get(m, "cut_at")) ?: made_ms));
	json_object_set_new(point, "consistency", json_string(json_string_value(
				   json_object_get(m, "consistency")) ?: "crash"));
}

/* The points of disk id, oldest first, in *pts (to free); -1 with e. */
static int disk_points(struct sup *s, const char *name, const char *id, struct replica **r,
		       struct replica_point **pts, unsigned *n, struct cerr *e)
{
	char err[256] = "out of memory";

	*pts = NULL;
	*n = 0;
	if (rep_in_store_open(s, name, id, r, e))
		return -1;
	if (replica_points(*r, NULL, 0, n, err, sizeof(err)) ||
	    !(*pts = calloc(*n ? *n : 1, sizeof(**pts))) ||
	    replica_points(*r, *pts, *n, n, err, sizeof(err))) {
		free(*pts);
		*pts = NULL;
		replica_close(*r);
		*r = NULL;
		return cerr_set(e, CERR_INTERNAL, "disk", "disk %s: %s", id, err);
	}
	return 0;
}

static int64_t point_cut_ms(json_t *meta, const struct replica_point *p)
{
	json_int_t v = json_integer_value(json_object_get(json_object_get(meta, p->name), "cut_at"));

	return v ? (int64_t)v : p->made_ns / 1000000;
}

/* The latest point every disk has, into latest ("" none); names: every
 * disk's points (an object used as a set). False when a disk's points
 * cannot be read (names is then partial). */
static bool common_latest(struct sup *s, const char *name, json_t *rec, char *latest,
			  size_t len, json_t *names)
{
	json_t *sizes = json_object_get(rec, "disk_sizes"), *v, *common = NULL;
	const char *id;
	unsigned best = 0;

	latest[0] = 0;
	json_object_foreach(sizes, id, v) {
		struct replica_point *pts;
		struct replica *r;
		struct cerr e = { 0 };
		json_t *mine = json_object();
		unsigned n;

		if (disk_points(s, name, id, &r, &pts, &n, &e)) {
			json_decref(mine);
			json_decref(common);
			return false; /* a disk without points: nothing is common */
		}
		for (unsigned i = 0; i < n; i++) {
			json_object_set_new(mine, pts[i].name, json_true());
			json_object_set_new(names, pts[i].name, json_true());
		}
		free(pts);
		replica_close(r);
		if (common) {
			const char *k;
			void *tmp;

			json_object_foreach_safe(common, tmp, k, v)
				if (!json_object_get(mine, k))
					json_object_del(common, k);
			json_decref(mine);
		} else {
			common = mine;
		}
	}
	{
		const char *k;

		/* Names are rNNNNNN: the highest number is the latest. */
		json_object_foreach(common, k, v) {
			unsigned seq;

			if (sscanf(k, "r%u", &seq) == 1 && seq >= best) {
				best = seq;
				snprintf(latest, len, "%s", k);
			}
		}
	}
	json_decref(common);
	return true;
}

/* Retention by age on every disk (rep_lock held): merges counted. */
static unsigned keep_for(struct sup *s, const char *name, json_t *rec, const char *latest)
{
	json_int_t keep_s = json_integer_value(json_object_get(rec, "keep_for_s"));
	json_t *meta = json_object_get(rec, "point_meta"), *sizes, *v;
	int64_t cutoff = wall_ms() - (int64_t)keep_s * 1000;
	unsigned merged = 0;
	const char *id;

	/* A failed-over replica's points are the VM's disks now. */
	if (keep_s <= 0 || !latest[0] ||
	    strcmp(json_string_value(json_object_get(rec, "state")) ?: "replicating", "replicating"))
		return 0;
	sizes = json_object_get(rec, "disk_sizes");
	json_object_foreach(sizes, id, v) {
		for (;;) {
			struct replica_point *pts;
			struct replica *r;
			struct cerr e = { 0 };
			char err[256];
			unsigned n;
			int ret;

			if (disk_points(s, name, id, &r, &pts, &n, &e))
				break;
			/* The base goes when it is older than the cutoff, but never
			 * past the latest point every disk has. */
			ret = n >= 2 && point_cut_ms(meta, &pts[0]) < cutoff &&
			      strcmp(pts[0].name, latest) ? 1 : 0;
			if (ret && (ret = replica_merge_oldest(r, err, sizeof(err)))) {
				if (ret != -EBUSY) /* EBUSY: a test failover reads the base */
					log_warn("replica %s: disk %s: retention: %s", name, id, err);
				ret = 0;
			} else if (ret) {
				merged++;
			}
			free(pts);
			replica_close(r);
			if (!ret)
				break;
		}
	}
	return merged;
}

void sup_replica_in_point_made(struct sup *s, const char *name, const char *point,
			       int64_t cut_at, const char *consistency)
{
	json_t *rec, *meta, *names = json_object(), *v;
	char latest[CBT_NAME_MAX];
	struct cerr e = { 0 };
	const char *k;
	unsigned merged;
	bool all;
	void *tmp;

	if (!point || !names) {
		json_decref(names);
		return;
	}
	if (!consistency || strcmp(consistency, "flushed"))
		consistency = "crash";
	if (cut_at > wall_ms() + 60000) /* a clock far ahead: the time it came */
		cut_at = 0;
	pthread_mutex_lock(&s->rep_lock);
	rec = rep_in_rec_load(s, name, &e);
	if (!rec)
		goto out;
	meta = json_object_get(rec, "point_meta");
	if (!json_is_object(meta)) {
		meta = json_object();
		json_object_set_new(rec, "point_meta", meta);
	}
	if (!json_object_get(meta, point)) /* the first disk's upload says it */
		json_object_set_new(meta, point, json_pack("{s:I, s:s}", "cut_at",
				    (json_int_t)(cut_at > 0 ? cut_at : wall_ms()),
				    "consistency", consistency));
	all = common_latest(s, name, rec, latest, sizeof(latest), names);
	merged = keep_for(s, name, rec, latest);
	if (merged) { /* the names again: merged points are gone */
		json_decref(names);
		names = json_object();
		all = names && common_latest(s, name, rec, latest, sizeof(latest), names);
	}
	/* Forget points no disk has any more (merged away, dropped). */
	if (all)
		json_object_foreach_safe(meta, tmp, k, v)
			if (!json_object_get(names, k) && strcmp(k, point))
				json_object_del(meta, k);
	if (rep_in_rec_save(s, name, rec, &e))
		log_warn("replica %s: point %s: %s", name, point, e.reason);
	if (merged)
		log_info("replica %s: %u merges of points older than %llds", name, merged,
			 (long long)json_integer_value(json_object_get(rec, "keep_for_s")));
out:
	pthread_mutex_unlock(&s->rep_lock);
	json_decref(rec);
	json_decref(names);
}
