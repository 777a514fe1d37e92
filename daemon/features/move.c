/* move.c: moving a VM to another host (Move-VM), the source's side, and the
 * peer hosts VMs move to.
 *
 * Live: the destination cellad prepares the VM (definition, an --incoming
 * worker listening on a socket it made) and answers with the address;
 * cellad connects to it (the worker here is sandboxed) and hands the socket
 * to its worker with `migrate` and the TLS material; the worker pre-copies
 * memory, stops, sends the rest, and exits with status 16 once the
 * destination has the VM running. Then the destination is told to commit
 * and the VM is removed here. On any failure before that the VM runs on
 * here and the destination deletes what it made.
 *
 * Quick: save here, stream the state file (and with include_storage the
 * disk images) to the destination's API, which restores it. A failure
 * restores the VM here.
 *
 * A move is a job ("move-out": begun, prepared, migrating or uploading,
 * committing): a cellad that died in the middle is followed by one that
 * finishes it (the VM runs there: commit there, forget it here) or rolls it
 * back (abort there; a VM saved for a quick move is restored here). */
#include "sup_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "log.h"
#include "worker_exit.h"
#include "move_pool.h"
#include "peer.h"

#define PEER_TIMEOUT_S     60
#define PEM_MAX            (256 * 1024)
#define CONNECT_TIMEOUT_MS 10000
#define MIGRATED_EXIT_MS   30000

/* Hosts ---------------------------------------------------------------------- */

json_t *sup_hosts_list(struct sup *s)
{
	json_t *arr;

	arr = store_host_list(s->db, false);
	return arr;
}

static bool url_one_valid(const char *u, size_t n)
{
	/* https://HOST:PORT, no path: moves talk to /v1/... on it (HTTPS with
	 * mutual TLS only: plain http:// peers are refused). */
	return n > 8 && n < 256 && !strncmp(u, "https://", 8) && !memchr(u + 8, '/', n - 8) &&
	       strcspn(u, " \t\r\n\"\\,") >= n;
}

/* One URL, or a pool's members as a replication target: up to 8 URLs
 * separated by commas (replica_broker.c: the first that answers). */
static bool url_valid(const char *u)
{
	unsigned nr = 0;

	if (strlen(u) >= 1024)
		return false;
	for (const char *at = u;; nr++) {
		const char *end = strchr(at, ',');
		size_t n = end ? (size_t)(end - at) : strlen(at);

		if (nr >= 8 || !url_one_valid(at, n))
			return false;
		if (!end)
			return true;
		at = end + 1;
	}
}

int sup_host_add(struct sup *s, json_t *body, json_t **out, struct cerr *e)
{
	const char *name = NULL, *url = NULL, *token = NULL, *tls_name = NULL, *key;
	json_t *v;
	int ret;

	json_object_foreach(body, key, v) {
		const char **dst = !strcmp(key, "name") ? &name : !strcmp(key, "url") ? &url
				   : !strcmp(key, "token") ? &token
				   : !strcmp(key, "tls_name") ? &tls_name : NULL;

		if (!dst)
			return cerr_set(e, CERR_INVALID, key, "unknown field");
		if (!json_is_string(v) && !(dst == &tls_name && json_is_null(v)))
			return cerr_set(e, CERR_INVALID, key, "expected a string");
		*dst = json_string_value(v);
	}
	if (!name || !vmdef_name_valid(name))
		return cerr_set(e, CERR_INVALID, "name", "1-63 of A-Za-z0-9._-, first a letter or digit");
	if (!url || !url_valid(url))
		return cerr_set(e, CERR_INVALID, "url", "expected https://ADDRESS:PORT (the peer cellad's "
				"TCP API)");
	if (!token || strlen(token) < 16 || strlen(token) > 255 ||
	    strcspn(token, " \t\r\n") != strlen(token))
		return cerr_set(e, CERR_INVALID, "token", "expected the peer's bearer token (16-255 "
				"characters, no spaces)");
	if (tls_name && (!*tls_name || strlen(tls_name) > 255))
		return cerr_set(e, CERR_INVALID, "tls_name", "expected a certificate name (1-255 characters)");
	ret = store_host_put(s->db, name, url, token, tls_name);
	if (ret)
		return cerr_set(e, CERR_INTERNAL, "", "cannot store the host");
	*out = json_pack("{s:s, s:s, s:o}", "name", name, "url", url, "tls_name",
			 tls_name ? json_string(tls_name) : json_null());
	return 0;
}

