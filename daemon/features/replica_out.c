/* replica_out.c: the source's side of replication (docs/replica.md). A
 * replicated VM has state_dir/vms/UUID/replica.json (the target host, the
 * interval, the retention, the last point the target confirmed) and a
 * shipper thread: every interval, while the VM runs, each disk's changes
 * since that point go to the target as one change set:
 *
 *   disk-export since=LAST point=NEXT deferred_commit (into a spool file
 *   handed to the sandboxed worker), the export waited for, the file
 *   uploaded to the target over HTTPS with mutual TLS (peer.c), and
 *   disk-export-commit once the target answers that NEXT is a point.
 *
 * A failure anywhere sends the same changes again at the next round, since
 * the same LAST (its tracking point still holds them); a target that says
 * its latest point is another one (a lost answer, a retried set) is
 * followed from its latest point when this disk's tracking has it, and
 * from a full copy when not. State under s->rep_out_lock; each shipper owns
 * its round. */
#include "replica_out.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "peer.h"
#include "replica.h"
#include "replica_priv.h"
#include "replica_xfer.h"

#define REP_INTERVAL_DEF_MS 5000
#define REP_INTERVAL_MIN_MS 1000
#define REP_INTERVAL_MAX_MS (24 * 3600 * 1000)
#define REP_KEEP_DEF        24
#define REP_CTL_MS          10000
#define REP_STALL_MS        30000
#define REP_PEER_TIMEOUT_S  600
#define REP_ZSTD_LEVEL      3

/* The settings file ---------------------------------------------------------------------- */

static int conf_path(struct sup *s, const char *uuid, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/vms/%s/replica.json", s->conf.state_dir, uuid);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Under rep_out_lock: the shipper and pause/resume both write it. */
static void conf_save_locked(struct sup *s, struct rep_out *r)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	json_t *j = json_pack("{s:s, s:i, s:i, s:I, s:s, s:s, s:i}", "to", r->to, "interval_ms",
			      (int)r->interval_ms, "keep", (int)r->keep, "max_bandwidth",
			      (json_int_t)r->max_bandwidth, "compression", r->zstd ? "zstd" : "none",
			      "last", r->last, "seq", (int)r->seq);

	rep_ops_conf_save(r, j);
	if (conf_path(s, r->uuid, path, sizeof(path)))
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (json_dump_file(j, tmp, JSON_INDENT(1)) || rename(tmp, path)) {
		log_warn("vm %s: cannot write %s: %s", r->name, path, strerror(errno));
		unlink(tmp);
	}
	json_decref(j);
}

static void conf_save(struct sup *s, struct rep_out *r)
{
	pthread_mutex_lock(&s->rep_out_lock);
	conf_save_locked(s, r);
	pthread_mutex_unlock(&s->rep_out_lock);
}

static int conf_parse(json_t *j, struct rep_out *r, struct cerr *e)
{
	json_t *v;
	const char *k;

	json_object_foreach(j, k, v) {
		if (rep_ops_conf_key(k)) {
			if (rep_ops_conf_parse(r, k, v, e))
				return -1;
		} else if (!strcmp(k, "to")) {
			if (!json_is_string(v) || !json_string_length(v) ||
			    json_string_length(v) >= sizeof(r->to))
				return cerr_set(e, CERR_INVALID, k, "the host to replicate to "
						"(cella host list)");
			snprintf(r->to, sizeof(r->to), "%s", json_string_value(v));
		} else if (!strcmp(k, "interval_ms")) {
			if (!json_is_integer(v) || json_integer_value(v) < REP_INTERVAL_MIN_MS ||
			    json_integer_value(v) > REP_INTERVAL_MAX_MS)
				return cerr_set(e, CERR_INVALID, k, "from %d ms to 24 h",
						REP_INTERVAL_MIN_MS);
			r->interval_ms = (uint32_t)json_integer_value(v);
		} else if (!strcmp(k, "keep")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 1000)
				return cerr_set(e, CERR_INVALID, k, "recovery points to keep: 1 to 1000");
			r->keep = (unsigned)json_integer_value(v);
		} else if (!strcmp(k, "max_bandwidth")) {
			if (!json_is_integer(v) || (json_integer_value(v) &&
						    json_integer_value(v) < 65536))
				return cerr_set(e, CERR_INVALID, k, "bytes per second: 0 (no cap) or "
						"at least 65536");
			r->max_bandwidth = (uint64_t)json_integer_value(v);
		} else if (!strcmp(k, "compression")) {
			if (!json_is_string(v) || (strcmp(json_string_value(v), "zstd") &&
						   strcmp(json_string_value(v), "none")))
				return cerr_set(e, CERR_INVALID, k, "\"zstd\" (the default) or \"none\"");
			r->zstd = !strcmp(json_string_value(v), "zstd");
		} else if (!strcmp(k, "last") && json_is_string(v) &&
			   json_string_length(v) < CBT_NAME_MAX) {
			snprintf(r->last, sizeof(r->last), "%s", json_string_value(v));
		} else if (!strcmp(k, "seq") && json_is_integer(v) && json_integer_value(v) >= 0) {
			r->seq = (unsigned)json_integer_value(v);
		} else if (strcmp(k, "last") && strcmp(k, "seq")) {
			return cerr_set(e, CERR_INVALID, k, "unknown field");
		}
	}
	if (!r->to[0])
		return cerr_set(e, CERR_INVALID, "to", "required: the host to replicate to");
	return 0;
}

