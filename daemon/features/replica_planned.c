/* replica_planned.c: planned failover, run on the source (docs/replica.md,
 * "Planned failover and reverse replication"; Hyper-V's planned failover):
 *
 *   1. the shipper stops, the target is asked whether it still replicates;
 *   2. the guest is shut down (the graceful stop, with a timeout): its disks
 *      are quiescent;
 *   3. the last change set of each disk (since the last point the target
 *      confirmed) is cut here from the disk itself, offline, and sent: that
 *      point holds every byte the guest wrote;
 *   4. the target is sent the VM's definition as it is now, and fails over
 *      to that point (its VM's disks track changes from it);
 *   5. replication is reversed: the target replicates back here, from that
 *      common point (replica_reverse.c), without a full copy.
 *
 * Until the target has failed over nothing is lost and nothing is final: a
 * failure before step 4 starts the VM here again (when it ran) and resumes
 * the shipper; a failure at step 4 does the same once the target says it
 * still replicates, and otherwise leaves the VM here off, saying so. */
#include "sup_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cbt.h"
#include "disk.h"
#include "log.h"
#include "peer.h"
#include "replica.h"
#include "replica_priv.h"
#include "replica_xfer.h"

#define PLAN_TIMEOUT_DEF_S 120
#define PLAN_PEER_TIMEOUT_S 600 /* an upload */
#define PLAN_CALL_S 60
#define PLAN_START_S 300 /* a failover starts the VM there; a reverse calls back */
#define PLAN_ZSTD_LEVEL 3
#define PLAN_BACKSTOP_S 30 /* see shut_down */

int rep_track_from(const char *path, uint64_t size, const char *point)
{
	struct cbt *c;
	char err[256];
	int ret = cbt_open(&c, path, size, err, sizeof(err));

	if (ret) {
		log_warn("%s: no change tracking from point %s: %s", path, point, err);
		return ret;
	}
	ret = cbt_point_start(c, point);
	if (!ret)
		ret = cbt_sync(c);
	cbt_close(c, true);
	if (ret)
		log_warn("%s: cannot start tracking point %s: %s", path, point, strerror(-ret));
	return ret;
}

/* A call to peer host `to`; 0 with a 2xx answer in *reply, else -1 with e
 * (*status 0: no answer came). */
int rep_peer_call(struct sup *s, const char *to, const char *method, const char *path,
		  json_t *body, long timeout_s, json_t **reply, long *status, struct cerr *e)
{
	struct rep_peer rp;
	char err[384];
	int ret;

	*reply = NULL;
	*status = 0;
	if (rep_peer_find(s, to, &rp, e))
		return -1;
	ret = peer_call(&rp.p, method, path, body, timeout_s, status, reply, err, sizeof(err));
	if (!ret && (*status < 200 || *status > 299)) {
		peer_error_text(&rp.p, *status, *reply, err, sizeof(err));
		ret = -1;
	}
	rep_peer_put(&rp);
	if (ret)
		return cerr_set(e, *status == 409 ? CERR_CONFLICT : CERR_PEER, "", "%s", err);
	return 0;
}

/* e's reason followed by "; " and more (the kind kept). -1. */
static int err_more(struct cerr *e, const char *fmt, ...) __printf(2, 3);
static int err_more(struct cerr *e, const char *fmt, ...)
{
	char was[sizeof(e->reason)], more[256];
	va_list ap;

	snprintf(was, sizeof(was), "%s", e->reason);
	va_start(ap, fmt);
	vsnprintf(more, sizeof(more), fmt, ap);
	va_end(ap);
	return cerr_set(e, e->kind ? e->kind : CERR_INTERNAL, "", "%s; %s", was, more);
}

struct plan_disk {
	char id[40];
	char *path;
	int fmt;
};

struct plan {
	char name[VMDEF_NAME_MAX + 1], uuid[37];
	char to[64], last[CBT_NAME_MAX], point[CBT_NAME_MAX];
	json_t *conf;    /* the shipper's settings, as detached */
	json_t *def;     /* the VM's definition */
	bool zstd, was_running, forced;
	int64_t cut_ms; /* wall ms of the last set's cut (the disks quiescent) */
	unsigned nr;
	struct plan_disk disks[VMDEF_MAX_DISKS];
	uint64_t sent;
};