int sup_host_remove(struct sup *s, const char *host, struct cerr *e)
{
	int ret;

	ret = store_host_delete(s->db, host);
	if (ret == -ENOENT)
		return cerr_set(e, CERR_NOT_FOUND, "host", "no host named '%.64s'", host);
	return ret ? cerr_set(e, CERR_INTERNAL, "", "cannot delete the host") : 0;
}

/* Move --------------------------------------------------------------------- */

struct move {
	struct sup *s;
	struct vmrt *vm;
	char name[VMDEF_NAME_MAX + 1];
	char path[128];          /* /v1/incoming/<name> */
	/* the request */
	bool quick, storage;
	json_int_t downtime_ms, max_bw;
	/* the destination */
	json_t *host;            /* {name, url, token, tls_name} (owned) */
	struct peer peer;
	char tls_name[256];
	bool prepared;
	/* A host of this host's pool (move_pool.c), not a peer of cella host add. */
	bool pool;
	char pool_hdr[3][128];
	const char *pool_hdrs[4];
	/* results */
	json_int_t total_ms, down_ms, rounds, bytes;
	json_t *dest_vm;
	uint64_t t0;
	struct job *job;         /* NULL while recovering */
};

/* Record the move's next phase (lock held); a store failure is logged: the
 * move itself goes on. */
static void move_phase(struct move *m, const char *phase)
{
	struct cerr e = { 0 };

	if (m->job && job_phase(m->s, m->job, phase, &e))
		log_warn("vm %s: %s", m->name, e.reason);
}

static json_int_t ms_since(uint64_t t0)
{
	return (json_int_t)((sup_mono_ns() - t0) / 1000000);
}

static int parse_move(struct move *m, json_t *body, const char **to, struct cerr *e)
{
	const char *key;
	json_t *v;

	m->downtime_ms = 300;
	json_object_foreach(body, key, v) {
		if (!strcmp(key, "to")) {
			if (!json_is_string(v) || !vmdef_name_valid(json_string_value(v)))
				return cerr_set(e, CERR_INVALID, "to", "expected a host name (cella host list)");
			*to = json_string_value(v);
		} else if (!strcmp(key, "include_storage") || !strcmp(key, "quick")) {
			if (!json_is_boolean(v))
				return cerr_set(e, CERR_INVALID, key, "expected true or false");
			*(key[0] == 'q' ? &m->quick : &m->storage) = json_is_true(v);
		} else if (!strcmp(key, "downtime_ms")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 60000)
				return cerr_set(e, CERR_INVALID, key, "expected an integer from 1 to 60000");
			m->downtime_ms = json_integer_value(v);
		} else if (!strcmp(key, "max_bandwidth")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0)
				return cerr_set(e, CERR_INVALID, key, "expected bytes per second (0: no limit)");
			m->max_bw = json_integer_value(v);
		} else {
			return cerr_set(e, CERR_INVALID, key, "unknown field");
		}
	}
	if (!*to)
		return cerr_set(e, CERR_INVALID, "to", "required: the host to move to");
	return 0;
}

/* The peer to call for a host entry (the entry keeps the strings). */
static void peer_from_host(struct sup *s, json_t *host, struct peer *p)
{
	p->name = json_string_value(json_object_get(host, "name"));
	p->url = json_string_value(json_object_get(host, "url"));
	p->token = json_string_value(json_object_get(host, "token"));
	p->cert = s->conf.tls_cert;
	p->key = s->conf.tls_key;
	p->ca = s->conf.tls_ca;
}

