/* replica_in.c: the target's side of replication (docs/replica.md): the
 * replicas other hosts keep here. Each is a directory,
 * state_dir/replicas/NAME/ (in a pool with pool storage, its replicas/NAME/:
 * replica_broker.c), with replica.json (the VM's definition as its
 * source sent it, the source, the retention, the state) and one point store
 * per disk (disk/replica.h, disk-ID/). Change sets arrive as streamed
 * uploads into disk-ID.set, and become points once checked whole; a
 * failover defines the VM here on layers of its own over a point, and
 * starts it. Replicas are serialised by rep_lock (the stores' locks would
 * only refuse a second opener). */
#include "replica_in.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbt.h"
#include "disk.h"
#include "log.h"
#include "replica.h"
#include "replica_priv.h"
#include "replica_vmdef.h"
#include "replica_xfer.h"

#define REPLICA_KEEP_DEF 24
#define REPLICA_KEEP_MAX 1000
#define SET_SLACK        (1ULL << 20) /* header and extent list, beyond 16 B per block */

static int rdir(struct sup *s, const char *name, const char *file, char *out, size_t len)
{
	char root[PATH_MAX];
	int n;

	if (rep_in_root(s, root, sizeof(root)))
		return -ENAMETOOLONG;
	n = file ? snprintf(out, len, "%s/%s/%s", root, name, file)
		 : snprintf(out, len, "%s/%s", root, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static json_t *rec_load(struct sup *s, const char *name, struct cerr *e)
{
	char path[PATH_MAX];
	json_t *rec;

	if (!vmdef_name_valid(name) || rdir(s, name, "replica.json", path, sizeof(path))) {
		cerr_set(e, CERR_INVALID, "name", "not a valid replica name");
		return NULL;
	}
	rec = json_load_file(path, 0, NULL);
	if (!json_is_object(rec) || !json_is_object(json_object_get(rec, "vm"))) {
		json_decref(rec);
		cerr_set(e, CERR_NOT_FOUND, "name", "no replica of '%s' on this host", name);
		return NULL;
	}
	return rec;
}

static int rec_save(struct sup *s, const char *name, json_t *rec, struct cerr *e)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];

	if (rdir(s, name, "replica.json", path, sizeof(path)))
		return cerr_set(e, CERR_INVALID, "name", "name too long");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (json_dump_file(rec, tmp, JSON_INDENT(1)) || rename(tmp, path)) {
		unlink(tmp);
		return cerr_set(e, CERR_NO_SPACE, "", "cannot write %s: %s", path, strerror(errno));
	}
	return 0;
}

static const char *rec_state(json_t *rec)
{
	return json_string_value(json_object_get(rec, "state")) ?: "replicating";
}

/* The disk entry of rec called id: its index in vm.disks, or -1. */
static int rec_disk(json_t *rec, const char *id, uint64_t *size)
{
	json_t *disks = json_object_get(rec, "disk_sizes"), *v;
	const char *k;

	json_object_foreach(disks, k, v)
		if (!strcmp(k, id)) {
			*size = (uint64_t)json_integer_value(v);
			return 0;
		}
	return -1;
}

static int store_open(struct sup *s, const char *name, const char *disk, const char *suffix,
		      bool create, struct replica **r, struct cerr *e)
{
	char path[PATH_MAX], file[96], err[256];
	int ret;

	snprintf(file, sizeof(file), "disk-%s%s", disk, suffix);
	if (rdir(s, name, file, path, sizeof(path)))
		return cerr_set(e, CERR_INVALID, "name", "name too long");
	ret = replica_open(r, path, create, err, sizeof(err));
	if (ret)
		return cerr_set(e, ret == -ENOENT ? CERR_NOT_FOUND : ret == -EBUSY ?
				CERR_UNAVAILABLE : CERR_INTERNAL, "disk", "%s", err);
	return 0;
}

/* {name, uuid, from, state, keep, disks: [{id, size, points: [{name, seq,
 * file_bytes, made_ns}]}], points: [names every disk has]} (rep_lock held). */