static void plan_free(struct plan *p)
{
	for (unsigned i = 0; i < p->nr; i++)
		free(p->disks[i].path);
	json_decref(p->conf);
	json_decref(p->def);
}

/* One disk's change set since p->last (or a full one) as point p->point,
 * cut from the quiescent image into an unnamed file of the VM's directory,
 * compressed when p->zstd: the descriptor, or -1 with e. */
static int cut_set(struct sup *s, struct plan *p, const struct plan_disk *dk, const char *since,
		   struct cerr *e)
{
	char dir[PATH_MAX], err[256];
	struct disk *d = NULL;
	struct cbt *c = NULL;
	uint64_t bytes = 0, n;
	int fd = -1, out, ret;

	snprintf(dir, sizeof(dir), "%s/vms/%s", s->conf.state_dir, p->uuid);
	if ((ret = disk_open(&d, dk->path, dk->fmt, DISK_RDONLY, err, sizeof(err)))) {
		cerr_set(e, CERR_INTERNAL, "", "disk %s: %s", dk->id, err);
		goto fail;
	}
	if ((ret = cbt_open(&c, dk->path, disk_size(d), err, sizeof(err)))) {
		cerr_set(e, CERR_INTERNAL, "", "disk %s: change tracking: %s", dk->id, err);
		goto fail;
	}
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		cerr_set(e, CERR_NO_SPACE, "", "%s: %s", dir, strerror(errno));
		goto fail;
	}
	ret = since[0] ? cbt_backup_incremental(d, c, since, p->point, fd, &bytes, err, sizeof(err))
		       : -ENOENT;
	if (ret == -ENOENT || ret == -ESTALE) { /* the tracking cannot vouch: all of it */
		if (since[0])
			log_warn("vm %s: disk %s: no valid point %s here: the last set is a full copy",
				 p->name, dk->id, since);
		if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET) < 0)
			ret = -errno;
		else
			ret = cbt_backup_full(d, c, p->point, fd, &bytes, err, sizeof(err));
	}
	if (ret) {
		cerr_set(e, ret == -ENOSPC ? CERR_NO_SPACE : CERR_INTERNAL, "",
			 "disk %s: the last change set: %s", dk->id, err);
		goto fail;
	}
	cbt_close(c, true);
	c = NULL;
	disk_close(d);
	d = NULL;
	if (p->zstd) {
		out = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (out < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
		    replica_set_compress(fd, out, PLAN_ZSTD_LEVEL, &n, err, sizeof(err))) {
			cerr_set(e, CERR_INTERNAL, "", "compressing the last change set: %s",
				 out < 0 ? strerror(errno) : err);
			if (out >= 0)
				close(out);
			goto fail;
		}
		close(fd);
		fd = out;
	}
	return fd;
fail:
	if (c)
		cbt_close(c, true);
	if (d)
		disk_close(d);
	if (fd >= 0)
		close(fd);
	return -1;
}

static int upload(struct sup *s, struct plan *p, const char *id, int fd, json_t **answer,
		  struct cerr *e)
{
	char url[256], err[384];
	struct rep_peer rp;
	struct stat st;
	long status = 0;
	int ret;

	*answer = NULL;
	if (fstat(fd, &st) || lseek(fd, 0, SEEK_SET) < 0)
		return cerr_set(e, CERR_INTERNAL, "", "the change set: %s", strerror(errno));
	if (rep_peer_find(s, p->to, &rp, e))
		return -1;
	/* One piece (no resume: the set is cut again if this fails). */
	/* The point's time and consistency (replica_ops_in.c): a guest that shut
	 * down left its disks clean; one turned off (force), as at a crash. */
	snprintf(url, sizeof(url), "/v1/replicas/%s/disks/%s?cut_at=%lld&consistency=%s", p->name,
		 id, (long long)p->cut_ms, p->forced ? "crash" : "flushed");
	ret = peer_upload(&rp.p, url, fd, (uint64_t)st.st_size, PLAN_PEER_TIMEOUT_S, &status,
			  answer, err, sizeof(err));
	if (!ret && (status < 200 || status > 299)) {
		peer_error_text(&rp.p, status, *answer, err, sizeof(err));
		ret = -1;
	}
	rep_peer_put(&rp);
	if (ret)
		return cerr_set(e, status == 409 ? CERR_CONFLICT : CERR_PEER, "", "%s", err);
	p->sent += (uint64_t)st.st_size;
	return 0;
}