/* The target -------------------------------------------------------------------------- */

/* A call to the target; 0 with a 2xx answer in *reply, else -1 with e. */
static int target_call(struct sup *s, const char *to, const char *method, const char *path,
		       json_t *body, json_t **reply, long *status, struct cerr *e)
{
	struct rep_peer rp;
	char err[384];
	int ret;

	*reply = NULL;
	*status = 0;
	if (rep_peer_find(s, to, &rp, e))
		return -1;
	ret = peer_call(&rp.p, method, path, body, 60, status, reply, err, sizeof(err));
	if (!ret && (*status < 200 || *status > 299)) {
		peer_error_text(&rp.p, *status, *reply, err, sizeof(err));
		ret = -1;
	}
	rep_peer_put(&rp);
	if (ret)
		return cerr_set(e, CERR_PEER, "to", "%s", err);
	return 0;
}

/* The shipper ------------------------------------------------------------------------- */

static void set_status(struct sup *s, struct rep_out *r, const char *state, const char *fmt, ...)
	__printf(4, 5);
static void set_status(struct sup *s, struct rep_out *r, const char *state, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->rep_out_lock);
	snprintf(r->state, sizeof(r->state), "%s", state);
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->rep_out_lock);
}

/* One worker command on the VM (running); 0 with a reply whose "ok" is
 * true, else -1 with e. */
static int worker(struct sup *s, struct rep_out *r, json_t *req, const int *fds, unsigned nfds,
		  json_t **reply, struct cerr *e)
{
	struct vmrt *vm = sup_vm_lock_name(s, r->name, e);
	int ret;

	*reply = NULL;
	if (!vm)
		return -1;
	if (strcmp(vm->def.uuid, r->uuid) || !vm->pid ||
	    (vm->state != VS_RUNNING && vm->state != VS_PAUSED)) {
		sup_vm_unlock(s, vm);
		return cerr_set(e, CERR_STATE, "", "the VM does not run");
	}
	ret = sup_worker_cmd(s, vm, json_incref(req), fds, nfds, REP_CTL_MS, reply, e); /* it takes req */
	sup_vm_unlock(s, vm);
	if (!ret && !json_is_true(json_object_get(*reply, "ok"))) {
		cerr_set(e, CERR_INTERNAL, "", "%s",
			 json_string_value(json_object_get(*reply, "error")) ?: "the worker refused");
		ret = -1;
	}
	return ret;
}

/* The export of disk id, as its worker reports it (NULL: none). */
static json_t *export_status(struct sup *s, struct rep_out *r, const char *id, struct cerr *e)
{
	json_t *req = json_pack("{s:s}", "cmd", "status"), *reply = NULL, *d, *x = NULL;
	size_t i;

	if (!worker(s, r, req, NULL, 0, &reply, e))
		json_array_foreach(json_object_get(reply, "disks"), i, d)
			if (!strcmp(json_string_value(json_object_get(d, "id")) ?: "", id))
				x = json_incref(json_object_get(d, "export"));
	json_decref(req);
	json_decref(reply);
	return x;
}

static bool wait_stop(struct sup *s, struct rep_out *r, uint32_t ms)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->rep_out_lock);
	while (!r->stop && !s->shutting_down && !r->kick &&
	       pthread_cond_timedwait(&r->wake, &s->rep_out_lock, &dl) != ETIMEDOUT)
		;
	r->kick = false;
	pthread_mutex_unlock(&s->rep_out_lock);
	return r->stop || s->shutting_down;
}

/* The set in *fd compressed (zstd, level REP_ZSTD_LEVEL) into an unnamed
 * file of the VM's directory, which replaces *fd. 0, or -1 with e. */