static json_t *status_json(struct sup *s, const char *name, json_t *rec)
{
	json_t *out = json_pack("{s:s, s:O, s:O, s:s, s:O, s:[], s:[]}", "name", name, "uuid",
				json_object_get(json_object_get(rec, "vm"), "uuid"), "from",
				json_object_get(rec, "from") ?: json_null(), "state", rec_state(rec),
				"keep", json_object_get(rec, "keep"), "disks", "points");
	json_t *sizes = json_object_get(rec, "disk_sizes"), *v, *common = NULL;
	const char *id;

	if (json_object_get(rec, "keep_for_s"))
		json_object_set(out, "keep_for_s", json_object_get(rec, "keep_for_s"));
	json_object_foreach(sizes, id, v) {
		struct replica_point *pts = NULL;
		struct replica *r = NULL;
		struct cerr e = { 0 };
		unsigned n = 0;
		char err[256] = "out of memory";
		json_t *d = json_pack("{s:s, s:O, s:[]}", "id", id, "size", v, "points"), *names;

		/* Every point (retention by age may keep many). */
		if (!store_open(s, name, id, "", false, &r, &e) &&
		    (replica_points(r, NULL, 0, &n, err, sizeof(err)) ||
		     !(pts = calloc(n ? n : 1, sizeof(*pts))) ||
		     replica_points(r, pts, n, &n, err, sizeof(err)))) {
			json_object_set_new(d, "error", json_string(err));
			n = 0;
		}
		else if (e.kind)
			json_object_set_new(d, "error", json_string(e.kind == CERR_NOT_FOUND ?
								   "no point yet" : e.reason));
		replica_close(r);
		names = json_array();
		for (unsigned i = 0; i < n && pts; i++) {
			json_t *pj = json_pack("{s:s, s:i, s:I, s:I}", "name", pts[i].name, "seq",
					       (int)pts[i].seq, "file_bytes",
					       (json_int_t)pts[i].file_bytes, "made_ns",
					       (json_int_t)pts[i].made_ns);

			rep_in_ops_point_json(rec, pj);
			json_array_append_new(json_object_get(d, "points"), pj);
			json_array_append_new(names, json_string(pts[i].name));
		}
		free(pts);
		if (!common) {
			common = names;
		} else { /* keep the names this disk has too */
			json_t *keep = json_array(), *c;
			size_t i, j;

			json_array_foreach(common, i, c)
				for (j = 0; j < json_array_size(names); j++)
					if (json_equal(c, json_array_get(names, j)))
						json_array_append(keep, c);
			json_decref(common);
			json_decref(names);
			common = keep;
		}
		json_array_append_new(json_object_get(out, "disks"), d);
	}
	if (common)
		json_object_set_new(out, "points", common);
	return out;
}