/* The target's latest point on disk id ("" none). */
static void target_latest(struct sup *s, struct plan *p, const char *id, char *out, size_t len)
{
	json_t *reply = NULL, *d, *pts;
	char path[128];
	long status;
	struct cerr e = { 0 };
	size_t i;

	out[0] = 0;
	snprintf(path, sizeof(path), "/v1/replicas/%s", p->name);
	if (!rep_peer_call(s, p->to, "GET", path, NULL, PLAN_CALL_S, &reply, &status, &e))
		json_array_foreach(json_object_get(reply, "disks"), i, d)
			if (!strcmp(json_string_value(json_object_get(d, "id")) ?: "", id) &&
			    json_array_size(pts = json_object_get(d, "points")))
				snprintf(out, len, "%s", json_string_value(json_object_get(
					json_array_get(pts, json_array_size(pts) - 1), "name")) ?: "");
	json_decref(reply);
}

/* Step 3: the last set of every disk. */
static int ship_last(struct sup *s, struct plan *p, struct cerr *e)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	p->cut_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	for (unsigned i = 0; i < p->nr; i++) {
		char since[CBT_NAME_MAX];
		json_t *answer = NULL;
		int fd, ret;

		snprintf(since, sizeof(since), "%s", p->last);
		fd = cut_set(s, p, &p->disks[i], since, e);
		if (fd < 0)
			return -1;
		ret = upload(s, p, p->disks[i].id, fd, &answer, e);
		close(fd);
		json_decref(answer);
		if (ret && e->kind == CERR_CONFLICT) {
			/* The target's latest point is another (an answer lost): since it. */
			char latest[CBT_NAME_MAX];

			target_latest(s, p, p->disks[i].id, latest, sizeof(latest));
			if (!strcmp(latest, p->point))
				continue; /* it has this very set */
			log_warn("vm %s: disk %s: %s; sending the changes since %s", p->name,
				 p->disks[i].id, e->reason, latest[0] ? latest : "nothing (full)");
			fd = cut_set(s, p, &p->disks[i], latest, e);
			if (fd < 0)
				return -1;
			ret = upload(s, p, p->disks[i].id, fd, &answer, e);
			close(fd);
			json_decref(answer);
		}
		if (ret)
			return -1;
	}
	return 0;
}

static bool vm_off(struct vmrt *vm, unsigned gen)
{
	(void)gen;
	return !state_active(vm->state);
}

/* Step 2: the guest shut down within timeout_s; -1 with e otherwise.
 * A guest that ignores the request: without force, the stop is cancelled
 * (the VM runs on, untouched; *p->was_running cleared, nothing to start
 * again); with force, the stop's deadline turns it off and *forced says
 * so. The worker's deadline is set PLAN_BACKSTOP_S later than ours without
 * force: it turns the VM off only if cellad died before cancelling. */