static int compress_spool(struct sup *s, struct rep_out *r, int *fd, struct cerr *e)
{
	char dir[PATH_MAX], err[256];
	uint64_t n;
	int out, ret;

	snprintf(dir, sizeof(dir), "%s/vms/%s", s->conf.state_dir, r->uuid);
	out = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (out < 0)
		return cerr_set(e, CERR_NO_SPACE, "", "%s: %s", dir, strerror(errno));
	ret = replica_set_compress(*fd, out, REP_ZSTD_LEVEL, &n, err, sizeof(err));
	if (ret) {
		close(out);
		return cerr_set(e, ret == -ENOSPC ? CERR_NO_SPACE : CERR_INTERNAL, "",
				"compressing the change set: %s", err);
	}
	close(*fd);
	*fd = out;
	return 0;
}

/* disk-export since=`since` point=`point` into a new spool of disk id
 * (pre_fd: its spool file with the export begun, by rep_ops_cut_all with
 * the VM's other disks; -1: cut here), compressed unless r->zstd is off,
 * recorded (replica_xfer_out.c): sp. */
static int export_disk(struct sup *s, struct rep_out *r, const char *id, const char *since,
		       const char *point, int pre_fd, struct rep_spool *sp, struct cerr *e)
{
	char spool[PATH_MAX];
	json_t *req, *reply = NULL, *x = NULL;
	int fd, ret;

	snprintf(spool, sizeof(spool), "%s/vms/%s/replica-%s.set", s->conf.state_dir, r->uuid, id);
	fd = pre_fd >= 0 ? pre_fd : open(spool, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return cerr_set(e, CERR_NO_SPACE, "", "cannot make %s: %s", spool, strerror(errno));
	if (pre_fd >= 0) /* cut with the other disks */
		goto cut;
	req = json_pack("{s:s, s:s, s:s, s:i, s:b, s:i}", "cmd", "disk-export", "disk", id, "point",
			point, "fd", 0, "deferred_commit", 1, "stall_ms", REP_STALL_MS);
	if (since[0])
		json_object_set_new(req, "since", json_string(since));
	json_object_set_new(req, "grain", json_integer(rep_grain())); /* 4 KiB sets */
	if (r->max_bandwidth)
		json_object_set_new(req, "max_bandwidth", json_integer((json_int_t)r->max_bandwidth));
	ret = worker(s, r, req, &fd, 1, &reply, e);
	json_decref(req);
	json_decref(reply);
	if (ret)
		goto out;
cut:
	/* The export goes on in the worker: done once the file is synced. */
	for (;;) {
		const char *state;

		json_decref(x);
		x = export_status(s, r, id, e);
		state = json_string_value(json_object_get(x, "state"));
		if (!x || !state) {
			ret = x ? cerr_set(e, CERR_INTERNAL, "", "the worker reports no export") : -1;
			goto out;
		}
		if (!strcmp(state, "done"))
			break;
		if (strcmp(state, "running")) {
			ret = cerr_set(e, CERR_INTERNAL, "", "export of disk %s %s: %s", id, state,
				       json_string_value(json_object_get(x, "error")) ?: "");
			goto out;
		}
		if (wait_stop(s, r, 20)) {
			ret = cerr_set(e, CERR_UNAVAILABLE, "", "stopping");
			goto out;
		}
	}
	if (r->zstd && (ret = compress_spool(s, r, &fd, e)))
		goto out;
	memset(sp, 0, sizeof(*sp));
	snprintf(sp->point, sizeof(sp->point), "%s", point);
	snprintf(sp->since, sizeof(sp->since), "%s", since);
	sp->cut_ms = r->round_cut_ms; /* a later round that sends it says when it was cut */
	sp->flushed = r->round_flushed;
	sp->data = (uint64_t)json_integer_value(json_object_get(x, "data_bytes"));
	sp->fd = fd;
	ret = rep_spool_save(s, r->uuid, id, sp, e);
	fd = ret ? fd : -1; /* sp keeps it */
	if (ret)
		sp->fd = -1;
out:
	json_decref(x);
	if (fd >= 0)
		close(fd);
	unlink(spool);
	return ret;
}

/* Ship one disk's changes since r->last as point `point`: the set spooled
 * by an earlier round that did not deliver it, else a new export; resumed
 * from what the target holds (replica_xfer_out.c). *sent: bytes on the
 * wire (failed tries too); *data: the set's changed bytes, once delivered. */
static int ship_disk(struct sup *s, struct rep_out *r, const char *id, const char *since,
		     const char *point, int pre_fd, uint64_t *sent, uint64_t *data,
		     json_t **answer, struct cerr *e)
{
	struct rep_xfer_stats xs = { 0 };
	struct rep_spool sp;
	struct rep_peer rp;
	char url[256], q[96];
	json_t *req, *reply = NULL;
	int ret;

	*answer = NULL;
	if (rep_spool_load(s, r->uuid, id, since, point, &sp) && pre_fd >= 0) {
		rep_ops_cut_drop(s, r, id, pre_fd); /* the spooled set goes, not a new cut */
		pre_fd = -1;
	}
	if (sp.done)
		return 0; /* on the target already: an earlier round's other disk failed */
	if (sp.fd < 0 && export_disk(s, r, id, since, point, pre_fd, &sp, e))
		return -1;
	if (rep_peer_find(s, r->to, &rp, e)) {
		close(sp.fd);
		return -1;
	}
	snprintf(url, sizeof(url), "/v1/replicas/%s/disks/%s", r->name, id);
	rep_ops_upload_query(r, q, sizeof(q)); /* the point's cut time and consistency */
	ret = rep_xfer_send(s, &rp, url, q, &sp, r->max_bandwidth, &xs, answer, e);
	rep_peer_put(&rp);
	close(sp.fd);
	*sent = xs.sent;
	pthread_mutex_lock(&s->rep_out_lock);
	r->resumes += xs.resumed;
	r->bytes_skipped += xs.skipped;
	r->sets_refused += xs.refused;
	pthread_mutex_unlock(&s->rep_out_lock);
	if (xs.resumed) {
		char detail[200];

		snprintf(detail, sizeof(detail), "disk %s: point %s resumed from byte %llu of %llu",
			 id, point, (unsigned long long)xs.from, (unsigned long long)sp.total);
		sup_emit_named(s, r->name, "", "replica-transfer-resumed", detail);
	}
	if (ret) {
		/* Refused whole (the spool is bad) or not following the
		 * target's latest point: made again next round. */
		if (e->kind == CERR_INVALID || e->kind == CERR_CONFLICT)
			rep_spool_drop(s, r->uuid, id);
		return -1;
	}
	*data = sp.data;
	if (!sp.since[0]) { /* a full copy delivered (the first, or a resynchronisation) */
		pthread_mutex_lock(&s->rep_out_lock);
		r->full_sets++;
		pthread_mutex_unlock(&s->rep_out_lock);
	}
	/* The target has it: the tracking point may let go of these blocks. */
	rep_spool_done(s, r->uuid, id, &sp);
	req = json_pack("{s:s, s:s, s:s}", "cmd", "disk-export-commit", "disk", id, "point", point);
	if (worker(s, r, req, NULL, 0, &reply, e))
		log_warn("vm %s: disk %s: point %s stored on %s, but not committed here (%s): the "
			 "next set sends its blocks again", r->name, id, point, r->to, e->reason);
	json_decref(req);
	json_decref(reply);
	return 0;
}

/* After a conflict: the target's latest point on every disk, if any. */
static void follow_target(struct sup *s, struct rep_out *r)
{
	json_t *reply = NULL, *pts;
	char path[128];
	long status;
	struct cerr e;

	snprintf(path, sizeof(path), "/v1/replicas/%s", r->name);
	if (target_call(s, r->to, "GET", path, NULL, &reply, &status, &e)) {
		json_decref(reply);
		return;
	}
	pts = json_object_get(reply, "points");
	pthread_mutex_lock(&s->rep_out_lock);
	snprintf(r->last, sizeof(r->last), "%s", json_array_size(pts) ?
		 json_string_value(json_array_get(pts, json_array_size(pts) - 1)) ?: "" : "");
	pthread_mutex_unlock(&s->rep_out_lock);
	log_warn("vm %s: following %s's latest point: %s", r->name, r->to,
		 r->last[0] ? r->last : "none (a full copy)");
	json_decref(reply);
}

/* One round: every disk since r->last as the next point. */
static void ship_round(struct sup *s, struct rep_out *r)
{
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], ids[VMDEF_MAX_DISKS][40];
	int pre[VMDEF_MAX_DISKS] = { [0 ... VMDEF_MAX_DISKS - 1] = -1 };
	uint64_t t0 = sup_mono_ns(), cut_ns = t0, sent = 0, data = 0;
	unsigned nr = 0;
	struct vmrt *vm;
	struct cerr e = { 0 };
	int ret = 0;

	if (!rep_ops_round_begin(s, r))
		return;
	vm = sup_vm_lock_name(s, r->name, &e);
	if (!vm || strcmp(vm->def.uuid, r->uuid)) {
		if (vm)
			sup_vm_unlock(s, vm);
		set_status(s, r, "waiting", "the VM is gone");
		return;
	}
	if (!vm->pid || (vm->state != VS_RUNNING && vm->state != VS_PAUSED)) {
		sup_vm_unlock(s, vm);
		set_status(s, r, "waiting", "the VM does not run: its disks do not change");
		return;
	}
	for (unsigned i = 0; i < vm->def.nr_disks; i++)
		snprintf(ids[nr++], sizeof(ids[0]), "%s", vm->def.disks[i].id);
	sup_vm_unlock(s, vm);
	pthread_mutex_lock(&s->rep_out_lock);
	snprintf(since, sizeof(since), "%s", r->last);
	snprintf(point, sizeof(point), "r%06u", r->seq + 1);
	pthread_mutex_unlock(&s->rep_out_lock);
	{
		/* A set spooled by a round that did not deliver it keeps its name;
		 * a new one is cut on every disk at one instant when the worker
		 * can (else in turn). */
		const char *idp[VMDEF_MAX_DISKS];

		for (unsigned i = 0; i < nr; i++)
			idp[i] = ids[i];
		if (rep_spool_pending(s, r->uuid, idp, nr, since, point, sizeof(point)))
			cut_ns = rep_ops_round_spooled(s, r, idp, nr, since, point, t0);
		else if (rep_ops_cut_all(s, r, ids, nr, since, point, REP_STALL_MS, pre, &e) &&
			 nr > 1)
			log_warn("vm %s: disks cut in turn for %s: %s", r->name, point, e.reason);
		memset(&e, 0, sizeof(e));
	}
	for (unsigned i = 0; i < nr && !ret; i++) {
		uint64_t disk_sent = 0, disk_data = 0;
		json_t *answer = NULL;

		ret = ship_disk(s, r, ids[i], since, point, pre[i], &disk_sent, &disk_data, &answer,
				&e);
		pre[i] = -1;
		json_decref(answer);
		sent += disk_sent;
		data += disk_data;
		if (ret && e.kind == CERR_INTERNAL && since[0] && strstr(e.reason, "no point")) {
			/* This disk's tracking lost `since`: a full copy. */
			log_warn("vm %s: disk %s: %s: sending a full copy", r->name, ids[i],
				 e.reason);
			ret = ship_disk(s, r, ids[i], "", point, -1, &disk_sent, &disk_data,
					&answer, &e);
			json_decref(answer);
			sent += disk_sent;
			data += disk_data;
		}
	}
	for (unsigned i = 0; i < nr; i++) /* cut, not shipped: an earlier disk failed */
		if (pre[i] >= 0)
			rep_ops_cut_drop(s, r, ids[i], pre[i]);
	pthread_mutex_lock(&s->rep_out_lock);
	r->rounds++;
	r->bytes_sent += sent;
	r->bytes_changed += data;
	r->last_round_ms = (uint32_t)((sup_mono_ns() - t0) / 1000000u);
	if (!ret) {
		unsigned pseq;

		snprintf(r->last, sizeof(r->last), "%s", point);
		r->seq++;
		if (sscanf(point, "r%u", &pseq) == 1 && pseq > r->seq)
			r->seq = pseq;
		r->last_point_at = sup_now_wall();
		r->last_cut_ns = cut_ns;
		snprintf(r->state, sizeof(r->state), "normal");
		r->error[0] = 0;
	} else {
		r->failures++;
		snprintf(r->state, sizeof(r->state), "error");
		snprintf(r->error, sizeof(r->error), "%s", e.reason);
		/* Named points stay unique: a retry takes the next name. */
		r->seq++;
	}
	rep_ops_round_end_locked(r, ret, &e);
	pthread_mutex_unlock(&s->rep_out_lock);
	conf_save(s, r);
	if (!ret)
		rep_spool_drop(s, r->uuid, NULL); /* every disk has the point */
	if (!ret) {
		char detail[160];

		snprintf(detail, sizeof(detail), "point %s on %s: %llu bytes sent", point, r->to,
			 (unsigned long long)sent);
		sup_emit_named(s, r->name, "", "replica-point-sent", detail);
	} else {
		log_warn("vm %s: replication to %s: %s", r->name, r->to, e.reason);
		if (e.kind == CERR_CONFLICT)
			follow_target(s, r);
	}
}

