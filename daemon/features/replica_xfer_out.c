/* replica_xfer_out.c: the source's half of resumable change-set uploads
 * (replica_xfer.h, docs/replica.md "Resuming a cut transfer"): the spool
 * of a set not yet delivered kept with its point name until the target
 * has it, each delivery resumed from the bytes the target holds, a set the
 * target refuses whole sent again from its first byte, and the target as a
 * pool host or a peer. */
#include "sup_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "move_pool.h"
#include "replica_xfer.h"

#define XFER_STALL_S    30  /* nothing moved for this long: the link is gone */
#define XFER_TIMEOUT_S  600 /* beyond what the bandwidth cap needs */
#define XFER_TRIES      3

/* The target ------------------------------------------------------------------------------ */

int rep_peer_find(struct sup *s, const char *to, struct rep_peer *rp, struct cerr *e)
{
	const char *me = move_pool_me(s);
	int ret;

	memset(rp, 0, sizeof(*rp));
	if (me && !strcmp(me, to))
		return cerr_set(e, CERR_CONFLICT, "to", "%s is this host: replicate to another one",
				to);
	ret = move_pool_dest(s, to, false, &rp->host, e);
	if (ret < 0)
		return -1;
	if (ret > 0) {
		/* The replica is a VM definition on the target (replica_vmdef.c),
		 * and names are unique in a pool: a host of this pool cannot
		 * keep one of this pool's VMs. */
		rep_peer_put(rp);
		return cerr_set(e, CERR_CONFLICT, "to", "%.64s is a host of this pool: a replica is a "
				"VM definition of the same name on its target, and names are unique "
				"in a pool; replicate to a host outside the pool or in another pool "
				"(cella host add)", to);
	}
	rp->host = peer_find(s, to, &rp->p, e);
	if (!rp->host) {
		if (e->kind == CERR_NOT_FOUND)
			cerr_set(e, CERR_NOT_FOUND, "to", "no host named '%.64s': neither a host of "
				 "this pool nor a peer (cella host add)", to);
		return -1;
	}
	if (rep_broker_pick(s, rp, e)) { /* a pool's members: the first that answers */
		rep_peer_put(rp);
		return -1;
	}
	return 0;
}

void rep_peer_put(struct rep_peer *rp)
{
	json_decref(rp->host);
	rp->host = NULL;
}

/* The spool ------------------------------------------------------------------------------- */

int rep_spool_path(struct sup *s, const char *uuid, const char *disk, const char *suffix,
		   char *out, size_t len)
{
	int n = snprintf(out, len, "%s/vms/%s/replica-%s.xfer%s", s->conf.state_dir, uuid, disk,
			 suffix);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int meta_read(struct sup *s, const char *uuid, const char *disk, struct rep_spool *sp)
{
	char path[PATH_MAX];
	json_t *j;
	const char *point, *since, *id;
	int ret = -1;

	memset(sp, 0, sizeof(*sp));
	sp->fd = -1;
	if (rep_spool_path(s, uuid, disk, ".json", path, sizeof(path)))
		return -1;
	j = json_load_file(path, 0, NULL);
	point = json_string_value(json_object_get(j, "point"));
	since = json_string_value(json_object_get(j, "since"));
	id = json_string_value(json_object_get(j, "id"));
	if (point && since && id && strlen(point) < sizeof(sp->point) &&
	    strlen(since) < sizeof(sp->since) && strlen(id) < sizeof(sp->id)) {
		snprintf(sp->point, sizeof(sp->point), "%s", point);
		snprintf(sp->since, sizeof(sp->since), "%s", since);
		snprintf(sp->id, sizeof(sp->id), "%s", id);
		sp->total = (uint64_t)json_integer_value(json_object_get(j, "total"));
		sp->data = (uint64_t)json_integer_value(json_object_get(j, "data"));
		sp->done = json_is_true(json_object_get(j, "done"));
		sp->cut_ms = (int64_t)json_integer_value(json_object_get(j, "cut_at"));
		sp->flushed = json_is_true(json_object_get(j, "flushed"));
		ret = 0;
	}
	json_decref(j);
	return ret;
}

static int meta_write(struct sup *s, const char *uuid, const char *disk,
		      const struct rep_spool *sp)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b, s:I, s:b}", "point", sp->point,
			      "since", sp->since, "id", sp->id, "total", (json_int_t)sp->total,
			      "data", (json_int_t)sp->data, "done", sp->done, "cut_at",
			      (json_int_t)sp->cut_ms, "flushed", sp->flushed);
	int ret = -EIO;

	if (j && !rep_spool_path(s, uuid, disk, ".json", path, sizeof(path))) {
		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		if (!json_dump_file(j, tmp, 0) && !rename(tmp, path))
			ret = 0;
		else
			unlink(tmp);
	}
	json_decref(j);
	return ret;
}