/* The host entry, or NULL (e set). */
static json_t *find_host(struct sup *s, const char *to, struct cerr *e)
{
	json_t *all = store_host_list(s->db, true), *h, *hit = NULL;
	size_t i;

	json_array_foreach(all, i, h) {
		if (!strcmp(json_string_value(json_object_get(h, "name")) ?: "", to))
			hit = json_incref(h);
	}
	json_decref(all);
	if (!hit)
		cerr_set(e, CERR_NOT_FOUND, "to", "no host named '%.64s' (cella host add)", to);
	return hit;
}

json_t *peer_find(struct sup *s, const char *name, struct peer *p, struct cerr *e)
{
	json_t *host = find_host(s, name, e);

	if (host && (!s->conf.tls_cert || !s->conf.tls_key || !s->conf.tls_ca)) {
		json_decref(host);
		cerr_set(e, CERR_CONFLICT, "tls", "this cellad has no TLS material (--tls-cert, "
			 "--tls-key, --tls-ca): hosts talk over mutual TLS only");
		return NULL;
	}
	if (host) {
		memset(p, 0, sizeof(*p));
		peer_from_host(s, host, p);
	}
	return host;
}

/* Without the lock: one request to the destination; 0 on a 2xx answer
 * (*reply owned by the caller, may be NULL), else -1 with e set. */
static int dest_call(struct move *m, const char *method, const char *suffix, json_t *body,
		     long timeout_s, json_t **reply, struct cerr *e)
{
	char path[256], err[512];
	json_t *r = NULL;
	long status;

	/* suffix "": the incoming VM itself; NULL: the collection (prepare). */
	snprintf(path, sizeof(path), "%s%s", suffix ? m->path : "/v1/incoming", suffix ?: "");
	if (peer_call(&m->peer, method, path, body, timeout_s, &status, &r, err, sizeof(err)))
		return cerr_set(e, CERR_PEER, "to", "%s", err);
	if (status < 200 || status >= 300) {
		peer_error_text(&m->peer, status, r, err, sizeof(err));
		json_decref(r);
		return cerr_set(e, status == 409 ? CERR_CONFLICT : CERR_PEER, "to", "%s", err);
	}
	if (reply)
		*reply = r;
	else
		json_decref(r);
	return 0;
}

/* Without the lock: tell the destination to drop what it prepared. */
static void dest_abort(struct move *m)
{
	struct cerr e = { 0 };

	if (m->prepared && dest_call(m, "DELETE", "", NULL, PEER_TIMEOUT_S, NULL, &e))
		log_warn("vm %s: the destination could not delete its half-made copy: %s",
			 m->name, e.reason);
	m->prepared = false;
}

/* Virtual size of every disk, for a destination that creates its own. */
static json_t *disk_sizes(const struct vmdef *d, struct cerr *e)
{
	json_t *sizes = json_object();

	for (unsigned i = 0; i < d->nr_disks; i++) {
		struct disk *dk;
		char err[256];

		if (disk_open(&dk, d->disks[i].path, d->disks[i].format == VMDEF_FMT_QCOW2 ?
			      DISK_FMT_QCOW2 : DISK_FMT_RAW, DISK_RDONLY | DISK_NO_LOCK |
			      DISK_NO_BACKING, err, sizeof(err))) {
			json_decref(sizes);
			cerr_set(e, CERR_INTERNAL, "disks", "%s: %s", d->disks[i].id, err);
			return NULL;
		}
		json_object_set_new(sizes, d->disks[i].id, json_integer((json_int_t)disk_size(dk)));
		if (disk_close(dk))
			log_warn("disk %s: close failed", d->disks[i].path);
	}
	return sizes;
}