static void *shipper(void *arg)
{
	struct rep_out *r = arg;
	struct sup *s = r->s;
	uint32_t wait_ms = 200;

	rep_ops_health_check(s, r); /* where it starts from: events on changes */
	while (!wait_stop(s, r, wait_ms)) {
		uint64_t t0 = sup_mono_ns(), took_ms, failures;
		bool failed;

		pthread_mutex_lock(&s->rep_out_lock);
		failures = r->failures;
		pthread_mutex_unlock(&s->rep_out_lock);
		ship_round(s, r);
		rep_ops_health_check(s, r);
		/* The interval runs from the start of a round that made its
		 * point, so a round longer than the interval is followed at
		 * once (the RPO is then about two rounds, not an interval plus
		 * two); after a failed round, the whole interval. */
		took_ms = (sup_mono_ns() - t0) / 1000000u;
		pthread_mutex_lock(&s->rep_out_lock);
		failed = r->failures != failures;
		if (!r->last_cut_ns)
			wait_ms = 200;
		else if (failed || took_ms >= r->interval_ms)
			wait_ms = failed ? r->interval_ms : 0;
		else
			wait_ms = (uint32_t)(r->interval_ms - took_ms);
		pthread_mutex_unlock(&s->rep_out_lock);
	}
	return NULL;
}