static int shut_down(struct sup *s, struct plan *p, json_int_t timeout_s, bool force,
		     bool *forced, struct cerr *e)
{
	json_t *res = NULL, *body = json_pack("{s:I}", "timeout_s",
					      timeout_s + (force ? 0 : PLAN_BACKSTOP_S));
	struct vmrt *vm;
	bool pending = false, off, ignored;
	int ret;

	*forced = false;
	ret = sup_action(s, p->name, SUP_STOP, body, &res, &pending, e);
	json_decref(body);
	json_decref(res);
	if (ret)
		return -1;
	vm = sup_vm_lock_name(s, p->name, e);
	if (!vm)
		return -1;
	off = sup_wait_until(s, vm, vm_off, 0, (int)(timeout_s * 1000));
	if (!off && !force) {
		char why[128];
		struct cerr ce = { 0 };

		snprintf(why, sizeof(why), "planned failover abandoned: the guest did not shut "
			 "down within %lld s", (long long)timeout_s);
		if (!sup_stop_cancel(s, vm, why, &ce)) {
			sup_vm_unlock(s, vm);
			p->was_running = false; /* it runs: nothing to start again */
			return cerr_set(e, CERR_STATE, "shutdown_timeout_s", "the guest did not shut "
					"down within %lld s (it ignored the request): the planned "
					"failover is abandoned, nothing was failed over, and the VM "
					"runs on here untouched, replicated as before; shut the guest "
					"down from inside first, give it longer (shutdown_timeout_s), or "
					"force it off (force)", (long long)timeout_s);
		}
		/* Too late to cancel: it is powering off by itself. */
		log_info("vm %s: the graceful stop was not cancelled (%s): waiting for it",
			 p->name, ce.reason);
	}
	if (!off)
		off = sup_wait_until(s, vm, vm_off, 0, PLAN_BACKSTOP_S * 1000);
	ignored = strstr(vm->exit_reason, "did not power off") != NULL;
	sup_vm_unlock(s, vm);
	if (!off)
		return cerr_set(e, CERR_STATE, "shutdown_timeout_s", "the VM did not stop");
	if (ignored && !force)
		return cerr_set(e, CERR_STATE, "shutdown_timeout_s", "the guest did not shut down "
				"and was turned off (cellad could not cancel the stop): nothing "
				"was failed over and the VM is started again here");
	*forced = ignored;
	if (ignored)
		log_warn("vm %s: the guest did not shut down within %lld s: turned off (force); "
			 "every block it wrote to its disks goes in the last set", p->name,
			 (long long)timeout_s);
	return 0;
}

/* Back to how it was: the VM started again (when it ran), replication
 * from here resumed, under a new point name. */
static void restore(struct sup *s, struct plan *p)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	json_t *j, *res = NULL;
	bool pending;
	struct cerr e = { 0 };

	snprintf(path, sizeof(path), "%s/vms/%s/replica.json", s->conf.state_dir, p->uuid);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	j = json_load_file(path, 0, NULL);
	if (j) { /* the point name p->point may exist on some disks there now */
		json_object_set_new(j, "seq", json_integer(json_integer_value(
			json_object_get(j, "seq")) + 1));
		if (json_dump_file(j, tmp, JSON_INDENT(1)) || rename(tmp, path)) {
			log_warn("vm %s: cannot update %s", p->name, path);
			unlink(tmp);
		}
		json_decref(j);
	}
	if (p->was_running && sup_action(s, p->name, SUP_START, NULL, &res, &pending, &e))
		log_err("vm %s: not started again after the failed planned failover: %s", p->name,
			e.reason);
	json_decref(res);
	if (rep_out_attach(s, p->name, &e))
		log_err("vm %s: replication not resumed: %s", p->name, e.reason);
}

static int plan_load(struct sup *s, const char *name, struct plan *p, struct cerr *e)
{
	struct vmrt *vm = sup_vm_lock_name(s, name, e);

	if (!vm)
		return -1;
	snprintf(p->name, sizeof(p->name), "%s", vm->def.name);
	snprintf(p->uuid, sizeof(p->uuid), "%s", vm->def.uuid);
	if ((vm->state != VS_RUNNING && vm->state != VS_PAUSED && state_active(vm->state)) ||
	    vm->state == VS_SAVED) {
		bool saved = vm->state == VS_SAVED;

		cerr_set(e, CERR_STATE, "", saved ? "the VM has a saved state (its guest did not "
			 "shut down): start it first, or delete the state" : "the VM is %s: wait "
			 "until it runs or is off", vm_state_name(vm->state));
		sup_vm_unlock(s, vm);
		return -1;
	}
	p->was_running = state_active(vm->state);
	p->def = vmdef_to_json(&vm->def);
	for (unsigned i = 0; i < vm->def.nr_disks; i++) {
		struct plan_disk *d = &p->disks[p->nr++];

		snprintf(d->id, sizeof(d->id), "%s", vm->def.disks[i].id);
		d->path = strdup(vm->def.disks[i].path);
		d->fmt = sup_disk_fmt(&vm->def.disks[i]);
	}
	sup_vm_unlock(s, vm);
	for (unsigned i = 0; i < p->nr; i++)
		if (!p->disks[i].path)
			return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	return 0;
}

struct plan_opts {
	json_int_t timeout_s;
	bool start, reverse, force;
	const char *reverse_to;
};