/* Lock held on entry and exit, dropped around the request. */
static int prepare(struct move *m, struct cerr *e)
{
	json_t *body, *reply = NULL, *sizes = NULL;
	int ret;

	if (m->storage && !(sizes = disk_sizes(&m->vm->def, e)))
		return -1;
	body = json_pack("{s:o, s:s, s:b}", "vm", vmdef_to_json(&m->vm->def), "mode",
			 m->quick ? "quick" : "live", "include_storage", m->storage);
	if (sizes)
		json_object_set_new(body, "disk_sizes", sizes);
	if (m->pool)
		json_object_set_new(body, "pool_from", json_string(move_pool_me(m->s)));
	pthread_mutex_unlock(&m->vm->lock);
	ret = dest_call(m, "POST", NULL, body, PEER_TIMEOUT_S, &reply, e);
	pthread_mutex_lock(&m->vm->lock);
	json_decref(body);
	if (ret)
		return -1;
	m->prepared = true;
	m->dest_vm = reply;
	if (m->job)
		json_object_set_new(m->job->data, "prepared", json_true());
	move_phase(m, "prepared");
	return 0;
}

/* Connect to the destination worker's address (cellad does it: the worker
 * here is sandboxed). The fd, or -1 with e set. */
static int dial(const char *addr, json_int_t port, struct cerr *e)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	char ps[16];
	int fd = -1, ret, err;

	snprintf(ps, sizeof(ps), "%lld", (long long)port);
	ret = getaddrinfo(addr, ps, &hints, &res);
	if (ret)
		return cerr_set(e, CERR_PEER, "to", "destination address %.64s: %s", addr,
				gai_strerror(ret));
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    res->ai_protocol);
	if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0 && errno == EINPROGRESS) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		socklen_t sl = sizeof(err);

		err = poll(&p, 1, CONNECT_TIMEOUT_MS) == 1 ? 0 : ETIMEDOUT;
		if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
			err = errno;
		errno = err;
	} else if (fd >= 0) {
		errno = 0;
	}
	freeaddrinfo(res);
	if (fd < 0 || errno) {
		cerr_set(e, CERR_PEER, "to", "cannot connect to the destination worker at %.64s:%lld: %s",
			 addr, (long long)port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

static char *read_pem(const char *path, struct cerr *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;

	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size < PEM_MAX &&
	    (buf = calloc(1, (size_t)st.st_size + 1)) &&
	    read(fd, buf, (size_t)st.st_size) != st.st_size) {
		free(buf);
		buf = NULL;
	}
	if (!buf)
		cerr_set(e, CERR_INTERNAL, "", "cannot read %s (migration TLS): %s", path,
			 fd < 0 ? strerror(errno) : "empty, too large or unreadable");
	if (fd >= 0)
		close(fd);
	return buf;
}

/* The worker's migrate request with the TLS material (PEM text: the
 * worker cannot open files). NULL with e set. */
static json_t *migrate_request(struct move *m, struct cerr *e)
{
	const char *files[3] = { m->s->conf.tls_cert, m->s->conf.tls_key, m->s->conf.tls_ca };
	char *pem[3] = { NULL, NULL, NULL };
	json_t *req = NULL;

	for (int i = 0; i < 3; i++)
		if (!(pem[i] = read_pem(files[i], e)))
			goto out;
	req = json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:s}, s:I, s:I, s:b}", "cmd", "migrate",
			"fd", 0, "tls", "cert", pem[0], "key", pem[1], "ca", pem[2], "name",
			m->tls_name, "downtime_ms", m->downtime_ms, "max_bandwidth", m->max_bw,
			"include_storage", m->storage);
	if (!req)
		cerr_set(e, CERR_INTERNAL, "", "out of memory");
out:
	for (int i = 0; i < 3; i++) {
		if (pem[i])
			explicit_bzero(pem[i], strlen(pem[i]));
		free(pem[i]);
	}
	return req;
}

static bool migrated(struct vmrt *vm, unsigned gen)
{
	(void)gen;
	return !state_active(vm->state);
}