/* The list --------------------------------------------------------------------------- */

static struct rep_out *find_locked(struct sup *s, const char *name)
{
	struct rep_out *r;

	for (r = s->rep_out; r && strcmp(r->name, name); r = r->next)
		;
	return r;
}

static int start_shipper(struct sup *s, struct rep_out *r, struct cerr *e)
{
	r->s = s;
	pthread_cond_init(&r->wake, NULL);
	snprintf(r->state, sizeof(r->state), "starting");
	if (pthread_create(&r->thread, NULL, shipper, r)) {
		pthread_cond_destroy(&r->wake);
		return cerr_set(e, CERR_INTERNAL, "", "cannot start the replication thread");
	}
	r->next = s->rep_out;
	s->rep_out = r;
	return 0;
}

static struct rep_out *rep_new(void)
{
	return calloc(1, sizeof(struct rep_out));
}

static void stop_one(struct sup *s, struct rep_out *r)
{
	pthread_mutex_lock(&s->rep_out_lock);
	r->stop = true;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&s->rep_out_lock);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->wake);
	free(r);
}

int sup_replica_enable(struct sup *s, const char *name, json_t *body, json_t **out,
		       struct cerr *e)
{
	struct rep_out *r = rep_new();
	json_t *sizes = json_object(), *create = NULL, *reply = NULL, *x;
	char path[PATH_MAX];
	struct vmrt *vm;
	long status;
	int ret = -1;