int sup_replica_in_create(struct sup *s, json_t *body, json_t **out, struct cerr *e)
{
	json_t *vmj = json_object_get(body, "vm"), *jkeep = json_object_get(body, "keep");
	json_t *jfrom = json_object_get(body, "from"), *rec, *old, *sizes, *v;
	char path[PATH_MAX];
	const char *key;
	struct vmdef d;
	struct cerr ve = { 0 };
	int ret = -1;

	*out = NULL;
	json_object_foreach(body, key, v)
		if (strcmp(key, "vm") && strcmp(key, "keep") && strcmp(key, "from") &&
		    strcmp(key, "disk_sizes") && !rep_in_ops_create_key(key))
			return cerr_set(e, CERR_INVALID, key, "unknown field");
	if (rep_in_ops_create_check(body, e))
		return -1;
	if (!json_is_object(vmj))
		return cerr_set(e, CERR_INVALID, "vm", "required: the VM's definition");
	if (json_object_get(vmj, "replica"))
		return cerr_set(e, CERR_INVALID, "vm", "replica: a replica's definition is not "
				"replicated (fail over to it first)");
	if (jkeep && (!json_is_integer(jkeep) || json_integer_value(jkeep) < 1 ||
		      json_integer_value(jkeep) > REPLICA_KEEP_MAX))
		return cerr_set(e, CERR_INVALID, "keep", "points to keep: 1 to %d", REPLICA_KEEP_MAX);
	if (jfrom && !json_is_string(jfrom))
		return cerr_set(e, CERR_INVALID, "from", "expected a host name");
	sizes = json_object_get(body, "disk_sizes");
	if (!json_is_object(sizes))
		return cerr_set(e, CERR_INVALID, "disk_sizes", "required: {disk id: bytes}");
	vmdef_init(&d);
	if (vmdef_from_json(&d, vmj, &ve)) {
		vmdef_free(&d);
		return cerr_set(e, CERR_INVALID, "vm", "%s: %s", ve.field, ve.reason);
	}
	for (unsigned i = 0; i < d.nr_disks; i++) {
		v = json_object_get(sizes, d.disks[i].id);
		if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
		    json_integer_value(v) % 512 || (uint64_t)json_integer_value(v) > (1ULL << 50)) {
			cerr_set(e, CERR_INVALID, "disk_sizes", "disk %s: its size in bytes (a whole "
				 "number of sectors) is required", d.disks[i].id);
			goto out;
		}
	}
	if (json_object_size(sizes) != d.nr_disks) {
		cerr_set(e, CERR_INVALID, "disk_sizes", "one size per disk of the VM");
		goto out;
	}
	if (rep_broker_claim(s, d.name, d.uuid, false, e)) /* a pool as target (replica_broker.c) */
		goto out;
	pthread_mutex_lock(&s->rep_lock);
	old = rec_load(s, d.name, &ve);
	if (old && strcmp(json_string_value(json_object_get(json_object_get(old, "vm"), "uuid")) ?: "",
			  d.uuid)) {
		cerr_set(e, CERR_EXISTS, "vm", "a replica of another VM called '%s' is here", d.name);
		goto unlock;
	}
	if (old && strcmp(rec_state(old), "replicating")) {
		cerr_set(e, CERR_STATE, "vm", "the replica of '%s' was failed over (%s): delete it "
			 "first", d.name, rec_state(old));
		goto unlock;
	}
	/* The replica is a VM definition here too (replica_vmdef.c): its name
	 * and UUID must be free for it, or be its own already. */
	if (rep_vmdef_check(s, d.name, d.uuid, e))
		goto unlock;
	if (rep_in_root(s, path, sizeof(path)))
		path[0] = 0;
	if ((mkdir(path, 0700) && errno != EEXIST) || rdir(s, d.name, NULL, path, sizeof(path)) ||
	    (mkdir(path, 0700) && errno != EEXIST)) {
		cerr_set(e, CERR_NO_SPACE, "", "cannot make %s: %s", path, strerror(errno));
		goto unlock;
	}
	rec = json_pack("{s:O, s:O, s:O, s:i, s:s, s:I}", "vm", vmj, "disk_sizes", sizes, "from",
			jfrom ?: json_null(), "keep", jkeep ? (int)json_integer_value(jkeep)
			: REPLICA_KEEP_DEF, "state", "replicating", "created_at",
			(json_int_t)(old ? json_integer_value(json_object_get(old, "created_at"))
				    : sup_now_wall()));
	rep_in_ops_create_record(body, old, rec);
	/* The record first, then the definition: a cellad that dies between
	 * them makes the definition at its start (sup_replica_in_resume). */
	ret = rec_save(s, d.name, rec, e);
	if (!ret && rep_vmdef_define(s, d.name, rec, false, e)) {
		ret = -1;
		if (old) {
			struct cerr ig = { 0 };

			if (rec_save(s, d.name, old, &ig))
				log_warn("replica %s: %s", d.name, ig.reason);
		} else if (!rdir(s, d.name, NULL, path, sizeof(path))) {
			char rm[PATH_MAX + 16];

			snprintf(rm, sizeof(rm), "rm -rf -- '%s'", path);
			if (system(rm))
				log_warn("replica %s: %s left behind", d.name, path);
		}
	}
	if (!ret) {
		replica_xfer_in_drop(s, d.name, NULL); /* a source starting over sends sets anew */
		*out = status_json(s, d.name, rec);
		if (!old)
			sup_emit_named(s, d.name, "", "replica-created", jfrom ? json_string_value(jfrom)
				       : "");
	}
	json_decref(rec);
unlock:
	json_decref(old);
	pthread_mutex_unlock(&s->rep_lock);
out:
	vmdef_free(&d);
	return ret;
}

int sup_replica_in_get(struct sup *s, const char *name, json_t **out, struct cerr *e)
{
	json_t *rec;

	*out = NULL;
	pthread_mutex_lock(&s->rep_lock);
	rec = rec_load(s, name, e);
	if (rec)
		*out = status_json(s, name, rec);
	pthread_mutex_unlock(&s->rep_lock);
	json_decref(rec);
	return rec ? 0 : -1;
}

