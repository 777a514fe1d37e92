/* join.c: creating a pool, join tokens, and joining: the joining host's
 * side (key and request made here, its certificate from a host holding the
 * pool's CA key, that host's CA checked against the token's hash) and the
 * admitting side (the token checked and used up in one etcd transaction
 * with the new host's record). docs/pool.md: the design. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "bodybuf.h"
#include "ca.h"
#include "join_parse.h"
#include "log.h"
#include "pool_priv.h"
#include "vmdef.h"

#define JOIN_REPLY_MAX (64u << 10)
#define TOKEN_TTL_MIN_S 60
#define TOKEN_TTL_MAX_S (7 * 86400)

static void rand_hex(char *dst, size_t bytes)
{
	unsigned char b[32];

	if (gnutls_rnd(GNUTLS_RND_KEY, b, bytes) < 0)
		abort(); /* no randomness: nothing safe to do */
	for (size_t i = 0; i < bytes; i++)
		snprintf(dst + 2 * i, 3, "%02x", b[i]);
}

/* One create or join at a time, and only outside a pool. */
static int begin(struct pool *p, struct cerr *e)
{
	char dir[PATH_MAX + 8];
	struct stat st;
	int ret = 0;

	snprintf(dir, sizeof(dir), "%s/pool", p->state_dir);
	pthread_mutex_lock(&p->lock);
	if (p->etcd && !p->left)
		ret = cerr_set(e, CERR_CONFLICT, "pool", "this host is in pool %s already",
			       p->prefix);
	else if (p->etcd) /* files: cellad is restarting; configuration: edit it */
		ret = cerr_set(e, CERR_CONFLICT, "pool", "this host left pool %s: %s", p->prefix,
			       p->conf.from_files ? "cellad is starting again, try then"
			       : "its pool is set by its configuration (store and pool sections)");
	else if (p->busy)
		ret = cerr_set(e, CERR_CONFLICT, "pool", "a pool create or join runs already");
	else if (stat(dir, &st) == 0)
		ret = cerr_set(e, CERR_CONFLICT, "pool", "%s exists: this host has pool files "
			       "(restart cellad to use them, or remove them)", dir);
	else
		p->busy = true;
	pthread_mutex_unlock(&p->lock);
	return ret;
}

static void end(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->busy = false;
	pthread_mutex_unlock(&p->lock);
}

/* state_dir/pool.new, empty. */
static int staging_dir(struct pool *p, char *dir, size_t len)
{
	DIR *d;
	struct dirent *de;

	snprintf(dir, len, "%s/pool.new", p->state_dir);
	if ((d = opendir(dir))) {
		while ((de = readdir(d)))
			if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") &&
						     strcmp(de->d_name, "..")))
				unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
		rmdir(dir);
	}
	return mkdir(dir, 0700) < 0 ? -errno : 0;
}