	*out = NULL;
	if (!r || !sizes) {
		free(r);
		json_decref(sizes);
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	}
	r->interval_ms = REP_INTERVAL_DEF_MS;
	r->keep = REP_KEEP_DEF;
	r->zstd = true;
	if (conf_parse(body, r, e) || !(vm = sup_vm_lock_name(s, name, e)))
		goto fail;
	r->paused = false; /* enabling starts it */
	for (unsigned i = 0; i < vm->def.nr_disks; i++)
		if (!vm->def.disks[i].cbt || vm->def.disks[i].readonly) {
			cerr_set(e, CERR_CONFLICT, "disks", "disk %s %s: replication follows each "
				 "disk's changed-block tracking", vm->def.disks[i].id,
				 vm->def.disks[i].readonly ? "is read-only" : "has no change tracking "
				 "(cbt)");
			sup_vm_unlock(s, vm);
			goto fail;
		}
	if (!vm->def.nr_disks || !vm->pid || (vm->state != VS_RUNNING && vm->state != VS_PAUSED)) {
		cerr_set(e, vm->def.nr_disks ? CERR_STATE : CERR_CONFLICT, "", vm->def.nr_disks ?
			 "start the VM first: its disks' sizes come from its worker" :
			 "the VM has no disk to replicate");
		sup_vm_unlock(s, vm);
		goto fail;
	}
	snprintf(r->name, sizeof(r->name), "%s", vm->def.name);
	snprintf(r->uuid, sizeof(r->uuid), "%s", vm->def.uuid);
	if (sup_vm_dir(s, vm, path, sizeof(path))) { /* made here: replica.json goes in it */
		cerr_set(e, CERR_NO_SPACE, "", "cannot make the VM's directory %s", path);
		sup_vm_unlock(s, vm);
		goto fail;
	}
	{
		char me[256] = "";

		if (gethostname(me, sizeof(me) - 1))
			me[0] = 0;
		create = json_pack("{s:o, s:i, s:s}", "vm", vmdef_to_json(&vm->def), "keep",
				   (int)r->keep, "from", me);
	}
	sup_vm_unlock(s, vm);
	rep_ops_enable_defaults(r, body, create);
	pthread_mutex_lock(&s->rep_out_lock);
	if (find_locked(s, name)) {
		pthread_mutex_unlock(&s->rep_out_lock);
		cerr_set(e, CERR_EXISTS, "", "'%s' is replicated already (cella replica disable "
			 "first)", name);
		goto fail;
	}
	pthread_mutex_unlock(&s->rep_out_lock);
	/* The disks' sizes, from the worker. */
	{
		json_t *req = json_pack("{s:s}", "cmd", "status"), *d;
		size_t i;

		ret = worker(s, r, req, NULL, 0, &reply, e);
		json_decref(req);
		if (ret)
			goto fail;
		json_array_foreach(json_object_get(reply, "disks"), i, d)
			json_object_set(sizes, json_string_value(json_object_get(d, "id")) ?: "?",
					json_object_get(d, "size"));
		json_decref(reply);
		reply = NULL;
	}
	json_object_set(create, "disk_sizes", sizes);
	ret = target_call(s, r->to, "POST", "/v1/replicas", create, &reply, &status, e);
	if (ret)
		goto fail;
	/* Follow what the target has (a replica enabled again), and name new
	 * points after its latest. */
	x = json_object_get(reply, "points");
	if (json_array_size(x)) {
		const char *lp = json_string_value(json_array_get(x, json_array_size(x) - 1)) ?: "";
		unsigned seq;

		snprintf(r->last, sizeof(r->last), "%s", lp);
		if (sscanf(lp, "r%u", &seq) == 1)
			r->seq = seq;
	}
	conf_save(s, r);
	if (conf_path(s, r->uuid, path, sizeof(path)) || access(path, F_OK)) {
		ret = cerr_set(e, CERR_NO_SPACE, "", "cannot record the replication settings");
		goto fail;
	}
	pthread_mutex_lock(&s->rep_out_lock);
	ret = find_locked(s, name) ? cerr_set(e, CERR_EXISTS, "", "'%s' is replicated already", name)
				   : start_shipper(s, r, e);
	pthread_mutex_unlock(&s->rep_out_lock);
	if (ret) {
		unlink(path);
		goto fail;
	}
	{
		char detail[128];

		snprintf(detail, sizeof(detail), "to %s every %u ms", r->to, r->interval_ms);
		sup_emit_named(s, name, "", "replica-enabled", detail);
	}
	json_decref(create);
	json_decref(sizes);
	json_decref(reply);
	return sup_replica_status(s, name, out, e);
fail:
	json_decref(create);
	json_decref(sizes);
	json_decref(reply);
	free(r);
	return -1;
}