json_t *sup_replica_in_list(struct sup *s)
{
	json_t *arr = json_array();
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (rep_in_root(s, path, sizeof(path)))
		path[0] = 0;
	pthread_mutex_lock(&s->rep_lock);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		struct cerr e;
		json_t *rec;

		if (!vmdef_name_valid(de->d_name) || !(rec = rec_load(s, de->d_name, &e)))
			continue;
		json_array_append_new(arr, status_json(s, de->d_name, rec));
		json_decref(rec);
	}
	if (d)
		closedir(d);
	pthread_mutex_unlock(&s->rep_lock);
	return arr;
}

int sup_replica_in_delete(struct sup *s, const char *name, struct cerr *e)
{
	char path[PATH_MAX], cmd[PATH_MAX + 16];
	struct vmrt *vm;
	json_t *rec;
	int ret = 0;

	pthread_mutex_lock(&s->rep_lock);
	rec = rec_load(s, name, e);
	if (!rec) {
		pthread_mutex_unlock(&s->rep_lock);
		return -1;
	}
	if (json_string_value(json_object_get(rec, "test_vm"))) {
		ret = cerr_set(e, CERR_STATE, "name", "a test failover of '%s' runs on its points "
			       "(cella replica test-stop first)", name);
		goto out;
	}
	/* A VM failed over onto the points still reads them. */
	vm = sup_vm_lock_name(s, name, e);
	if (vm) {
		bool uses = !strcmp(rec_state(rec), "failed-over");

		sup_vm_unlock(s, vm);
		if (uses) {
			ret = cerr_set(e, CERR_STATE, "name", "VM '%s' runs on this replica's points "
				       "(failed over): delete the VM first", name);
			goto out;
		}
	}
	if (rdir(s, name, NULL, path, sizeof(path)) == 0) {
		/* The directory holds only what this file and the store made. */
		snprintf(cmd, sizeof(cmd), "%s.gone", path);
		if (rename(path, cmd)) {
			ret = cerr_set(e, CERR_INTERNAL, "", "cannot remove %s: %s", path,
				       strerror(errno));
			goto out;
		}
		/* The record went first: a definition left by a crash here goes
		 * at cellad's start (sup_replica_in_resume). */
		rep_vmdef_remove(s, name, json_string_value(json_object_get(json_object_get(rec, "vm"),
									    "uuid")) ?: "");
		{
			char rm[PATH_MAX + 32];
			int rc;

			snprintf(rm, sizeof(rm), "rm -rf -- '%s'", cmd);
			rc = system(rm);
			if (rc)
				log_warn("replica %s: %s left behind (rm: %d)", name, cmd, rc);
		}
	}
	sup_emit_named(s, name, "", "replica-deleted", "");
out:
	json_decref(rec);
	pthread_mutex_unlock(&s->rep_lock);
	return ret;
}

int replica_in_set_limit(struct sup *s, const char *name, const char *disk, uint64_t *max,
			 struct cerr *e)
{
	uint64_t size = 0;
	json_t *rec = rec_load(s, name, e);
	int ret = -1;

	if (!rec)
		return -1;
	if (strcmp(rec_state(rec), "replicating"))
		cerr_set(e, CERR_STATE, "name", "the replica of '%s' was failed over: it takes no "
			 "more changes", name);
	else if (rec_disk(rec, disk, &size))
		cerr_set(e, CERR_NOT_FOUND, "disk", "the replica of '%s' has no disk '%.32s'", name,
			 disk);
	else
		ret = 0;
	/* At most every block once, with an extent entry (16 bytes) per 4 KiB. */
	*max = size + size / (CBT_FINE_BLOCK / 16) + SET_SLACK;
	json_decref(rec);
	return ret;
}

int sup_replica_in_upload_open(struct sup *s, const char *name, const char *disk, int *fd,
			       uint64_t *max, struct cerr *e)
{
	char path[PATH_MAX], file[96];
	int ret = -1;

	if (rep_broker_claim(s, name, NULL, false, e)) /* a pool as target: the source's member owns it */
		return -1;
	pthread_mutex_lock(&s->rep_lock);
	if (replica_in_set_limit(s, name, disk, max, e))
		goto out;
	snprintf(file, sizeof(file), "disk-%s.set", disk);
	if (rdir(s, name, file, path, sizeof(path))) {
		cerr_set(e, CERR_INVALID, "disk", "name too long");
		goto out;
	}
	*fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (*fd < 0)
		cerr_set(e, CERR_NO_SPACE, "", "cannot create %s: %s", path, strerror(errno));
	else
		ret = 0;
out:
	pthread_mutex_unlock(&s->rep_lock);
	return ret;
}