static void staging_drop(const char *dir)
{
	static const char *const files[] = { "ca.pem", "ca.key", "host.pem", "host.key",
					     "pool.json" };
	char path[PATH_MAX + 16];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%.4000s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static int staging_commit(struct pool *p, const char *dir, struct cerr *e)
{
	char to[PATH_MAX + 8];

	snprintf(to, sizeof(to), "%s/pool", p->state_dir);
	if (rename(dir, to) < 0)
		return cerr_set(e, CERR_INTERNAL, "", "cannot put the pool files in place (%s): %s",
				to, strerror(errno));
	return 0;
}

static int write_files(const char *dir, const char *ca, const char *ca_key, const char *cert,
		       const char *key, json_t *pool_json, struct cerr *e)
{
	char *pj = pool_json ? json_dumps(pool_json, JSON_INDENT(1)) : NULL;
	int ret = pool_json && !pj ? -ENOMEM : 0;

	if (!ret && ca)
		ret = pool_write_file(dir, "ca.pem", ca, 0644);
	if (!ret && ca_key)
		ret = pool_write_file(dir, "ca.key", ca_key, 0600);
	if (!ret && cert)
		ret = pool_write_file(dir, "host.pem", cert, 0644);
	if (!ret && key)
		ret = pool_write_file(dir, "host.key", key, 0600);
	if (!ret && pj)
		ret = pool_write_file(dir, "pool.json", pj, 0600);
	free(pj);
	return ret ? cerr_set(e, CERR_INTERNAL, "", "cannot write the pool files in %s: %s", dir,
			      strerror(-ret)) : 0;
}

static int etcd_for(const char *dir, json_t *endpoints, unsigned timeout_ms, struct etcd **out,
		    struct cerr *e)
{
	char ca[PATH_MAX + 16], cert[PATH_MAX + 16], key[PATH_MAX + 16], err[256];
	struct etcd_conf ec = { .ca = ca, .cert = cert, .key = key, .timeout_ms = timeout_ms };
	json_t *v;
	size_t i;

	snprintf(ca, sizeof(ca), "%.4000s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%.4000s/host.pem", dir);
	snprintf(key, sizeof(key), "%.4000s/host.key", dir);
	json_array_foreach(endpoints, i, v)
		if (i < ETCD_MAX_ENDPOINTS)
			ec.endpoints[ec.nr_endpoints++] = json_string_value(v);
	if (etcd_open(out, &ec, err, sizeof(err)))
		return cerr_set(e, CERR_INTERNAL, "", "etcd: %s", err);
	return 0;
}

/* A token for the pool at prefix: its record P/tokens/ID (the secret's
 * hash, expiry) on a lease of ttl_s, so that etcd forgets it when it
 * expires. */
static int token_make(struct etcd *etcd, const char *prefix, const char *ca_hash,
		      const char *host, int64_t ttl_s, char *token, int64_t *expires,
		      struct cerr *e)
{
	char id[POOL_TOKEN_ID_HEX + 1], secret[POOL_TOKEN_SECRET_HEX + 1], hash[65];
	char key[POOL_KEY_MAX], *val;
	struct etcd_txn t;
	int64_t lease = 0, granted;
	bool ok = false;
	int ret;

	rand_hex(id, POOL_TOKEN_ID_HEX / 2);
	rand_hex(secret, POOL_TOKEN_SECRET_HEX / 2);
	if (pool_token_secret_hash(secret, hash))
		return cerr_set(e, CERR_INTERNAL, "", "cannot hash the token");
	*expires = (int64_t)time(NULL) + ttl_s;
	snprintf(key, sizeof(key), "%s/tokens/%s", prefix, id);
	{
		json_t *rec = json_pack("{s:s, s:I, s:s}", "hash", hash, "expires_at",
					(json_int_t)*expires, "created_by", host);

		val = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
		json_decref(rec);
	}
	if (!val)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	etcd_txn_init(&t);
	ret = etcd_lease_grant(etcd, ttl_s, &lease, &granted) ?:
	      etcd_txn_compare(&t, key, ETCD_CMP_VERSION, ETCD_CMP_EQUAL, 0, NULL) ?:
	      etcd_txn_put(&t, key, val, strlen(val), lease) ?: etcd_txn_commit(etcd, &t, &ok, NULL);
	etcd_txn_free(&t);
	free(val);
	if (ret)
		return pool_store_cerr(e, ret);
	if (!ok) /* one in 2^24: the caller may try again */
		return cerr_set(e, CERR_CONFLICT, "", "a token with this id exists; try again");
	snprintf(token, POOL_TOKEN_LEN + 1, "%s.%s.%s", id, secret, ca_hash);
	return 0;
}

static int body_keys(json_t *body, const char *const *keys, struct cerr *e)
{
	const char *key;
	json_t *v;

	if (!json_is_object(body))
		return cerr_set(e, CERR_INVALID, "", "expected a JSON object");
	json_object_foreach(body, key, v) {
		bool ok = false;

		for (const char *const *k = keys; *k; k++)
			ok |= !strcmp(key, *k);
		if (!ok)
			return cerr_set(e, CERR_INVALID, key, "unknown field");
	}
	return 0;
}

static int body_uint(json_t *body, const char *key, int64_t min, int64_t max, int64_t *v,
		     struct cerr *e)
{
	json_t *j = json_object_get(body, key);

	if (!j)
		return 0;
	if (!json_is_integer(j) || json_integer_value(j) < min || json_integer_value(j) > max)
		return cerr_set(e, CERR_INVALID, key, "expected an integer from %lld to %lld",
				(long long)min, (long long)max);
	*v = json_integer_value(j);
	return 0;
}

static int host_name(json_t *body, char *host, size_t len, struct cerr *e)
{
	const char *h = json_string_value(json_object_get(body, "host"));

	if (json_object_get(body, "host") && !h)
		return cerr_set(e, CERR_INVALID, "host", "expected a string");
	if (!h) {
		if (gethostname(host, len) < 0)
			return cerr_set(e, CERR_INTERNAL, "host", "no host name: %s",
					strerror(errno));
		host[len - 1] = 0;
		h = host;
	} else {
		snprintf(host, len, "%s", h);
	}
	if (!vmdef_name_valid(host))
		return cerr_set(e, CERR_INVALID, "host", "'%s' is not a valid host name (letters, "
				"digits, '.', '_', '-'; give \"host\")", host);
	return 0;
}

int pool_create(struct pool *p, json_t *body, json_t **out, bool *restart, struct cerr *e)
{
	static const char *const keys[] = { "name", "host", "etcd", "ca_cert", "ca_key",
					    "address", "lease_ttl_s", "token_ttl_s", NULL };
	const char *name, *ca, *ca_key, *address;
	char host[64], ip[256] = "", hash[POOL_CA_HASH_HEX + 1], dir[PATH_MAX + 16];
	char prefix[128], token[POOL_TOKEN_LEN + 1], key[POOL_KEY_MAX], mkey[POOL_KEY_MAX];
	char *host_key = NULL, *csr = NULL, *cert = NULL, *rec_s = NULL, *member_s = NULL;
	int64_t ttl = POOL_LEASE_TTL_DEFAULT_S, token_ttl = POOL_TOKEN_TTL_DEFAULT_S, expires;
	json_t *eps = json_object_get(body, "etcd"), *v, *pj = NULL, *rec = NULL;
	struct etcd *etcd = NULL;
	struct etcd_txn t;
	bool ok = false, staged = false;
	size_t i;
	int ret;

	*out = NULL;
	*restart = false;
	if (body_keys(body, keys, e) || body_uint(body, "lease_ttl_s", 2, 300, &ttl, e) ||
	    body_uint(body, "token_ttl_s", TOKEN_TTL_MIN_S, TOKEN_TTL_MAX_S, &token_ttl, e) ||
	    host_name(body, host, sizeof(host), e))
		return -1;
	name = json_string_value(json_object_get(body, "name"));
	ca = json_string_value(json_object_get(body, "ca_cert"));
	ca_key = json_string_value(json_object_get(body, "ca_key"));
	address = json_string_value(json_object_get(body, "address"));
	if (!name || !vmdef_name_valid(name))
		return cerr_set(e, CERR_INVALID, "name", "expected the pool's name (letters, "
				"digits, '.', '_', '-')");
	if (!json_is_array(eps) || !json_array_size(eps) ||
	    json_array_size(eps) > ETCD_MAX_ENDPOINTS)
		return cerr_set(e, CERR_INVALID, "etcd", "expected 1 to %d etcd endpoints",
				ETCD_MAX_ENDPOINTS);
	json_array_foreach(eps, i, v)
		if (!json_is_string(v) ||
		    pool_url_host(json_string_value(v), "etcd", ip, sizeof(ip), e))
			return cerr_set(e, CERR_INVALID, "etcd", "expected https://HOST:PORT "
					"endpoints (etcd is reached with mutual TLS only)");
	ip[0] = 0;
	if (!ca || !ca_key)
		return cerr_set(e, CERR_INVALID, !ca ? "ca_cert" : "ca_key", "the pool's CA "
				"certificate and key (PEM) are required");
	if (json_object_get(body, "address") &&
	    (!address || pool_url_host(address, "address", ip, sizeof(ip), e)))
		return address ? -1 : cerr_set(e, CERR_INVALID, "address", "expected a string");
	if (pool_ca_hash(ca, ca_key, hash, e))
		return -1;
	if (begin(p, e))
		return -1;
	snprintf(prefix, sizeof(prefix), "/cella/%s", name);
	ret = pool_ca_make_key_csr(host, &host_key, &csr, e) ?:
	      pool_ca_sign(ca, ca_key, csr, host, ip[0] ? ip : NULL, &cert, e);
	if (ret)
		goto out;
	pj = json_pack("{s:s, s:s, s:O, s:s, s:s, s:I}", "name", name, "prefix", prefix,
		       "endpoints", eps, "host", host, "address", address ? address : "",
		       "lease_ttl_s", (json_int_t)ttl);
	if (!pj) {
		ret = cerr_set(e, CERR_INTERNAL, "", "out of memory");
		goto out;
	}
	if ((ret = staging_dir(p, dir, sizeof(dir)))) {
		ret = cerr_set(e, CERR_INTERNAL, "", "cannot make %s: %s", dir, strerror(-ret));
		goto out;
	}
	staged = true;
	if ((ret = write_files(dir, ca, ca_key, cert, host_key, pj, e)) ||
	    (ret = etcd_for(dir, eps, 5000, &etcd, e)))
		goto out;
	/* The pool record: the first create wins; a second one finds it. */
	rec = json_pack("{s:s, s:s, s:O, s:I, s:I, s:s}", "name", name, "ca", ca, "endpoints",
			eps, "lease_ttl_s", (json_int_t)ttl, "created_at", (json_int_t)time(NULL),
			"created_by", host);
	rec_s = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	/* This host's record comes with the pool's (its lease once cellad
	 * runs on the pool). */
	json_decref(rec);
	rec = json_pack("{s:s, s:s, s:I, s:i, s:s, s:I}", "name", host, "address",
			address ? address : "", "memory_mib", (json_int_t)p->conf.memory_mib,
			"cpus", (int)(p->conf.cpus ? p->conf.cpus : 1), "state", "up", "joined_at",
			(json_int_t)time(NULL));
	member_s = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	snprintf(key, sizeof(key), "%s/pool", prefix);
	snprintf(mkey, sizeof(mkey), "%s/members/%s", prefix, host);
	etcd_txn_init(&t);
	ret = rec_s && member_s ?
	      etcd_txn_compare(&t, key, ETCD_CMP_VERSION, ETCD_CMP_EQUAL, 0, NULL) ?:
	      etcd_txn_put(&t, key, rec_s, strlen(rec_s), 0) ?:
	      etcd_txn_put(&t, mkey, member_s, strlen(member_s), 0) ?:
	      etcd_txn_commit(etcd, &t, &ok, NULL) : -ENOMEM;
	etcd_txn_free(&t);
	if (ret) {
		ret = cerr_set(e, ret == -EPROTO ? CERR_INVALID : CERR_UNAVAILABLE, "etcd",
			       "cannot record the pool in etcd: %s%s", strerror(-ret),
			       ret == -EPROTO ? " (etcd must trust the pool's CA: its "
			       "--trusted-ca-file)" : "");
		goto out;
	}
	if (!ok) {
		ret = cerr_set(e, CERR_CONFLICT, "name", "a pool %s exists in this etcd already "
			       "(join it: cella pool join)", name);
		goto out;
	}
	if ((ret = token_make(etcd, prefix, hash, host, token_ttl, token, &expires, e)) ||
	    (ret = staging_commit(p, dir, e)))
		goto out;
	staged = false;
	*out = json_pack("{s:s, s:s, s:s, s:I, s:s}", "pool", name, "host", host, "token", token,
			 "expires_at", (json_int_t)expires, "ca_hash", hash);
	*restart = true;
	log_info("pool: created pool %s (prefix %s) as host %s; cellad restarts on it", name,
		 prefix, host);
out:
	if (staged)
		staging_drop(dir);
	if (etcd)
		etcd_close(etcd);
	json_decref(pj);
	json_decref(rec);
	free(rec_s);
	free(member_s);
	free(host_key);
	free(csr);
	free(cert);
	end(p);
	return ret ? -1 : 0;
}

static int own_ca_hash(struct pool *p, char *hash, char **ca_pem, struct cerr *e)
{
	char *ca = pool_read_file(p->ca);
	int ret;

	if (!ca)
		return cerr_set(e, CERR_INTERNAL, "", "cannot read the pool's CA %s", p->ca);
	ret = pool_ca_hash(ca, NULL, hash, e);
	if (ca_pem && !ret)
		*ca_pem = ca;
	else
		free(ca);
	return ret;
}

int pool_token_new(struct pool *p, json_t *body, json_t **out, struct cerr *e)
{
	static const char *const keys[] = { "ttl_s", NULL };
	char hash[POOL_CA_HASH_HEX + 1], token[POOL_TOKEN_LEN + 1];
	int64_t ttl = POOL_TOKEN_TTL_DEFAULT_S, expires;
	struct stat st;

	*out = NULL;
	if (!p->etcd)
		return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool");
	if ((body && (body_keys(body, keys, e) ||
		      body_uint(body, "ttl_s", TOKEN_TTL_MIN_S, TOKEN_TTL_MAX_S, &ttl, e))) ||
	    own_ca_hash(p, hash, NULL, e) ||
	    token_make(p->etcd, p->prefix, hash, p->host, ttl, token, &expires, e))
		return -1;
	*out = json_pack("{s:s, s:I}", "token", token, "expires_at", (json_int_t)expires);
	if (*out && p->ca_key[0] && stat(p->ca_key, &st) == 0 && p->address[0])
		json_object_set_new(*out, "join_address", json_string(p->address));
	return *out ? 0 : cerr_set(e, CERR_INTERNAL, "", "out of memory");
}

int pool_ca_get(struct pool *p, json_t **out, struct cerr *e)
{
	char hash[POOL_CA_HASH_HEX + 1], *ca = NULL;

	*out = NULL;
	if (!p->etcd)
		return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool");
	if (own_ca_hash(p, hash, &ca, e))
		return -1;
	*out = json_pack("{s:s, s:s}", "ca", ca, "ca_hash", hash);
	free(ca);
	return *out ? 0 : cerr_set(e, CERR_INTERNAL, "", "out of memory");
}

/* The admitting side ------------------------------------------------------- */

static int forbidden(struct cerr *e)
{
	/* One answer for an unknown, wrong, expired or used token: nothing to
	 * learn from the difference. */
	return cerr_set(e, CERR_FORBIDDEN, "token", "the join token is wrong, expired or used "
			"already (make one with cella pool token)");
}

int pool_admit(struct pool *p, json_t *body, json_t **out, struct cerr *e)
{
	char key[POOL_KEY_MAX], mkey[POOL_KEY_MAX], hash[65], ca_hash[POOL_CA_HASH_HEX + 1];
	char ip[256] = "", *ca = NULL, *ca_key = NULL, *cert = NULL, *rec_s = NULL;
	struct pool_join_req req;
	struct etcd_kv tok = { 0 }, pool_kv = { 0 };
	json_t *trec = NULL, *prec = NULL, *rec = NULL;
	struct etcd_txn t;
	bool ok = false, have_tok = false, have_pool = false;
	int ret;

	*out = NULL;
	if (!p->etcd)
		return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool");
	if (!p->ca_key[0] || !(ca_key = pool_read_file(p->ca_key)))
		return cerr_set(e, CERR_CONFLICT, "pool", "host %s cannot admit hosts: it does not "
				"hold the pool's CA key (join through the host that created the "
				"pool)", p->host);
	ret = pool_join_req_parse(body, &req, e) ?: own_ca_hash(p, ca_hash, &ca, e);
	if (ret)
		goto out;
	if (req.address && pool_url_host(req.address, "address", ip, sizeof(ip), e))
		ip[0] = 0; /* checked by the parser: cannot happen */
	if ((ret = pool_key(p, key, "tokens/%s", req.token.id)) ||
	    (ret = pool_key(p, mkey, "members/%s", req.name))) {
		ret = cerr_set(e, CERR_INVALID, "name", "too long");
		goto out;
	}
	ret = etcd_get(p->etcd, key, &tok);
	if (ret == -ENOENT) {
		ret = forbidden(e);
		goto out;
	}
	if (ret) {
		ret = pool_store_cerr(e, ret);
		goto out;
	}
	have_tok = true;
	trec = json_loads(tok.value, 0, NULL);
	if (pool_token_secret_hash(req.token.secret, hash) ||
	    !json_string_value(json_object_get(trec, "hash")) ||
	    !pool_hex_eq(json_string_value(json_object_get(trec, "hash")), hash) ||
	    json_integer_value(json_object_get(trec, "expires_at")) < (json_int_t)time(NULL) ||
	    !pool_hex_eq(req.token.ca_hash, ca_hash)) {
		ret = forbidden(e);
		goto out;
	}
	{
		char pkey[POOL_KEY_MAX];

		ret = pool_key(p, pkey, "%s", "pool") ?: etcd_get(p->etcd, pkey, &pool_kv);
		if (ret) {
			ret = ret == -ENOENT ? cerr_set(e, CERR_INTERNAL, "", "no pool record in "
							"etcd") : pool_store_cerr(e, ret);
			goto out;
		}
		have_pool = true;
		prec = json_loads(pool_kv.value, 0, NULL);
	}
	if ((ret = pool_ca_sign(ca, ca_key, req.csr, req.name, ip[0] ? ip : NULL, &cert, e)))
		goto out;
	rec = json_pack("{s:s, s:s, s:I, s:i, s:s, s:I}", "name", req.name, "address",
			req.address ? req.address : "", "memory_mib", (json_int_t)req.memory_mib,
			"cpus", (int)req.cpus, "state", "up", "joined_at", (json_int_t)time(NULL));
	rec_s = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	/* The token is used up and the host recorded together, or neither. */
	etcd_txn_init(&t);
	ret = rec_s ? etcd_txn_compare(&t, key, ETCD_CMP_MOD, ETCD_CMP_EQUAL, tok.mod_rev, NULL) ?:
		      etcd_txn_compare(&t, mkey, ETCD_CMP_VERSION, ETCD_CMP_EQUAL, 0, NULL) ?:
		      etcd_txn_delete(&t, key, NULL) ?:
		      etcd_txn_put(&t, mkey, rec_s, strlen(rec_s), 0) ?:
		      etcd_txn_commit(p->etcd, &t, &ok, NULL) : -ENOMEM;
	etcd_txn_free(&t);
	if (ret) {
		ret = pool_store_cerr(e, ret);
		goto out;
	}
	if (!ok) {
		struct etcd_kv m;

		if (etcd_get(p->etcd, mkey, &m) == 0) {
			etcd_kv_free(&m);
			ret = cerr_set(e, CERR_EXISTS, "name", "a host named %s is in the pool "
				       "already", req.name);
		} else {
			ret = forbidden(e); /* the token went meanwhile */
		}
		goto out;
	}
	*out = json_pack("{s:s, s:s, s:{s:s, s:s, s:O, s:O}}", "cert", cert, "ca", ca, "pool",
			 "name", json_string_value(json_object_get(prec, "name")) ?: "",
			 "prefix", p->prefix, "endpoints",
			 json_object_get(prec, "endpoints") ?: json_null(), "lease_ttl_s",
			 json_object_get(prec, "lease_ttl_s") ?: json_null());
	if (!*out)
		ret = cerr_set(e, CERR_INTERNAL, "", "out of memory");
	else
		log_info("pool: admitted host %s (token %s)", req.name, req.token.id);
out:
	if (have_tok)
		etcd_kv_free(&tok);
	if (have_pool)
		etcd_kv_free(&pool_kv);
	json_decref(trec);
	json_decref(prec);
	json_decref(rec);
	free(rec_s);
	free(ca);
	if (ca_key) {
		gnutls_memset(ca_key, 0, strlen(ca_key));
		free(ca_key);
	}
	free(cert);
	return ret ? -1 : 0;
}

/* The joining side --------------------------------------------------------- */

/* One HTTPS request to the admitting host: cafile NULL only for reading
 * its CA (checked against the token's hash right after); no client
 * certificate, no bearer token (the join token is the credential). */
static int join_http(const char *url, const char *method, json_t *body, const char *cafile,
		     long *status, json_t **reply, char *err, size_t errlen)
{
	struct bodybuf b = { .max = JOIN_REPLY_MAX };
	struct curl_slist *hdrs = NULL;
	char cerrbuf[CURL_ERROR_SIZE] = "", *payload = NULL;
	CURL *h = curl_easy_init();
	CURLcode rc;

	*reply = NULL;
	*status = 0;
	if (!h)
		return -1;
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload ? payload : "");
	}
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bodybuf_collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerrbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	if (cafile) {
		/* The chain must lead to the pinned CA; the name is not checked:
		 * the operator names the host by the address it gave. */
		curl_easy_setopt(h, CURLOPT_CAINFO, cafile);
		curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
		if (b.len)
			*reply = json_loadb(b.p, b.len, 0, NULL);
	} else {
		snprintf(err, errlen, "cannot reach %s: %s", url,
			 cerrbuf[0] ? cerrbuf : curl_easy_strerror(rc));
	}
	free(b.p);
	free(payload);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return rc == CURLE_OK ? 0 : -1;
}