int sup_replica_disable(struct sup *s, const char *name, struct cerr *e)
{
	struct rep_out *r, **pp;
	char path[PATH_MAX];

	pthread_mutex_lock(&s->rep_out_lock);
	for (pp = &s->rep_out; *pp && strcmp((*pp)->name, name); pp = &(*pp)->next)
		;
	r = *pp;
	if (r)
		*pp = r->next;
	pthread_mutex_unlock(&s->rep_out_lock);
	if (!r)
		return cerr_set(e, CERR_NOT_FOUND, "name", "'%s' is not replicated", name);
	if (!conf_path(s, r->uuid, path, sizeof(path)))
		unlink(path);
	snprintf(path, sizeof(path), "%s", r->uuid);
	stop_one(s, r);
	rep_spool_drop(s, path, NULL); /* sets not delivered (enable again starts anew) */
	sup_emit_named(s, name, "", "replica-disabled", "");
	return 0;
}

int sup_replica_status(struct sup *s, const char *name, json_t **out, struct cerr *e)
{
	struct rep_out *r;
	uint64_t lag_ms;
	const char *health;

	*out = NULL;
	pthread_mutex_lock(&s->rep_out_lock);
	r = find_locked(s, name);
	if (!r) {
		pthread_mutex_unlock(&s->rep_out_lock);
		return cerr_set(e, CERR_NOT_FOUND, "name", "'%s' is not replicated", name);
	}
	lag_ms = r->last_cut_ns ? (sup_mono_ns() - r->last_cut_ns) / 1000000u : 0;
	health = rep_ops_health_locked(r, lag_ms);
	*out = json_pack("{s:s, s:s, s:i, s:i, s:I, s:s, s:s, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, "
			 "s:i, s:s}",
			 "vm", r->name, "to", r->to, "interval_ms", (int)r->interval_ms, "keep",
			 (int)r->keep, "max_bandwidth", (json_int_t)r->max_bandwidth, "state",
			 r->state, "last_point", r->last, "error", r->error[0] ? r->error : NULL,
			 "last_point_at", (json_int_t)r->last_point_at, "lag_ms",
			 (json_int_t)lag_ms, "rounds", (json_int_t)r->rounds, "failures",
			 (json_int_t)r->failures, "bytes_sent", (json_int_t)r->bytes_sent,
			 "bytes_changed", (json_int_t)r->bytes_changed, "last_round_ms",
			 (int)r->last_round_ms, "health", health);
	json_object_set_new(*out, "compression", json_string(r->zstd ? "zstd" : "none"));
	json_object_set_new(*out, "resumes", json_integer((json_int_t)r->resumes));
	json_object_set_new(*out, "bytes_skipped", json_integer((json_int_t)r->bytes_skipped));
	json_object_set_new(*out, "sets_refused", json_integer((json_int_t)r->sets_refused));
	json_object_set_new(*out, "full_sets", json_integer((json_int_t)r->full_sets));
	rep_ops_status_locked(r, *out);
	pthread_mutex_unlock(&s->rep_out_lock);
	return 0;
}