/* A set that came compressed (zstd): *fd replaced by its plain content,
 * an unnamed file in the replica's directory, at most what a set of the
 * disk's size can hold. 0, or -1 with e. */
static int plain_of(struct sup *s, const char *name, uint64_t size, int *fd, struct cerr *e)
{
	char dir[PATH_MAX], err[256];
	uint64_t n;
	int out, ret;

	if (rdir(s, name, NULL, dir, sizeof(dir)))
		return cerr_set(e, CERR_INVALID, "name", "name too long");
	out = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (out < 0)
		return cerr_set(e, CERR_NO_SPACE, "", "%s: %s", dir, strerror(errno));
	ret = replica_set_decompress(*fd, out, size + size / (CBT_FINE_BLOCK / 16) + SET_SLACK, &n, err,
				     sizeof(err));
	if (ret) {
		close(out);
		return cerr_set(e, ret == -ENOSPC ? CERR_NO_SPACE : CERR_INVALID, "",
				"the compressed change set: %s", err);
	}
	close(*fd);
	*fd = out;
	return 0;
}

/* A full set into a store with points (the source lost its tracking): a
 * new store beside the old one, swapped in once the set is a point. */
static int resync(struct sup *s, const char *name, const char *disk, int fd,
		  struct replica_point *p, char *err, size_t errlen)
{
	char cur[PATH_MAX], next[PATH_MAX + 16], old[PATH_MAX + 16], file[96], rm[2 * PATH_MAX + 64];
	struct replica *r;
	int ret;

	snprintf(file, sizeof(file), "disk-%s", disk);
	if (rdir(s, name, file, cur, sizeof(cur)))
		return -ENAMETOOLONG;
	snprintf(next, sizeof(next), "%s.resync", cur);
	snprintf(old, sizeof(old), "%s.old", cur);
	snprintf(rm, sizeof(rm), "rm -rf -- '%s' '%s'", next, old);
	if (system(rm))
		return -EIO;
	ret = replica_open(&r, next, true, err, errlen);
	if (ret)
		return ret;
	ret = replica_add(r, fd, p, err, errlen);
	replica_close(r);
	if (!ret && (rename(cur, old) || rename(next, cur)))
		ret = -errno;
	if (system(rm))
		log_warn("replica %s: %s or %s left behind", name, next, old);
	return ret;
}