/* A refusal from the admitting host, kept as the same kind of error. */
static int refused(struct cerr *e, const char *to, long status, json_t *reply)
{
	json_t *er = json_object_get(reply, "error");
	const char *msg = json_string_value(json_object_get(er, "reason")) ?: "no reason given";
	const char *field = json_string_value(json_object_get(er, "field")) ?: "";
	enum cerr_kind kind = status == 404 ? CERR_CONFLICT : status == 403 ? CERR_FORBIDDEN : status == 409 ? CERR_CONFLICT
			      : status == 400 ? CERR_INVALID : CERR_PEER;

	return cerr_set(e, kind, field, "%s refused the join: %s%s", to, msg,
			kind == CERR_PEER ? " (its answer was not 400, 403 or 409)" : "");
}

int pool_join(struct pool *p, json_t *body, json_t **out, bool *restart, struct cerr *e)
{
	static const char *const keys[] = { "to", "token", "host", "address", NULL };
	const char *to = json_string_value(json_object_get(body, "to"));
	const char *address = json_string_value(json_object_get(body, "address"));
	char host[64], thost[256], url[512], dir[PATH_MAX + 16], cafile[PATH_MAX + 32];
	char hash[POOL_CA_HASH_HEX + 1], err[512];
	char *key_pem = NULL, *csr = NULL, *ca = NULL;
	struct pool_token tok;
	json_t *reply = NULL, *req = NULL, *pool, *pj = NULL;
	const char *cert;
	bool staged = false;
	long status;
	int ret;

	*out = NULL;
	*restart = false;
	if (body_keys(body, keys, e) || host_name(body, host, sizeof(host), e) ||
	    pool_token_parse(json_string_value(json_object_get(body, "token")), &tok, e) ||
	    pool_url_host(to, "to", thost, sizeof(thost), e))
		return -1;
	if (json_object_get(body, "address") &&
	    (!address || pool_url_host(address, "address", thost, sizeof(thost), e)))
		return address ? -1 : cerr_set(e, CERR_INVALID, "address", "expected a string");
	if (begin(p, e))
		return -1;
	/* The admitting host's CA, read without checking, then pinned. */
	snprintf(url, sizeof(url), "%.400s/v1/pool/ca", to);
	if (join_http(url, "GET", NULL, NULL, &status, &reply, err, sizeof(err))) {
		ret = cerr_set(e, CERR_PEER, "to", "%s", err);
		goto out;
	}
	if (status != 200) {
		ret = refused(e, to, status, reply);
		goto out;
	}
	ca = json_string_value(json_object_get(reply, "ca")) ?
	     strdup(json_string_value(json_object_get(reply, "ca"))) : NULL;
	if (!ca || pool_ca_hash(ca, NULL, hash, e) || !pool_hex_eq(hash, tok.ca_hash)) {
		ret = cerr_set(e, CERR_FORBIDDEN, "token", "the CA that %s shows is not the one "
			       "the token pins (sha256 %.16s..., not %.16s...): not joining", to,
			       ca ? hash : "-", tok.ca_hash);
		goto out;
	}
	if ((ret = staging_dir(p, dir, sizeof(dir)))) {
		ret = cerr_set(e, CERR_INTERNAL, "", "cannot make %s: %s", dir, strerror(-ret));
		goto out;
	}
	staged = true;
	if ((ret = write_files(dir, ca, NULL, NULL, NULL, NULL, e)) ||
	    (ret = pool_ca_make_key_csr(host, &key_pem, &csr, e)))
		goto out;
	snprintf(cafile, sizeof(cafile), "%.4000s/ca.pem", dir);
	req = json_pack("{s:s, s:s, s:s, s:I, s:i}", "token",
			json_string_value(json_object_get(body, "token")), "name", host, "csr",
			csr, "memory_mib", (json_int_t)p->conf.memory_mib, "cpus",
			(int)(p->conf.cpus ? p->conf.cpus : 1));
	if (req && address)
		json_object_set_new(req, "address", json_string(address));
	json_decref(reply);
	reply = NULL;
	snprintf(url, sizeof(url), "%.400s/v1/pool/members", to);
	if (join_http(url, "POST", req, cafile, &status, &reply, err, sizeof(err))) {
		ret = cerr_set(e, CERR_PEER, "to", "%s", err);
		goto out;
	}
	if (status != 201) {
		ret = refused(e, to, status, reply);
		goto out;
	}
	cert = json_string_value(json_object_get(reply, "cert"));
	pool = json_object_get(reply, "pool");
	if (!cert || !json_is_array(json_object_get(pool, "endpoints")) ||
	    !json_string_value(json_object_get(pool, "prefix")) ||
	    !json_string_value(json_object_get(reply, "ca")) ||
	    strcmp(json_string_value(json_object_get(reply, "ca")), ca)) {
		ret = cerr_set(e, CERR_PEER, "to", "%s answered the join with something else "
			       "than a certificate and the pool's settings", to);
		goto out;
	}
	pj = json_pack("{s:O, s:O, s:O, s:s, s:s, s:I}", "name", json_object_get(pool, "name"),
		       "prefix", json_object_get(pool, "prefix"), "endpoints",
		       json_object_get(pool, "endpoints"), "host", host, "address",
		       address ? address : "", "lease_ttl_s",
		       json_is_integer(json_object_get(pool, "lease_ttl_s"))
		       ? json_integer_value(json_object_get(pool, "lease_ttl_s"))
		       : (json_int_t)POOL_LEASE_TTL_DEFAULT_S);
	if (!pj) {
		ret = cerr_set(e, CERR_PEER, "to", "%s answered the join without the pool's name",
			       to);
		goto out;
	}
	if ((ret = write_files(dir, NULL, NULL, cert, key_pem, pj, e)) ||
	    (ret = staging_commit(p, dir, e)))
		goto out;
	staged = false;
	*out = json_pack("{s:O, s:s}", "pool", json_object_get(pool, "name"), "host", host);
	*restart = true;
	log_info("pool: joined pool %s through %s as host %s; cellad restarts on it",
		 json_string_value(json_object_get(pool, "prefix")), to, host);
out:
	if (staged)
		staging_drop(dir);
	json_decref(reply);
	json_decref(req);
	json_decref(pj);
	if (key_pem) {
		gnutls_memset(key_pem, 0, strlen(key_pem));
		free(key_pem);
	}
	free(csr);
	free(ca);
	end(p);
	return ret ? -1 : 0;
}
