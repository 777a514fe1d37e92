/* replica_xfer_in.c: the target's half of resumable change-set uploads
 * (replica_xfer.h, docs/replica.md "Resuming a cut transfer"): the partial
 * upload of each disk, how far it got, its continuation, and the whole set
 * handed to replica_in.c once every byte is here. A partial belongs to one
 * byte stream (id, total); a request for another stream at offset 0
 * replaces it, one past what is here is refused. A new file for each new
 * stream: a cut connection the target never saw end can only ever write
 * into its own (unlinked) file. */
#include "sup_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "replica_priv.h"
#include "replica_xfer.h"

#define PART_STALE_S (24 * 3600) /* a partial nobody continued for a day goes */

static int part_path(struct sup *s, const char *name, const char *disk, const char *suffix,
		     char *out, size_t len)
{
	char file[NAME_MAX + 1];
	int n = snprintf(file, sizeof(file), "disk-%s%s", disk, suffix);

	if (n < 0 || (size_t)n >= sizeof(file))
		return -ENAMETOOLONG;
	return rep_in_dir(s, name, file, out, len);
}

void replica_xfer_in_drop(struct sup *s, const char *name, const char *disk)
{
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dir;

	if (disk) {
		if (!part_path(s, name, disk, ".part", path, sizeof(path)))
			unlink(path);
		if (!part_path(s, name, disk, ".part.json", path, sizeof(path)))
			unlink(path);
		return;
	}
	if (rep_in_dir(s, name, NULL, path, sizeof(path)) || !(dir = opendir(path)))
		return;
	while ((d = readdir(dir))) {
		size_t n = strlen(d->d_name);

		if (!strncmp(d->d_name, "disk-", 5) &&
		    ((n > 5 && !strcmp(d->d_name + n - 5, ".part")) ||
		     (n > 10 && !strcmp(d->d_name + n - 10, ".part.json"))))
			unlinkat(dirfd(dir), d->d_name, 0);
	}
	closedir(dir);
}

/* Partials of this replica's other disks left for a day: their source gave
 * up on them (rep_lock held). */
static void sweep_stale(struct sup *s, const char *name)
{
	char path[PATH_MAX];
	struct dirent *d;
	struct stat st;
	DIR *dir;

	if (rep_in_dir(s, name, NULL, path, sizeof(path)) || !(dir = opendir(path)))
		return;
	while ((d = readdir(dir))) {
		size_t n = strlen(d->d_name);

		if (strncmp(d->d_name, "disk-", 5) || n < 6 || strcmp(d->d_name + n - 5, ".part") ||
		    fstatat(dirfd(dir), d->d_name, &st, 0) ||
		    time(NULL) - st.st_mtime < PART_STALE_S)
			continue;
		log_info("replica %s: %s: a partial upload nobody continued, removed", name,
			 d->d_name);
		unlinkat(dirfd(dir), d->d_name, 0);
		{
			char meta[300];

			snprintf(meta, sizeof(meta), "%s.json", d->d_name);
			unlinkat(dirfd(dir), meta, 0);
		}
	}
	closedir(dir);
}

/* The partial's record: 0 with id and total, else -1. */
static int meta_load(struct sup *s, const char *name, const char *disk, char *id, size_t idlen,
		     uint64_t *total)
{
	char path[PATH_MAX];
	json_t *j, *jid, *jt;
	int ret = -1;

	if (part_path(s, name, disk, ".part.json", path, sizeof(path)))
		return -1;
	j = json_load_file(path, 0, NULL);
	jid = json_object_get(j, "id");
	jt = json_object_get(j, "total");
	if (json_is_string(jid) && json_is_integer(jt) && json_integer_value(jt) > 0) {
		snprintf(id, idlen, "%s", json_string_value(jid));
		*total = (uint64_t)json_integer_value(jt);
		ret = 0;
	}
	json_decref(j);
	return ret;
}

static int meta_save(struct sup *s, const char *name, const char *disk, const char *id,
		     uint64_t total)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	json_t *j = json_pack("{s:s, s:I}", "id", id, "total", (json_int_t)total);
	int ret = -EIO;

	if (j && !part_path(s, name, disk, ".part.json", path, sizeof(path))) {
		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		if (!json_dump_file(j, tmp, 0) && !rename(tmp, path))
			ret = 0;
		else
			unlink(tmp);
	}
	json_decref(j);
	return ret;
}