/* Live migration (lock held, dropped around the waits). */
static int move_live(struct move *m, struct cerr *e)
{
	struct vmrt *vm = m->vm;
	const char *addr = json_string_value(json_object_get(m->dest_vm, "address"));
	json_int_t port = json_integer_value(json_object_get(m->dest_vm, "port"));
	json_t *req, *reply = NULL;
	unsigned gen = vm->gen;
	int fd, ret;

	if (!addr || port <= 0 || port > 65535)
		return cerr_set(e, CERR_PEER, "to", "the destination gave no address to migrate to");
	req = migrate_request(m, e);
	if (!req)
		return -1;
	pthread_mutex_unlock(&m->vm->lock);
	fd = dial(addr, port, e);
	pthread_mutex_lock(&m->vm->lock);
	if (fd < 0) {
		json_decref(req);
		return -1;
	}
	if (vm->gen != gen || (vm->state != VS_RUNNING && vm->state != VS_PAUSED)) {
		close(fd);
		json_decref(req);
		return sup_refuse(vm, e, "move");
	}
	log_info("vm %s: moving to %s (%s:%lld)", m->name, m->peer.name, addr, (long long)port);
	move_phase(m, "migrating");
	ret = sup_worker_cmd(m->s, vm, req, &fd, 1, (int)m->s->conf.move_timeout_s * 1000, &reply,
			     e);
	close(fd);
	/* Success is the worker's exit with status 16 (it may come before a
	 * reply that got lost). */
	sup_wait_until(m->s, vm, migrated, gen, ret ? 2000 : MIGRATED_EXIT_MS);
	if (vm->gen == gen && vm->exit_status == WORKER_EXIT_MIGRATED && !state_active(vm->state)) {
		m->down_ms = json_integer_value(json_object_get(reply, "downtime_ms"));
		m->rounds = json_integer_value(json_object_get(reply, "rounds"));
		m->bytes = json_integer_value(json_object_get(reply, "bytes"));
		m->total_ms = json_integer_value(json_object_get(reply, "total_ms"));
		json_decref(reply);
		return 0;
	}
	json_decref(reply);
	if (!ret)
		return cerr_set(e, CERR_INTERNAL, "", "the worker reported the move done but did not end "
				"(state %s)", vm_state_name(vm->state));
	{
		char why[sizeof(e->reason)];

		snprintf(why, sizeof(why), "%s", e->reason);
		return cerr_set(e, e->kind ? e->kind : CERR_INTERNAL, "", "move to %s failed: %.300s",
				m->peer.name, why);
	}
}

/* Without the lock: PUT one file to the destination. */
static int upload(struct move *m, const char *suffix, const char *path, struct cerr *e)
{
	char url[256], err[512];
	json_t *reply = NULL;
	struct stat st;
	long status;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return cerr_set(e, CERR_INTERNAL, "", "cannot open %s: %s", path, strerror(errno));
	}
	snprintf(url, sizeof(url), "%s%s", m->path, suffix);
	ret = peer_upload(&m->peer, url, fd, (uint64_t)st.st_size,
			  (long)m->s->conf.move_timeout_s, &status, &reply, err, sizeof(err));
	close(fd);
	if (!ret && (status < 200 || status >= 300)) {
		peer_error_text(&m->peer, status, reply, err, sizeof(err));
		ret = -1;
	}
	json_decref(reply);
	if (ret)
		return cerr_set(e, CERR_PEER, "to", "upload of %s: %s", path, err);
	m->bytes += st.st_size;
	if (m->job)
		job_progress(m->s, m->job, (uint64_t)m->bytes, m->job->total);
	return 0;
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (uint64_t)st.st_size;
}