void rep_spool_drop(struct sup *s, const char *uuid, const char *disk)
{
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dir;

	if (disk) {
		if (!rep_spool_path(s, uuid, disk, "", path, sizeof(path)))
			unlink(path);
		if (!rep_spool_path(s, uuid, disk, ".json", path, sizeof(path)))
			unlink(path);
		return;
	}
	if (snprintf(path, sizeof(path), "%s/vms/%s", s->conf.state_dir, uuid) >=
	    (int)sizeof(path) || !(dir = opendir(path)))
		return;
	while ((d = readdir(dir)))
		if (!strncmp(d->d_name, "replica-", 8) && strstr(d->d_name, ".xfer"))
			unlinkat(dirfd(dir), d->d_name, 0);
	closedir(dir);
}

int rep_spool_load(struct sup *s, const char *uuid, const char *disk, const char *since,
		   const char *point, struct rep_spool *sp)
{
	char path[PATH_MAX];
	struct stat st;

	if (meta_read(s, uuid, disk, sp))
		goto none;
	if (strcmp(sp->since, since) || strcmp(sp->point, point))
		goto none;
	if (sp->done)
		return 1;
	if (rep_spool_path(s, uuid, disk, "", path, sizeof(path)))
		goto none;
	sp->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (sp->fd >= 0 && !fstat(sp->fd, &st) && (uint64_t)st.st_size == sp->total && sp->total)
		return 1;
	log_warn("vm %s: the spool of disk %s's point %s is gone or changed: made again", uuid,
		 disk, point);
none:
	if (sp->fd >= 0)
		close(sp->fd);
	sp->fd = -1;
	rep_spool_drop(s, uuid, disk);
	return 0;
}

int rep_spool_pending(struct sup *s, const char *uuid, const char *const *disks, unsigned n,
		      const char *since, char *point, size_t len)
{
	struct rep_spool sp;

	for (unsigned i = 0; i < n; i++)
		if (!meta_read(s, uuid, disks[i], &sp) && !strcmp(sp.since, since)) {
			snprintf(point, len, "%s", sp.point);
			return 1;
		}
	return 0;
}

int rep_spool_cut(struct sup *s, const char *uuid, const char *const *disks, unsigned n,
		  const char *since, const char *point, int64_t *cut_ms, bool *flushed)
{
	struct rep_spool sp;
	bool found = false;

	*cut_ms = 0;
	*flushed = true;
	for (unsigned i = 0; i < n; i++) {
		if (meta_read(s, uuid, disks[i], &sp) || strcmp(sp.since, since) ||
		    strcmp(sp.point, point) || sp.cut_ms <= 0)
			continue;
		if (!found || sp.cut_ms < *cut_ms)
			*cut_ms = sp.cut_ms;
		*flushed = *flushed && sp.flushed;
		found = true;
	}
	if (!found)
		*flushed = false;
	return found;
}

int rep_spool_save(struct sup *s, const char *uuid, const char *disk, struct rep_spool *sp,
		   struct cerr *e)
{
	char path[PATH_MAX], proc[64];
	unsigned char nonce[8];
	struct stat st;
	size_t n;

	rep_spool_drop(s, uuid, disk);
	if (rep_spool_path(s, uuid, disk, "", path, sizeof(path)))
		return cerr_set(e, CERR_INVALID, "disk", "name too long");
	if (fdatasync(sp->fd) || fstat(sp->fd, &st))
		return cerr_set(e, CERR_NO_SPACE, "", "the spool: %s", strerror(errno));
	/* The file, named (it may be unnamed: O_TMPFILE). */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", sp->fd);
	if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW))
		return cerr_set(e, CERR_NO_SPACE, "", "cannot name the spool %s: %s", path,
				strerror(errno));
	if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		memset(nonce, 0, sizeof(nonce)); /* the point and size still tell sets apart */
	n = (size_t)snprintf(sp->id, sizeof(sp->id), "%.31s-", sp->point);
	for (size_t i = 0; i < sizeof(nonce) && n + 2 < sizeof(sp->id); i++, n += 2)
		snprintf(sp->id + n, sizeof(sp->id) - n, "%02x", nonce[i]);
	sp->total = (uint64_t)st.st_size;
	sp->done = false;
	if (meta_write(s, uuid, disk, sp)) {
		unlink(path);
		return cerr_set(e, CERR_NO_SPACE, "", "cannot record the spool %s", path);
	}
	return 0;
}

void rep_spool_done(struct sup *s, const char *uuid, const char *disk, struct rep_spool *sp)
{
	char path[PATH_MAX];

	sp->done = true;
	if (!rep_spool_path(s, uuid, disk, "", path, sizeof(path)))
		unlink(path);
	if (meta_write(s, uuid, disk, sp))
		rep_spool_drop(s, uuid, disk); /* then the round sends it again: refused, followed */
}