int sup_replica_in_upload_state(struct sup *s, const char *name, const char *disk, json_t **out,
				struct cerr *e)
{
	char id[80], path[PATH_MAX];
	uint64_t max, total;
	struct stat st;
	json_t *up = json_null();

	*out = NULL;
	pthread_mutex_lock(&s->rep_lock);
	if (replica_in_set_limit(s, name, disk, &max, e)) {
		pthread_mutex_unlock(&s->rep_lock);
		return -1;
	}
	sweep_stale(s, name);
	if (!meta_load(s, name, disk, id, sizeof(id), &total) &&
	    !part_path(s, name, disk, ".part", path, sizeof(path)) && !stat(path, &st))
		up = json_pack("{s:s, s:I, s:I}", "id", id, "total", (json_int_t)total, "bytes",
			       (json_int_t)st.st_size);
	pthread_mutex_unlock(&s->rep_lock);
	*out = json_pack("{s:s, s:o}", "disk", disk, "upload", up);
	return 0;
}

/* A decimal query value: 0, or -1 with e naming it. */
static int query_u64(const char *field, const char *v, uint64_t *out, struct cerr *e)
{
	char *end;

	errno = 0;
	if (!v || !*v || strlen(v) > 20 || *v < '0' || *v > '9' ||
	    (*out = strtoull(v, &end, 10), errno || *end))
		return cerr_set(e, CERR_INVALID, field, "expected a number of bytes");
	return 0;
}

static int query_id(const char *v, struct cerr *e)
{
	size_t n = v ? strlen(v) : 0;

	if (!n || n > 63 || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			     "0123456789._-") != n)
		return cerr_set(e, CERR_INVALID, "id", "1 to 63 of A-Z a-z 0-9 . _ -: the set's "
				"identity, the same on every request of one upload");
	return 0;
}

int sup_replica_in_part_open(struct sup *s, const char *name, const char *disk, const char *id,
			     const char *total_s, const char *offset_s, int *fd, uint64_t *max,
			     struct cerr *e)
{
	char path[PATH_MAX], have_id[80];
	uint64_t limit, total, offset, have_total;
	struct stat st;
	int ret = -1;