static int parse_body(json_t *body, struct plan_opts *o, struct cerr *e)
{
	const char *k;
	json_t *v;

	json_object_foreach(body, k, v) {
		if (!strcmp(k, "planned")) {
			if (!json_is_true(v))
				return cerr_set(e, CERR_INVALID, k, "true: the source's failover is "
						"planned (an unplanned one runs on the target)");
		} else if (!strcmp(k, "timeout_s") || !strcmp(k, "shutdown_timeout_s")) {
			/* The stop's own deadline (at most 3600) comes PLAN_BACKSTOP_S later. */
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 3600 - PLAN_BACKSTOP_S)
				return cerr_set(e, CERR_INVALID, k, "seconds the guest has to shut "
						"down: 1 to %d", 3600 - PLAN_BACKSTOP_S);
			o->timeout_s = json_integer_value(v);
		} else if (!strcmp(k, "start") || !strcmp(k, "reverse") || !strcmp(k, "force")) {
			if (!json_is_boolean(v))
				return cerr_set(e, CERR_INVALID, k, "expected a boolean");
			*(!strcmp(k, "start") ? &o->start : !strcmp(k, "force") ? &o->force
			  : &o->reverse) = json_is_true(v);
		} else if (!strcmp(k, "reverse_to")) {
			if (!json_is_string(v) || !json_string_length(v) ||
			    json_string_length(v) > 63)
				return cerr_set(e, CERR_INVALID, k, "this host's name on the target "
						"(its cella host list)");
			o->reverse_to = json_string_value(v);
		} else {
			return cerr_set(e, CERR_INVALID, k, "unknown field");
		}
	}
	return 0;
}

int sup_replica_planned_failover(struct sup *s, const char *name, json_t *body, json_t **out,
				 struct cerr *e)
{
	struct plan p = { 0 };
	struct plan_opts o = { .timeout_s = PLAN_TIMEOUT_DEF_S, .start = true, .reverse = true };
	json_t *reply = NULL, *req, *sizes, *d, *rev = NULL;
	char path[256], me[256] = "";
	long status;
	size_t i;
	int ret = -1;