int sup_replica_in_upload_done(struct sup *s, const char *name, const char *disk, int fd,
			       uint64_t bytes, bool ok, json_t **out, struct cerr *e)
{
	char path[PATH_MAX], file[96], err[384] = "", point[CBT_NAME_MAX], since[CBT_NAME_MAX];
	struct replica_point p = { 0 };
	struct replica *r = NULL;
	unsigned n = 0, merged = 0;
	uint64_t size = 0, hdr_size;
	json_t *rec = NULL, *keepj;
	int ret = -1, rfd = -1;

	*out = NULL;
	/* Not synced: made a point now, from the page cache; the point's layer
	 * is synced before it counts (a crash first leaves no point). */
	close(fd);
	snprintf(file, sizeof(file), "disk-%s.set", disk);
	if (rdir(s, name, file, path, sizeof(path)))
		return cerr_set(e, CERR_INVALID, "disk", "name too long");
	if (!ok) {
		unlink(path);
		return -1;
	}
	pthread_mutex_lock(&s->rep_lock);
	rec = rec_load(s, name, e);
	if (!rec || rec_disk(rec, disk, &size)) {
		if (rec)
			cerr_set(e, CERR_NOT_FOUND, "disk", "no disk '%.32s'", disk);
		goto out;
	}
	rfd = open(path, O_RDONLY | O_CLOEXEC);
	if (rfd < 0) {
		cerr_set(e, CERR_INTERNAL, "", "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (replica_set_compressed(rfd) && plain_of(s, name, size, &rfd, e))
		goto out;
	if (cbt_incr_header(rfd, &hdr_size, point, since, err, sizeof(err))) {
		cerr_set(e, CERR_INVALID, "", "not a change set: %s", err);
		goto out;
	}
	if (hdr_size != size) {
		cerr_set(e, CERR_INVALID, "", "a change set of a %llu-byte disk; disk %s has %llu "
			 "bytes", (unsigned long long)hdr_size, disk, (unsigned long long)size);
		goto out;
	}
	if (store_open(s, name, disk, "", true, &r, e))
		goto out;
	if (replica_points(r, NULL, 0, &n, err, sizeof(err))) {
		cerr_set(e, CERR_INTERNAL, "disk", "%s", err);
		goto out;
	}
	if (!since[0] && n) {
		replica_close(r);
		r = NULL;
		ret = resync(s, name, disk, rfd, &p, err, sizeof(err));
		log_warn("replica %s: disk %s resynchronised from a full copy (point %s)%s%s", name,
			 disk, point, ret ? ": " : "", ret ? err : "");
		if (!ret)
			ret = store_open(s, name, disk, "", false, &r, e);
	} else {
		ret = replica_add(r, rfd, &p, err, sizeof(err));
	}
	if (ret == -ESTALE || ret == -EEXIST) {
		ret = cerr_set(e, CERR_CONFLICT, "since", "%s", err);
		goto out;
	}
	if (ret == -ENOSPC || ret == -EFBIG || ret == -EDQUOT) {
		ret = cerr_set(e, CERR_NO_SPACE, "", "the replica's storage is full (%s): no point "
			       "was made; replication waits for room", err);
		goto out;
	}
	if (ret) {
		ret = cerr_set(e, ret == -EINVAL ? CERR_INVALID : CERR_INTERNAL, "", "%s",
			       err[0] ? err : e->reason);
		goto out;
	}
	/* Retention: the oldest points merge away (not while a VM reads them). */
	keepj = json_object_get(rec, "keep");
	while (!replica_points(r, NULL, 0, &n, err, sizeof(err)) &&
	       n > (unsigned)(json_integer_value(keepj) ?: REPLICA_KEEP_DEF) &&
	       !replica_merge_oldest(r, err, sizeof(err)))
		merged++;
	*out = json_pack("{s:s, s:s, s:i, s:I, s:I, s:i, s:i}", "disk", disk, "point", p.name,
			 "seq", (int)p.seq, "file_bytes", (json_int_t)p.file_bytes, "bytes",
			 (json_int_t)bytes, "points", (int)n, "merged", (int)merged);
	{
		char detail[200];

		snprintf(detail, sizeof(detail), "disk %s: point %s (%llu bytes received)", disk,
			 p.name, (unsigned long long)bytes);
		sup_emit_named(s, name, "", "replica-point", detail);
	}
	ret = 0;
out:
	replica_close(r);
	if (!ret)
		rep_vmdef_point(s, name, rec);
	if (rfd >= 0)
		close(rfd);
	unlink(path);
	pthread_mutex_unlock(&s->rep_lock);
	json_decref(rec);
	return ret;
}

int sup_replica_in_failover(struct sup *s, const char *name, json_t *body, json_t **out,
			    struct cerr *e)
{
	json_t *jpoint = json_object_get(body, "point"), *jstart = json_object_get(body, "start");
	json_t *jtest = json_object_get(body, "test");
	json_t *rec = NULL, *st = NULL, *vmj = NULL, *disks, *dk, *v, *res = NULL;
	const char *point = NULL, *key, *prefix;
	char vmname[VMDEF_NAME_MAX + 1];
	bool pending, test = json_is_true(jtest);
	struct vmrt *vm;
	size_t i;
	int ret = -1;

	*out = NULL;
	json_object_foreach(body, key, v)
		if (strcmp(key, "point") && strcmp(key, "start") && strcmp(key, "test"))
			return cerr_set(e, CERR_INVALID, key, "unknown field");
	if ((jpoint && !json_is_string(jpoint)) || (jstart && !json_is_boolean(jstart)) ||
	    (jtest && !json_is_boolean(jtest)))
		return cerr_set(e, CERR_INVALID, jpoint && !json_is_string(jpoint) ? "point"
				: jtest && !json_is_boolean(jtest) ? "test" : "start",
				"expected a point name (point) or a boolean (start, test)");
	/* A test failover: a copy beside the replica, without network, while
	 * replication goes on (Hyper-V's Test-VMReplication). */
	if ((size_t)snprintf(vmname, sizeof(vmname), "%s%s", name, test ? "-test" : "") >=
	    sizeof(vmname))
		return cerr_set(e, CERR_INVALID, "name", "'%s-test' would be too long a VM name", name);
	prefix = test ? "test" : "run";
	pthread_mutex_lock(&s->rep_lock);
	rec = rec_load(s, name, e);
	if (!rec)
		goto out;
	if (strcmp(rec_state(rec), "replicating")) {
		cerr_set(e, CERR_STATE, "name", "the replica of '%s' was failed over already", name);
		goto out;
	}
	if (test && (vm = sup_vm_lock_name(s, vmname, e))) {
		sup_vm_unlock(s, vm);
		cerr_set(e, CERR_EXISTS, "test", "a test failover of '%s' runs (%s): stop it first "
			 "(cella replica test-stop)", name, vmname);
		goto out;
	}
	st = status_json(s, name, rec);
	if (jpoint) {
		json_array_foreach(json_object_get(st, "points"), i, v)
			if (!strcmp(json_string_value(v), json_string_value(jpoint)))
				point = json_string_value(v);
		if (!point) {
			cerr_set(e, CERR_NOT_FOUND, "point", "no point '%.31s' on every disk of the "
				 "replica", json_string_value(jpoint));
			goto out;
		}
	} else if (json_array_size(json_object_get(st, "points"))) {
		json_t *pts = json_object_get(st, "points");

		point = json_string_value(json_array_get(pts, json_array_size(pts) - 1));
	} else {
		cerr_set(e, CERR_STATE, "point", "the replica of '%s' has no point on every disk yet",
			 name);
		goto out;
	}
	/* The VM's disks: a layer of its own over the point on each. */
	vmj = json_deep_copy(json_object_get(rec, "vm"));
	if (test) { /* its own identity, and no network: it must not meet the real one */
		json_object_set_new(vmj, "name", json_string(vmname));
		json_object_del(vmj, "uuid");
		json_object_del(vmj, "nics");
		json_object_set_new(vmj, "autostart", json_false());
	}
	disks = json_object_get(vmj, "disks");
	json_array_foreach(disks, i, dk) {
		const char *id = json_string_value(json_object_get(dk, "id"));
		char ppath[PATH_MAX], lpath[PATH_MAX], file[96], err[256];
		struct disk_create_opts o = { .fmt = DISK_FMT_QCOW2, .backing_fmt = DISK_FMT_QCOW2,
					      .backing_fmt_explicit = true };
		struct replica *r;
		uint64_t dsize = 0;

		if (!id || store_open(s, name, id, "", false, &r, e))
			goto out;
		ret = replica_point_path(r, point, ppath, sizeof(ppath), err, sizeof(err));
		replica_close(r);
		snprintf(file, sizeof(file), "%s-%s-%s.qcow2", prefix, id, point);
		if (ret || rdir(s, name, file, lpath, sizeof(lpath))) {
			ret = cerr_set(e, CERR_INTERNAL, "disk", "disk %s: %s", id, err);
			goto out;
		}
		o.backing = ppath;
		unlink(lpath); /* an earlier attempt's */
		if ((ret = disk_create(lpath, &o, err, sizeof(err)))) {
			ret = cerr_set(e, CERR_NO_SPACE, "disk", "disk %s: %s", id, err);
			goto out;
		}
		json_object_set_new(dk, "path", json_string(lpath));
		json_object_set_new(dk, "format", json_string("qcow2"));
		/* Tracked from the point: a reverse replication sends only what
		 * the VM writes here (replica_planned.c). */
		if (!test && json_is_true(json_object_get(dk, "cbt")) && !rec_disk(rec, id, &dsize))
			rep_track_from(lpath, dsize, point);
	}
	if (test) { /* a VM of its own, beside the replica's definition */
		vm = sup_register(s, vmj, EV_DEFINE, "a test failover of its replica", ROLE_ADMIN, e);
		if (!vm) {
			ret = -1;
			goto out;
		}
		sup_vm_unlock(s, vm);
		json_object_set_new(rec, "test_vm", json_string(vmname));
		json_object_set_new(rec, "test_point", json_string(point));
		if ((ret = rec_save(s, name, rec, e)))
			goto out;
	} else {
		/* The record first, then the replica's definition turned into an
		 * ordinary VM on the run layers (replica_vmdef.c): a cellad that
		 * dies between them finishes it at its start. */
		json_object_set_new(rec, "state", json_string("failed-over"));
		json_object_set_new(rec, "failed_over_point", json_string(point));
		if ((ret = rec_save(s, name, rec, e)))
			goto out;
		if ((ret = rep_vmdef_release(s, name, vmj, "failed over from its replica", e))) {
			struct cerr ig = { 0 };

			json_object_set_new(rec, "state", json_string("replicating"));
			json_object_del(rec, "failed_over_point");
			if (rec_save(s, name, rec, &ig))
				log_err("replica %s: %s", name, ig.reason);
			goto out;
		}
	}
	{
		char detail[160];

		snprintf(detail, sizeof(detail), "from point %s%s%s", point, test ? ": " : "",
			 test ? vmname : "");
		sup_emit_named(s, name, "defined", test ? "replica-test-failover"
			       : "replica-failed-over", detail);
	}
	log_warn("replica %s: %s to point %s", name, test ? "test failover" : "failed over", point);
	pthread_mutex_unlock(&s->rep_lock);
	if (!jstart || json_is_true(jstart)) {
		if (sup_action(s, vmname, SUP_START, NULL, &res, &pending, e)) {
			json_decref(rec);
			json_decref(st);
			json_decref(vmj);
			return -1;
		}
		json_decref(res);
	}
	*out = json_pack("{s:s, s:s, s:b, s:b}", "vm", vmname, "point", point, "started",
			 !jstart || json_is_true(jstart), "test", test);
	json_decref(rec);
	json_decref(st);
	json_decref(vmj);
	return 0;
out:
	pthread_mutex_unlock(&s->rep_lock);
	json_decref(rec);
	json_decref(st);
	json_decref(vmj);
	return -1;
}

int sup_replica_in_test_stop(struct sup *s, const char *name, struct cerr *e)
{
	char vmname[VMDEF_NAME_MAX + 1], dir[PATH_MAX];
	struct cerr ve = { 0 };
	struct dirent *de;
	struct vmrt *vm;
	json_t *rec;
	DIR *d;
	int ret = -1;

	pthread_mutex_lock(&s->rep_lock);
	rec = rec_load(s, name, e);
	if (!rec)
		goto out;
	if (!json_string_value(json_object_get(rec, "test_vm"))) {
		cerr_set(e, CERR_NOT_FOUND, "test", "no test failover of '%s' runs", name);
		goto out;
	}
	snprintf(vmname, sizeof(vmname), "%s", json_string_value(json_object_get(rec, "test_vm")));
	/* Turn the copy off and forget it (its layers go below). */
	vm = sup_vm_lock_name(s, vmname, &ve);
	if (vm) {
		if (state_active(vm->state) && sup_act_kill(s, vm, e)) {
			sup_vm_unlock(s, vm);
			goto out;
		}
		if (sup_remove(s, vm, "deleted", "the test failover ended")) {
			sup_vm_unlock(s, vm);
			cerr_set(e, CERR_INTERNAL, "", "cannot delete VM %s", vmname);
			goto out;
		}
		sup_vm_unlock(s, vm);
	}
	if (!rdir(s, name, NULL, dir, sizeof(dir)) && (d = opendir(dir))) {
		while ((de = readdir(d)))
			if (!strncmp(de->d_name, "test-", 5))
				unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
	}
	json_object_del(rec, "test_vm");
	json_object_del(rec, "test_point");
	if (!(ret = rec_save(s, name, rec, e)))
		sup_emit_named(s, name, "", "replica-test-stopped", vmname);
out:
	json_decref(rec);
	pthread_mutex_unlock(&s->rep_lock);
	return ret;
}

/* For replica_ops_in.c (replica_in.h) and replica_planned.c (replica_priv.h). */
int rep_in_dir(struct sup *s, const char *name, const char *file, char *out, size_t len)
{
	return rdir(s, name, file, out, len);
}

json_t *rep_in_rec_load(struct sup *s, const char *name, struct cerr *e)
{
	return rec_load(s, name, e);
}

int rep_in_rec_save(struct sup *s, const char *name, json_t *rec, struct cerr *e)
{
	return rec_save(s, name, rec, e);
}

int rep_in_store_open(struct sup *s, const char *name, const char *disk, struct replica **r,
		      struct cerr *e)
{
	return store_open(s, name, disk, "", false, r, e);
}

json_t *rep_in_status(struct sup *s, const char *name, json_t *rec)
{
	return status_json(s, name, rec);
}