	*fd = -1;
	if (query_id(id, e) || query_u64("total", total_s, &total, e) ||
	    query_u64("offset", offset_s ?: "0", &offset, e))
		return -1;
	if (rep_broker_claim(s, name, NULL, false, e)) /* a pool as target (replica_broker.c) */
		return -1;
	pthread_mutex_lock(&s->rep_lock);
	if (replica_in_set_limit(s, name, disk, &limit, e))
		goto out;
	if (!total || total > limit) {
		cerr_set(e, CERR_INVALID, "total", "a set of disk %s has 1 to %llu bytes, not %llu",
			 disk, (unsigned long long)limit, (unsigned long long)total);
		goto out;
	}
	if (offset >= total) {
		cerr_set(e, CERR_INVALID, "offset", "%llu is not within the set's %llu bytes",
			 (unsigned long long)offset, (unsigned long long)total);
		goto out;
	}
	if (part_path(s, name, disk, ".part", path, sizeof(path))) {
		cerr_set(e, CERR_INVALID, "disk", "name too long");
		goto out;
	}
	sweep_stale(s, name);
	if (!offset) { /* a new stream: a new file (see the top) */
		replica_xfer_in_drop(s, name, disk);
		if (meta_save(s, name, disk, id, total)) {
			cerr_set(e, CERR_NO_SPACE, "", "cannot record the upload: %s", strerror(errno));
			goto out;
		}
		*fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (*fd < 0) {
			cerr_set(e, CERR_NO_SPACE, "", "cannot create %s: %s", path, strerror(errno));
			goto out;
		}
	} else {
		if (meta_load(s, name, disk, have_id, sizeof(have_id), &have_total) ||
		    strcmp(have_id, id) || have_total != total) {
			cerr_set(e, CERR_INVALID, "offset", "this host has no partial upload of set "
				 "%s (%llu bytes): send it from offset 0", id,
				 (unsigned long long)total);
			goto out;
		}
		*fd = open(path, O_WRONLY | O_CLOEXEC);
		if (*fd < 0 || fstat(*fd, &st)) {
			cerr_set(e, CERR_INVALID, "offset", "the partial upload is gone (%s): send "
				 "the set from offset 0", strerror(errno));
			goto out;
		}
		if ((uint64_t)st.st_size < offset) {
			cerr_set(e, CERR_INVALID, "offset", "this host has %llu bytes of set %s, not "
				 "%llu: resume from %llu", (unsigned long long)st.st_size, id,
				 (unsigned long long)offset, (unsigned long long)st.st_size);
			goto out;
		}
		/* Bytes past offset were sent again: they are overwritten. */
		if ((uint64_t)st.st_size > offset && ftruncate(*fd, (off_t)offset)) {
			cerr_set(e, CERR_NO_SPACE, "", "%s: %s", path, strerror(errno));
			goto out;
		}
		if (lseek(*fd, (off_t)offset, SEEK_SET) < 0) {
			cerr_set(e, CERR_INTERNAL, "", "%s: %s", path, strerror(errno));
			goto out;
		}
	}
	*max = total - offset;
	ret = 0;
out:
	if (ret && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	pthread_mutex_unlock(&s->rep_lock);
	return ret;
}

/* The partial holds all `size` bytes of set `id`. */
static bool part_whole(struct sup *s, const char *name, const char *disk, const char *id,
		       uint64_t size)
{
	char have_id[80];
	uint64_t total;
	bool whole;

	pthread_mutex_lock(&s->rep_lock);
	whole = !meta_load(s, name, disk, have_id, sizeof(have_id), &total) &&
		!strcmp(have_id, id) && total == size;
	pthread_mutex_unlock(&s->rep_lock);
	return whole;
}

int sup_replica_in_part_done(struct sup *s, const char *name, const char *disk, int fd,
			     const char *id, json_t **out, struct cerr *e)
{
	char path[PATH_MAX], set[PATH_MAX], have_id[80];
	uint64_t total;
	struct stat st;
	int rfd;

	*out = NULL;
	/* A partial is kept for a resume: synced. A whole set is made a point
	 * now, from the page cache, and the point's layer is what is synced
	 * (a crash before that leaves no point, and the source sends again). */
	if (fstat(fd, &st) < 0 || (!part_whole(s, name, disk, id, (uint64_t)st.st_size) &&
				   fsync(fd) < 0)) {
		cerr_set(e, CERR_NO_SPACE, "", "cannot sync the upload: %s", strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	if (part_path(s, name, disk, ".part", path, sizeof(path)) ||
	    part_path(s, name, disk, ".set", set, sizeof(set)))
		return cerr_set(e, CERR_INVALID, "disk", "name too long");
	pthread_mutex_lock(&s->rep_lock);
	if (meta_load(s, name, disk, have_id, sizeof(have_id), &total) || strcmp(have_id, id)) {
		pthread_mutex_unlock(&s->rep_lock);
		return cerr_set(e, CERR_INVALID, "offset", "another upload replaced set %s here: "
				"send it from offset 0", id);
	}
	if ((uint64_t)st.st_size != total) {
		pthread_mutex_unlock(&s->rep_lock);
		return cerr_set(e, CERR_INVALID, "offset", "this host has %llu of set %s's %llu "
				"bytes: send the rest from offset %llu",
				(unsigned long long)st.st_size, id, (unsigned long long)total,
				(unsigned long long)st.st_size);
	}
	/* Whole: made a point as a one-piece upload is (which removes it). */
	if (rename(path, set)) {
		cerr_set(e, CERR_INTERNAL, "", "%s: %s", set, strerror(errno));
		pthread_mutex_unlock(&s->rep_lock);
		return -1;
	}
	replica_xfer_in_drop(s, name, disk);
	pthread_mutex_unlock(&s->rep_lock);
	rfd = open(set, O_RDONLY | O_CLOEXEC);
	if (rfd < 0) {
		unlink(set);
		return cerr_set(e, CERR_INTERNAL, "", "%s: %s", set, strerror(errno));
	}
	return sup_replica_in_upload_done(s, name, disk, rfd, total, true, out, e);
}