/* Quick migration: save, send, restore there (lock held). */
static int move_quick(struct move *m, bool *saved_here, struct cerr *e)
{
	struct vmrt *vm = m->vm;
	char path[512];
	uint64_t t_down = sup_mono_ns();
	json_t *reply = NULL;
	int ret = 0;

	if (vm->state != VS_SAVED) {
		if (sup_act_save(m->s, vm, e))
			return -1;
		*saved_here = true;
		if (m->job)
			json_object_set_new(m->job->data, "saved_here", json_true());
	}
	move_phase(m, "uploading");
	sup_saved_path(m->s, vm, path, sizeof(path));
	if (m->job) {
		/* Progress (GET /v1/jobs): bytes sent of the files to send. */
		uint64_t total = file_size(path);

		for (unsigned i = 0; m->storage && i < vm->def.nr_disks; i++)
			total += file_size(vm->def.disks[i].path);
		job_progress(m->s, m->job, 0, total);
	}
	pthread_mutex_unlock(&m->vm->lock);
	ret = upload(m, "/state", path, e);
	for (unsigned i = 0; !ret && m->storage && i < vm->def.nr_disks; i++) {
		char suffix[64];

		snprintf(suffix, sizeof(suffix), "/disks/%s", vm->def.disks[i].id);
		ret = upload(m, suffix, vm->def.disks[i].path, e);
	}
	if (!ret) {
		pthread_mutex_lock(&m->vm->lock);
		move_phase(m, "committing");
		pthread_mutex_unlock(&m->vm->lock);
		ret = dest_call(m, "POST", "/commit", NULL, (long)m->s->conf.start_timeout_s + 30,
				&reply, e);
	}
	pthread_mutex_lock(&m->vm->lock);
	if (ret)
		return -1;
	json_decref(m->dest_vm);
	m->dest_vm = reply;
	m->prepared = false; /* committed: it is the destination's VM now */
	m->down_ms = ms_since(t_down);
	m->total_ms = ms_since(m->t0);
	return 0;
}

/* After a failed quick move: the VM runs here again (lock held). */
static void restore_here(struct move *m)
{
	struct vmrt *vm = m->vm;
	struct cerr e = { 0 };

	if (vm->state != VS_SAVED)
		return;
	vm->restore = true;
	vm->stop_requested = vm->reset_requested = false;
	vm->start_ns = sup_mono_ns();
	vm->first_out_ns = 0;
	lifecycle_fire(m->s, vm, EV_START, "the move failed: restoring here");
	pthread_mutex_unlock(&m->vm->lock);
	if (sup_launch(m->s, vm, &e))
		log_err("vm %s: cannot restore it after the failed move: %s", m->name, e.reason);
	pthread_mutex_lock(&m->vm->lock);
}

/* The destination: a host of this host's pool, else a peer (cella host
 * add); new_move: refused if it is in maintenance or down (not for a move
 * being recovered). 0, or -1 with e. */
static int pool_or_peer(struct move *m, const char *to, bool new_move, struct cerr *e)
{
	int ret = move_pool_dest(m->s, to, new_move, &m->host, e);

	if (ret < 0)
		return -1;
	m->pool = ret > 0;
	if (!m->pool && !(m->host = find_host(m->s, to, e)))
		return -1;
	peer_from_host(m->s, m->host, &m->peer);
	if (m->pool) {
		m->peer.token = NULL; /* the pool certificate says who calls */
		move_pool_headers(m->s, m->pool_hdr, m->pool_hdrs);
		m->peer.headers = m->pool_hdrs;
	}
	return 0;
}

/* Forget the moved VM here (lock held): a pool's records stay (the
 * destination owns them now), a peer's move deletes them. */
static void forget_moved(struct move *m, const char *detail)
{
	if (m->pool)
		move_pool_forget(m->s, m->vm, detail);
	else if (sup_remove(m->s, m->vm, "moved", detail))
		log_err("vm %s: moved, but cannot delete the definition here", m->name);
}

/* Live, without the lock: the destination's commit; inside a pool it
 * takes the VM's ownership, which etcd may refuse for a moment: tried
 * again for a while (the VM runs there already). */
static int commit_live(struct move *m, json_t **reply, struct cerr *e)
{
	int ret = -1;

	for (int i = 0; i < (m->pool ? 10 : 1); i++) {
		if (i)
			sleep(1);
		memset(e, 0, sizeof(*e));
		ret = dest_call(m, "POST", "/commit", NULL, PEER_TIMEOUT_S, reply, e);
		if (!ret || e->kind == CERR_CONFLICT)
			break;
	}
	return ret;
}