	*out = NULL;
	if (parse_body(body, &o, e) ||
	    plan_load(s, name, &p, e))
		goto out;
	if (gethostname(me, sizeof(me) - 1))
		me[0] = 0;
	/* 1. The shipper stops; the target must still replicate. */
	if (rep_out_detach(s, p.name, &p.conf, e))
		goto out;
	snprintf(p.to, sizeof(p.to), "%s", json_string_value(json_object_get(p.conf, "to")) ?: "");
	snprintf(p.last, sizeof(p.last), "%s",
		 json_string_value(json_object_get(p.conf, "last")) ?: "");
	snprintf(p.point, sizeof(p.point), "r%06u",
		 (unsigned)json_integer_value(json_object_get(p.conf, "seq")) + 1);
	p.zstd = !strcmp(json_string_value(json_object_get(p.conf, "compression")) ?: "", "zstd");
	snprintf(path, sizeof(path), "/v1/replicas/%s", p.name);
	ret = rep_peer_call(s, p.to, "GET", path, NULL, PLAN_CALL_S, &reply, &status, e);
	if (ret || strcmp(json_string_value(json_object_get(reply, "state")) ?: "", "replicating")) {
		if (ret)
			err_more(e, "nothing was done (the VM goes on here)");
		else
			cerr_set(e, CERR_STATE, "", "the replica on %s is %s, not replicating: "
				 "nothing was done", p.to,
				 json_string_value(json_object_get(reply, "state")) ?: "?");
		ret = -1;
		p.was_running = false; /* still runs: nothing to start */
		restore(s, &p);
		goto out;
	}
	ret = -1; /* until the failover is done */
	sizes = json_object();
	json_array_foreach(json_object_get(reply, "disks"), i, d)
		json_object_set(sizes, json_string_value(json_object_get(d, "id")) ?: "?",
				json_object_get(d, "size"));
	json_decref(reply);
	reply = NULL;
	/* 2. The guest shuts down. */
	if (p.was_running && shut_down(s, &p, o.timeout_s, o.force, &p.forced, e)) {
		json_decref(sizes);
		restore(s, &p);
		sup_emit_named(s, p.name, "", "replica-planned-failover-abandoned", e->reason);
		goto out;
	}
	/* 3. The last set, 4. the definition as it is now and the failover. */
	req = json_pack("{s:O, s:O, s:O, s:s}", "vm", p.def, "keep",
			json_object_get(p.conf, "keep"), "disk_sizes", sizes, "from", me);
	json_decref(sizes);
	if (ship_last(s, &p, e) ||
	    rep_peer_call(s, p.to, "POST", "/v1/replicas", req, PLAN_CALL_S, &reply, &status, e)) {
		json_decref(req);
		err_more(e, "nothing was failed over: the VM %s here again",
			 p.was_running ? "was started" : "stays");
		restore(s, &p);
		goto out;
	}
	json_decref(req);
	json_decref(reply);
	reply = NULL;
	req = json_pack("{s:s, s:b}", "point", p.point, "start", o.start);
	snprintf(path, sizeof(path), "/v1/replicas/%s/failover", p.name);
	ret = rep_peer_call(s, p.to, "POST", path, req, PLAN_START_S, &reply, &status, e);
	json_decref(req);
	if (ret) {
		json_t *st = NULL;
		struct cerr ge = { 0 };
		long gs;

		snprintf(path, sizeof(path), "/v1/replicas/%s", p.name);
		if (!rep_peer_call(s, p.to, "GET", path, NULL, PLAN_CALL_S, &st, &gs, &ge) &&
		    !strcmp(json_string_value(json_object_get(st, "state")) ?: "", "replicating")) {
			err_more(e, "the target did not fail over: the VM %s here again",
				 p.was_running ? "was started" : "stays");
			restore(s, &p);
		} else {
			err_more(e, "the target may have failed over (%s): the VM stays off here; "
				 "see cella replica show %s on %s before starting it",
				 st ? json_string_value(json_object_get(st, "state")) ?: "?" : ge.reason,
				 p.name, p.to);
		}
		json_decref(st);
		goto out;
	}
	/* Failed over: replication from here ends. */
	snprintf(path, sizeof(path), "%s/vms/%s/replica.json", s->conf.state_dir, p.uuid);
	unlink(path);
	rep_spool_drop(s, p.uuid, NULL);
	{
		char detail[200];

		snprintf(detail, sizeof(detail), "to %s at point %s (%llu bytes in the last set)%s",
			 p.to, p.point, (unsigned long long)p.sent,
			 p.forced ? "; the guest did not shut down and was turned off (force)" : "");
		sup_emit_named(s, p.name, "", "replica-planned-failover", detail);
	}
	log_info("vm %s: planned failover to %s at point %s", p.name, p.to, p.point);
	/* 5. The target replicates back here, from the common point. */
	if (o.reverse) {
		json_t *rr = NULL;
		struct cerr re = { 0 };
		long rs;

		req = json_pack("{s:s, s:O, s:O, s:O, s:O}", "to", o.reverse_to ?: me, "interval_ms",
				json_object_get(p.conf, "interval_ms"), "keep",
				json_object_get(p.conf, "keep"), "compression",
				json_object_get(p.conf, "compression"), "max_bandwidth",
				json_object_get(p.conf, "max_bandwidth"));
		snprintf(path, sizeof(path), "/v1/vms/%s/replica/reverse", p.name);
		if (rep_peer_call(s, p.to, "POST", path, req, PLAN_START_S, &rr, &rs, &re)) {
			rev = json_pack("{s:s}", "error", re.reason);
			log_warn("vm %s: failed over to %s, but replication is not reversed: %s (cella "
				 "replica reverse %s on %s)", p.name, p.to, re.reason, p.name, p.to);
		} else {
			rev = json_incref(rr);
		}
		json_decref(rr);
		json_decref(req);
	}
	*out = json_pack("{s:s, s:s, s:s, s:b, s:I, s:b, s:o?}", "vm", p.name, "to", p.to, "point",
			 p.point, "started", o.start, "bytes_sent", (json_int_t)p.sent, "forced",
			 p.forced, "reverse", rev);
	json_object_set(*out, "failover", reply);
	ret = 0;
out:
	json_decref(reply);
	plan_free(&p);
	return ret;
}