void sup_replica_out_resume(struct sup *s)
{
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);

	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		struct rep_out *r;
		struct cerr e = { 0 };
		json_t *j;

		if (conf_path(s, all[i]->def.uuid, path, sizeof(path)) || access(path, F_OK))
			continue;
		j = json_load_file(path, 0, NULL);
		r = rep_new();
		if (r)
			r->zstd = true;
		if (!r || !j || conf_parse(j, r, &e)) {
			log_err("vm %s: %s: not resumed: %s", all[i]->def.name, path,
				j ? e.reason : "not JSON");
			free(r);
			json_decref(j);
			continue;
		}
		json_decref(j);
		pthread_mutex_lock(&all[i]->lock);
		snprintf(r->name, sizeof(r->name), "%s", all[i]->def.name);
		snprintf(r->uuid, sizeof(r->uuid), "%s", all[i]->def.uuid);
		pthread_mutex_unlock(&all[i]->lock);
		pthread_mutex_lock(&s->rep_out_lock);
		if (start_shipper(s, r, &e)) {
			log_err("vm %s: replication not resumed: %s", r->name, e.reason);
			free(r);
		} else {
			log_info("vm %s: replication to %s resumed since point %s", r->name, r->to,
				 r->last[0] ? r->last : "none");
		}
		pthread_mutex_unlock(&s->rep_out_lock);
	}
	sup_vm_unpin_all(s, all, n);
}

void sup_replica_out_stop_all(struct sup *s)
{
	for (;;) {
		struct rep_out *r;

		pthread_mutex_lock(&s->rep_out_lock);
		r = s->rep_out;
		if (r)
			s->rep_out = r->next;
		pthread_mutex_unlock(&s->rep_out_lock);
		if (!r)
			return;
		stop_one(s, r);
	}
}

/* For replica_ops.c (replica_out.h). */
struct rep_out *rep_out_find_locked(struct sup *s, const char *name)
{
	return find_locked(s, name);
}

void rep_out_conf_save_locked(struct sup *s, struct rep_out *r)
{
	conf_save_locked(s, r);
}

int rep_out_worker(struct sup *s, struct rep_out *r, json_t *req, const int *fds,
		   unsigned nfds, json_t **reply, struct cerr *e)
{
	return worker(s, r, req, fds, nfds, reply, e);
}

/* For replica_planned.c (replica_priv.h). */
int rep_out_detach(struct sup *s, const char *name, json_t **conf, struct cerr *e)
{
	struct rep_out *r, **pp;

	*conf = NULL;
	pthread_mutex_lock(&s->rep_out_lock);
	for (pp = &s->rep_out; *pp && strcmp((*pp)->name, name); pp = &(*pp)->next)
		;
	r = *pp;
	if (r)
		*pp = r->next;
	pthread_mutex_unlock(&s->rep_out_lock);
	if (!r)
		return cerr_set(e, CERR_NOT_FOUND, "name", "'%s' is not replicated from this host "
				"(cella replica enable)", name);
	pthread_mutex_lock(&s->rep_out_lock);
	r->stop = true;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&s->rep_out_lock);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->wake);
	*conf = json_pack("{s:s, s:i, s:i, s:I, s:s, s:s, s:i}", "to", r->to, "interval_ms",
			  (int)r->interval_ms, "keep", (int)r->keep, "max_bandwidth",
			  (json_int_t)r->max_bandwidth, "compression", r->zstd ? "zstd" : "none",
			  "last", r->last, "seq", (int)r->seq);
	free(r);
	return 0;
}

int rep_out_attach(struct sup *s, const char *name, struct cerr *e)
{
	struct rep_out *r = rep_new();
	char path[PATH_MAX];
	struct vmrt *vm;
	json_t *j;
	int ret;

	if (!r)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	r->zstd = true;
	vm = sup_vm_lock_name(s, name, e);
	if (!vm) {
		free(r);
		return -1;
	}
	snprintf(r->name, sizeof(r->name), "%s", vm->def.name);
	snprintf(r->uuid, sizeof(r->uuid), "%s", vm->def.uuid);
	sup_vm_unlock(s, vm);
	j = conf_path(s, r->uuid, path, sizeof(path)) ? NULL : json_load_file(path, 0, NULL);
	if (!j || conf_parse(j, r, e)) {
		if (!j)
			cerr_set(e, CERR_NOT_FOUND, "name", "'%s' has no replication settings", name);
		json_decref(j);
		free(r);
		return -1;
	}
	json_decref(j);
	pthread_mutex_lock(&s->rep_out_lock);
	ret = find_locked(s, name) ? cerr_set(e, CERR_EXISTS, "", "'%s' is replicated already", name)
				   : start_shipper(s, r, e);
	pthread_mutex_unlock(&s->rep_out_lock);
	if (ret)
		free(r);
	return ret;
}