static int move_check(struct move *m, const char *to, struct cerr *e)
{
	struct vmrt *vm = m->vm;

	if (lifecycle_request_check(m->quick ? REQ_MOVE_QUICK : REQ_MOVE_LIVE, vm->state, e))
		return -1;
	if (!m->s->conf.tls_cert || !m->s->conf.tls_key || !m->s->conf.tls_ca)
		return cerr_set(e, CERR_CONFLICT, "tls", "moves need this cellad's TLS material "
				"(--tls-cert, --tls-key, --tls-ca): hosts talk over mutual TLS only");
	if (m->storage && vm->def.checkpoint[0])
		return cerr_set(e, CERR_CONFLICT, "include_storage", "the VM has checkpoints: its disks are "
				"layered images; delete the checkpoints first");
	if (pool_or_peer(m, to, true, e))
		return -1;
	{
		/* The destination's certificate must carry the name (or IP) we
		 * dial, unless the host entry names it. */
		const char *tn = json_string_value(json_object_get(m->host, "tls_name"));
		const char *h = strstr(m->peer.url, "://") ? strstr(m->peer.url, "://") + 3
							   : m->peer.url;

		if (tn)
			snprintf(m->tls_name, sizeof(m->tls_name), "%s", tn);
		else
			snprintf(m->tls_name, sizeof(m->tls_name), "%.*s",
				 (int)(h[0] == '[' ? strcspn(h + 1, "]") + 0 : strcspn(h, ":")),
				 h[0] == '[' ? h + 1 : h);
	}
	return 0;
}

static json_t *move_result(struct move *m)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "name", m->name, "to",
			      m->peer.name, "mode", m->quick ? "quick" : "live", "total_ms",
			      m->total_ms, "downtime_ms", m->down_ms, "rounds", m->rounds, "bytes",
			      m->bytes);

	json_object_set(o, "vm", m->dest_vm ? m->dest_vm : json_null());
	return o;
}

int sup_move(struct sup *s, const char *name, json_t *body, json_t **out, struct cerr *e)
{
	struct move m = { .s = s, .t0 = sup_mono_ns() };
	const char *to = NULL;
	bool saved_here = false;
	struct job job;
	struct vmrt *vm;
	int ret = -1;

	if (parse_move(&m, body, &to, e))
		return -1;
	snprintf(m.name, sizeof(m.name), "%s", name);
	snprintf(m.path, sizeof(m.path), "/v1/incoming/%s", name);
	vm = m.vm = sup_lookup_idle(s, name, e);
	if (!vm)
		return -1;
	if (move_check(&m, to, e))
		goto out;
	{
		json_t *data = json_pack("{s:s, s:s, s:b}", "to", m.peer.name, "mode",
					 m.quick ? "quick" : "live", "include_storage", m.storage);

		ret = job_begin(s, vm, "move-out", data, &job, e);
		json_decref(data);
		if (ret)
			goto out;
		m.job = &job;
	}
	sup_emit(s, vm, "moving", m.peer.name);
	ret = prepare(&m, e);
	if (!ret)
		ret = m.quick ? move_quick(&m, &saved_here, e) : move_live(&m, e);
	if (!ret && !m.quick) {
		json_t *reply = NULL;
		struct cerr ce = { 0 };

		/* The VM runs there (the worker exited 16 only after the
		 * destination's ack): make it official there, then forget it here. */
		move_phase(&m, "committing");
		pthread_mutex_unlock(&vm->lock);
		if (commit_live(&m, &reply, &ce))
			log_warn("vm %s: moved, but the destination's commit failed: %s", name,
				 ce.reason);
		pthread_mutex_lock(&vm->lock);
		m.prepared = false;
		if (reply) {
			json_decref(m.dest_vm);
			m.dest_vm = reply;
		}
		if (!m.total_ms)
			m.total_ms = ms_since(m.t0);
	}
	if (ret) {
		pthread_mutex_unlock(&vm->lock);
		dest_abort(&m);
		pthread_mutex_lock(&vm->lock);
		if (saved_here)
			restore_here(&m);
		sup_emit(s, vm, "move-failed", e->reason);
	}
	if (!ret) {
		char detail[128];

		snprintf(detail, sizeof(detail), "to %s (%s)", m.peer.name, m.quick ? "quick" : "live");
		forget_moved(&m, detail);
		*out = move_result(&m);
	}
	job_end(s, &job);
	if (ret && !e->state[0]) {
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
	}
out:
	sup_vm_unlock(s, vm);
	json_decref(m.dest_vm);
	json_decref(m.host);
	return ret;
}