/* Delivery -------------------------------------------------------------------------------- */

static long stall_s(void)
{
	/* Tests cut links for seconds, not minutes (tests/daemon/test_replica_xfer.py). */
	const char *v = getenv("CELLA_TEST_REPLICA_STALL_S");
	long n = v ? strtol(v, NULL, 10) : 0;

	return n > 0 && n < 3600 ? n : XFER_STALL_S;
}

/* How many bytes of sp the target holds (0 when none or another set's). */
static int target_has(struct rep_peer *rp, const char *url, const struct rep_spool *sp,
		      uint64_t *have, struct cerr *e)
{
	json_t *reply = NULL, *up;
	char err[384];
	long status = 0;

	*have = 0;
	if (peer_call(&rp->p, "GET", url, NULL, 60, &status, &reply, err, sizeof(err)))
		return cerr_set(e, CERR_PEER, "to", "%s", err);
	if (status != 200) {
		peer_error_text(&rp->p, status, reply, err, sizeof(err));
		json_decref(reply);
		return cerr_set(e, status == 409 ? CERR_STATE : CERR_PEER, "to", "%s", err);
	}
	up = json_object_get(reply, "upload");
	if (!strcmp(json_string_value(json_object_get(up, "id")) ?: "", sp->id) &&
	    (uint64_t)json_integer_value(json_object_get(up, "total")) == sp->total &&
	    json_integer_value(json_object_get(up, "bytes")) > 0)
		*have = (uint64_t)json_integer_value(json_object_get(up, "bytes"));
	json_decref(reply);
	return 0;
}

int rep_xfer_send(struct sup *s, struct rep_peer *rp, const char *url, const char *query,
		  struct rep_spool *sp, uint64_t max_bps, struct rep_xfer_stats *st,
		  json_t **answer, struct cerr *e)
{
	bool fresh = false; /* from byte 0 whatever the target has */

	(void)s;
	*answer = NULL;
	for (unsigned t = 0; t < XFER_TRIES; t++) {
		struct peer_upload_opts o = { .max_bps = max_bps, .stall_s = stall_s() };
		char path[512], err[384];
		const char *field;
		uint64_t have = 0;
		long status = 0;
		int ret;

		if (!fresh && target_has(rp, url, sp, &have, e))
			return -1;
		/* All of it there but never finished: the last byte again ends it. */
		o.off = have >= sp->total ? sp->total - 1 : have;
		o.len = sp->total - o.off;
		o.timeout_s = XFER_TIMEOUT_S + (long)(max_bps ? o.len / max_bps : 0);
		snprintf(path, sizeof(path), "%s?id=%s&total=%llu&offset=%llu%s%s", url, sp->id,
			 (unsigned long long)sp->total, (unsigned long long)o.off,
			 query && *query ? "&" : "", query && *query == '?' ? query + 1 : query ?: "");
		if (o.off) {
			st->resumed++;
			st->skipped += o.off;
			log_info("%s: set %s resumed from byte %llu of %llu", url, sp->id,
				 (unsigned long long)o.off, (unsigned long long)sp->total);
		}
		st->from = o.off;
		json_decref(*answer);
		*answer = NULL;
		ret = peer_upload_range(&rp->p, path, sp->fd, &o, &status, answer, err, sizeof(err));
		st->sent += o.sent;
		if (ret) /* the link: what arrived stays there for the next try */
			return cerr_set(e, CERR_PEER, "to", "%s", err);
		if (status >= 200 && status <= 299)
			return 0;
		peer_error_text(&rp->p, status, *answer, err, sizeof(err));
		field = json_string_value(json_object_get(json_object_get(*answer, "error"),
							  "field")) ?: "";
		if (status == 400 && (!strcmp(field, "offset") || !strcmp(field, "id") ||
				      !strcmp(field, "total")) && !fresh) {
			log_warn("%s: %s: set %s sent again from byte 0", url, err, sp->id);
			fresh = true;
			continue;
		}
		if (status == 400 && o.off) {
			/* Refused whole after a resume: what the target kept may
			 * be bad; the spool is tried once more from byte 0. */
			log_warn("%s: %s: set %s refused after a resume; sent again whole", url, err,
				 sp->id);
			st->refused++;
			fresh = true;
			continue;
		}
		if (status == 400)
			st->refused++;
		return cerr_set(e, status == 400 ? CERR_INVALID : status == 409 ? CERR_CONFLICT
				: status == 507 ? CERR_NO_SPACE : CERR_PEER, "to", "%s", err);
	}
	return cerr_set(e, CERR_PEER, "to", "set %s not delivered after %d tries", sp->id,
			XFER_TRIES);
}