/* Recovery ------------------------------------------------------------------ */

/* Lock held: wait while the worker is still migrating (the migration goes
 * on without cellad), then for its exit if it is ending. */
static void wait_migration(struct move *m)
{
	struct vmrt *vm = m->vm;
	uint64_t deadline = sup_mono_ns() + (uint64_t)m->s->conf.move_timeout_s * 1000000000ULL;

	while (vm_state_active(vm->state) && vm->pid && sup_mono_ns() < deadline) {
		json_t *reply = NULL, *mig;
		struct cerr e = { 0 };
		const char *phase;
		bool going;

		if (sup_worker_cmd(m->s, vm, json_pack("{s:s}", "cmd", "status"), NULL, 0, 5000,
				   &reply, &e)) {
			/* No answer: it is exiting (or gone); the monitor settles it. */
			sup_wait_until(m->s, vm, migrated, vm->gen, MIGRATED_EXIT_MS);
			return;
		}
		mig = json_object_get(reply, "migration");
		phase = json_string_value(json_object_get(mig, "phase"));
		going = phase && strcmp(phase, "failed") && strcmp(phase, "completed");
		json_decref(reply);
		if (!going) {
			if (phase && !strcmp(phase, "completed"))
				sup_wait_until(m->s, vm, migrated, vm->gen, MIGRATED_EXIT_MS);
			return;
		}
		/* Poll the worker's progress: it has no one to tell the end to. */
		sup_wait_until(m->s, vm, migrated, vm->gen, 200);
	}
}

static enum job_outcome move_out_recover(struct sup *s, struct vmrt *vm,
					 const struct store_job *job, char *detail, size_t len)
{
	struct move m = { .s = s, .vm = vm, .t0 = sup_mono_ns() };
	const char *to = json_string_value(json_object_get(job->data, "to")) ?: "";
	bool saved_here = json_is_true(json_object_get(job->data, "saved_here"));
	enum job_outcome o = JOB_ROLLED_BACK;
	struct cerr e = { 0 };
	json_t *reply = NULL;

	snprintf(m.name, sizeof(m.name), "%s", vm->def.name);
	snprintf(m.path, sizeof(m.path), "/v1/incoming/%s", vm->def.name);
	m.quick = !strcmp(json_string_value(json_object_get(job->data, "mode")) ?: "", "quick");
	/* Whatever the phase, the destination may have prepared: abort asks it
	 * to drop what it has (an unknown VM is no error there). */
	m.prepared = true;
	if (pool_or_peer(&m, to, false, &e)) {
		snprintf(detail, len, "the destination %s is no longer known: %s", to, e.reason);
		return JOB_FAILED;
	}
	if (!m.quick)
		wait_migration(&m);
	if ((!m.quick && vm->exit_status == WORKER_EXIT_MIGRATED && !vm_state_active(vm->state)) ||
	    (m.quick && !strcmp(job->phase, "committing") &&
	     !dest_call(&m, "POST", "/commit", NULL, PEER_TIMEOUT_S, &reply, &e))) {
		/* It runs there: make it official there (live), forget it here. */
		if (!m.quick && commit_live(&m, &reply, &e))
			log_warn("vm %s: moved, but the destination's commit failed: %s", m.name,
				 e.reason);
		json_decref(reply);
		snprintf(detail, len, "the VM runs on %s", m.peer.name);
		forget_moved(&m, detail);
		o = JOB_FINISHED;
	} else {
		dest_abort(&m);
		if (m.quick && saved_here)
			restore_here(&m);
		snprintf(detail, len, "the move to %s was undone; the VM is %s here", m.peer.name,
			 vm_state_name(vm->state));
		sup_emit(s, vm, "move-failed", "cellad restarted during the move");
	}
	json_decref(m.host);
	return o;
}

const struct job_kind move_out_job = { "move-out", move_out_recover };
