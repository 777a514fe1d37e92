/* main.c: cellad, the per-host management service: configuration, state
 * and run directories, the supervisor and the API; runs in the foreground
 * (systemd Type=notify) and logs to stderr. Stopping cellad leaves the VMs
 * running: the next cellad re-adopts them. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "api.h"
#include "pool.h"
#include "storage.h"
#include "store.h"
#include "etcd_stats.h"
#include "log.h"
#include "feature_jobs.h"
#include "dynmem.h"
#include "imageboot.h"
#include "sup.h"
#include "host_limits.h"

#define DEFAULT_CONFIG "/etc/cella/cellad.json"

struct conf {
	struct sup_conf sup;
	struct api_conf api;
	char *strings[160]; /* owned copies */
	unsigned nr_strings;
	char *token;
	bool sandbox_set;
	bool roles_set;
	struct storage storage;
	bool etcd_set; /* "store": {"etcd": ...}: the pool's store instead of SQLite */
	struct store_etcd_conf etcd;
	bool pool_set; /* "pool": this host is a member of the store's pool */
	struct pool_conf pool;
	struct dynmem_conf dynmem; /* "dynmem": the dynamic-memory balancer */
};

static const char *keep(struct conf *c, const char *s)
{
	char *d = s ? strdup(s) : NULL;

	if (d && c->nr_strings < sizeof(c->strings) / sizeof(c->strings[0]))
		c->strings[c->nr_strings++] = d;
	return d;
}

static void conf_release(struct conf *c)
{
	for (unsigned i = 0; i < c->nr_strings; i++)
		free(c->strings[i]);
	c->nr_strings = 0;
}

static void usage(FILE *f)
{
	fputs("Usage: cellad [OPTIONS]\n"
	      "The cella management service: VM definitions, one sandboxed cella-vm worker per\n"
	      "running VM, and the HTTP/JSON API (docs/cellad.md, docs/api/openapi.json).\n\n"
	      "  --config FILE      JSON configuration (default " DEFAULT_CONFIG " if it exists)\n"
	      "  --socket PATH      API Unix socket (default /run/cella/cellad.sock)\n"
	      "  --state-dir DIR    definitions database and worker logs (default /var/lib/cella)\n"
	      "  --run-dir DIR      worker sockets and exit records (default /run/cella)\n"
	      "  --worker PATH      cella-vm binary (default: next to cellad)\n"
	      "  --no-sandbox       run workers without the mount namespace and user switch\n"
	      "  --no-seccomp       run workers without the system-call allowlist\n"
	      "  --tls-cert FILE, --tls-key FILE, --tls-ca FILE\n"
	      "                     this host's certificate and key and the CA of its peers\n"
	      "                     (PEM): the TLS of live moves (cella vm move)\n"
	      "  --help, --version\n\n"
	      "Runs in the foreground and logs to stderr. SIGTERM/SIGINT stop the service;\n"
	      "VMs keep running and are re-adopted when cellad starts again.\n", f);
}

static int conf_string(struct conf *c, json_t *root, const char *key, const char **dst)
{
	json_t *v = json_object_get(root, key);

	if (!v)
		return 0;
	if (!json_is_string(v)) {
		log_err("config: %s: expected a string", key);
		return -EINVAL;
	}
	*dst = keep(c, json_string_value(v));
	return 0;
}

static int conf_uint(json_t *root, const char *key, uint64_t min, uint64_t max, uint64_t *dst)
{
	json_t *v = json_object_get(root, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min ||
	    (uint64_t)json_integer_value(v) > max) {
		log_err("config: %s: expected an integer from %llu to %llu", key,
			(unsigned long long)min, (unsigned long long)max);
		return -EINVAL;
	}
	*dst = (uint64_t)json_integer_value(v);
	return 0;
}

static int conf_bool(json_t *root, const char *key, bool *dst)
{
	json_t *v = json_object_get(root, key);

	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		log_err("config: %s: expected true or false", key);
		return -EINVAL;
	}
	*dst = json_is_true(v);
	return 0;
}

static int role_parse(const char *s, enum role *r)
{
	static const char *const names[] = { [ROLE_VIEWER] = "viewer", [ROLE_OPERATOR] = "operator",
					     [ROLE_ADMIN] = "admin" };

	for (int i = ROLE_VIEWER; i <= ROLE_ADMIN; i++) {
		if (!strcmp(s, names[i])) {
			*r = (enum role)i;
			return 0;
		}
	}
	return -1;
}

/* "roles": {"admin": ["user:NAME", "group:NAME", ...], "operator": [...],
 * "viewer": [...]} (names or numeric ids): who gets which role on the Unix
 * socket. root is always admin. */
static int conf_roles(struct conf *c, json_t *roles)
{
	const char *key;
	json_t *list;

	if (!json_is_object(roles)) {
		log_err("config: roles: expected an object of role -> [\"user:NAME\" | \"group:NAME\"]");
		return -EINVAL;
	}
	c->api.nr_principals = 0;
	json_object_foreach(roles, key, list) {
		enum role role;
		size_t i;
		json_t *v;

		if (role_parse(key, &role) || !json_is_array(list)) {
			log_err("config: roles: '%s': expected admin, operator or viewer with a list",
				key);
			return -EINVAL;
		}
		json_array_foreach(list, i, v) {
			const char *s = json_string_value(v);
			struct api_principal *p = &c->api.principals[c->api.nr_principals];

			if (!s || (strncmp(s, "user:", 5) && strncmp(s, "group:", 6)) || !strchr(s, ':')[1]) {
				log_err("config: roles.%s: expected \"user:NAME\" or \"group:NAME\"", key);
				return -EINVAL;
			}
			if (c->api.nr_principals >= API_MAX_PRINCIPALS) {
				log_err("config: roles: at most %d users and groups", API_MAX_PRINCIPALS);
				return -EINVAL;
			}
			p->group = s[0] == 'g';
			p->name = keep(c, strchr(s, ':') + 1);
			p->role = role;
			c->api.nr_principals++;
		}
	}
	c->roles_set = true;
	return 0;
}

/* "tcp": {"tokens": [{"file": F, "role": R}, ...]}: more bearer tokens,
 * each with its role (token_file's is admin). */
static int conf_tokens(struct conf *c, json_t *list)
{
	size_t i;
	json_t *t;

	if (!list)
		return 0;
	if (!json_is_array(list) || json_array_size(list) > API_MAX_TOKENS) {
		log_err("config: tcp.tokens: expected at most %d of {\"file\", \"role\"}",
			API_MAX_TOKENS);
		return -EINVAL;
	}
	json_array_foreach(list, i, t) {
		const char *file = json_string_value(json_object_get(t, "file"));
		const char *role = json_string_value(json_object_get(t, "role"));
		struct api_token *tok = &c->api.tokens[c->api.nr_tokens];
		char buf[256] = "";
		FILE *f;

		if (!file || !role || role_parse(role, &tok->role)) {
			log_err("config: tcp.tokens[%zu]: expected {\"file\": PATH, \"role\": "
				"admin|operator|viewer}", i);
			return -EINVAL;
		}
		f = fopen(file, "re");
		if (!f || !fgets(buf, sizeof(buf), f)) {
			log_err("config: tcp.tokens[%zu]: cannot read %s", i, file);
			if (f)
				fclose(f);
			return -EINVAL;
		}
		fclose(f);
		buf[strcspn(buf, "\r\n")] = 0;
		if (strlen(buf) < 16) {
			log_err("config: tcp.tokens[%zu]: a token needs at least 16 characters", i);
			return -EINVAL;
		}
		tok->token = keep(c, buf);
		c->api.nr_tokens++;
	}
	return 0;
}

/* "storage": [{"name": N, "path": DIR, "role": "operator", "pool": false}]:
 * where VM files may come from (core/storage.h); "pool": the same directory
 * on every host of the pool (HA VMs' disks). */
static int conf_storage(struct conf *c, json_t *list)
{
	size_t i;
	json_t *l;

	if (!json_is_array(list) || json_array_size(list) > STORAGE_MAX) {
		log_err("config: storage: expected at most %d of {\"name\", \"path\", \"role\"}",
			STORAGE_MAX);
		return -EINVAL;
	}
	c->storage.nr = 0;
	json_array_foreach(list, i, l) {
		const char *name = json_string_value(json_object_get(l, "name"));
		const char *path = json_string_value(json_object_get(l, "path"));
		const char *role = json_string_value(json_object_get(l, "role"));
		json_t *pool = json_object_get(l, "pool");
		struct storage_loc *loc = &c->storage.locs[c->storage.nr];
		char abs[PATH_MAX];

		if (!name || !path || !role || role_parse(role, &loc->role) ||
		    (pool && !json_is_boolean(pool)) || json_object_size(l) != 3u + !!pool) {
			log_err("config: storage[%zu]: expected {\"name\", \"path\", \"role\": "
				"viewer|operator|admin, \"pool\"?: true|false}", i);
			return -EINVAL;
		}
		loc->pool = json_is_true(pool);
		if (path[0] != '/' || !realpath(path, abs)) {
			log_err("config: storage[%zu].path %s: %s", i, path,
				path[0] != '/' ? "expected an absolute path" : strerror(errno));
			return -EINVAL;
		}
		loc->name = keep(c, name);
		loc->path = keep(c, abs);
		loc->dirfd = -1;
		c->storage.nr++;
	}
	return 0;
}

/* "store": {"etcd": {"endpoints": ["https://HOST:PORT", ...], "ca", "cert",
 * "key", "prefix": "/cella/POOL", "host": NAME, "timeout_ms"}}: keep state in
 * an etcd cluster (docs/pool.md) instead of the state dir's SQLite file. */
static int conf_store(struct conf *c, json_t *store)
{
	static const char *const keys[] = { "endpoints", "ca", "cert", "key", "prefix", "host",
					    "timeout_ms" };
	json_t *etcd = json_object_get(store, "etcd"), *eps, *v;
	const char *key;
	uint64_t timeout = 3000;
	char host[64];
	size_t i;

	if (!json_is_object(store) || json_object_size(store) != 1 || !json_is_object(etcd)) {
		log_err("config: store: expected {\"etcd\": {\"endpoints\", \"ca\", \"cert\", "
			"\"key\", \"prefix\"}}");
		return -EINVAL;
	}
	json_object_foreach(etcd, key, v) {
		bool ok = false;

		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			ok |= !strcmp(key, keys[i]);
		if (!ok) {
			log_err("config: store.etcd: unknown key '%s'", key);
			return -EINVAL;
		}
	}
	eps = json_object_get(etcd, "endpoints");
	if (!json_is_array(eps) || !json_array_size(eps) ||
	    json_array_size(eps) > STORE_ETCD_MAX_ENDPOINTS) {
		log_err("config: store.etcd.endpoints: expected 1 to %d URLs (https://HOST:PORT)",
			STORE_ETCD_MAX_ENDPOINTS);
		return -EINVAL;
	}
	json_array_foreach(eps, i, v) {
		if (!json_is_string(v) || strncmp(json_string_value(v), "https://", 8)) {
			log_err("config: store.etcd.endpoints[%zu]: expected https://HOST:PORT "
				"(etcd is reached with mutual TLS only)", i);
			return -EINVAL;
		}
		c->etcd.endpoints[c->etcd.nr_endpoints++] = keep(c, json_string_value(v));
	}
	c->etcd.prefix = "/cella/default";
	if (conf_string(c, etcd, "ca", &c->etcd.ca) || conf_string(c, etcd, "cert", &c->etcd.cert) ||
	    conf_string(c, etcd, "key", &c->etcd.key) ||
	    conf_string(c, etcd, "prefix", &c->etcd.prefix) ||
	    conf_string(c, etcd, "host", &c->etcd.host) ||
	    conf_uint(etcd, "timeout_ms", 100, 60000, &timeout))
		return -EINVAL;
	if (!c->etcd.ca || !c->etcd.cert || !c->etcd.key) {
		log_err("config: store.etcd: ca, cert and key are required (mutual TLS)");
		return -EINVAL;
	}
	if (!c->etcd.host) {
		if (gethostname(host, sizeof(host)) < 0) {
			log_err("config: store.etcd.host: not given and no host name: %s",
				strerror(errno));
			return -EINVAL;
		}
		host[sizeof(host) - 1] = 0;
		c->etcd.host = keep(c, host);
	}
	c->etcd.timeout_ms = (unsigned)timeout;
	c->etcd_set = true;
	return 0;
}

/* The HA settings of a "pool" section or pool.json (docs/pool.md, "High
 * availability"): "renew_ms", "kill_ms", "margin_ms", "fence_ms",
 * "isolation": "restart" | "ride-through", "ride_through_s", on the lease's
 * TTL; checked with fence_settings_check (its reason logged). */
static int conf_fence(json_t *o, const char *where, unsigned ttl_s, struct fence_settings *fs)
{
	uint64_t renew, kill, margin, fence = 0, ride = 0;
	const char *iso = json_string_value(json_object_get(o, "isolation"));
	char why[256];

	fence_settings_for_ttl(fs, ttl_s * 1000u);
	renew = fs->renew_ms;
	kill = fs->kill_ms;
	margin = fs->margin_ms;
	if (conf_uint(o, "renew_ms", 10, 60000, &renew) || conf_uint(o, "kill_ms", 1, 60000, &kill) ||
	    conf_uint(o, "margin_ms", 0, 60000, &margin) || conf_uint(o, "fence_ms", 0, 600000, &fence) ||
	    conf_uint(o, "ride_through_s", 0, 3600, &ride))
		return -EINVAL;
	if (json_object_get(o, "isolation") &&
	    (!iso || (strcmp(iso, "restart") && strcmp(iso, "ride-through")))) {
		log_err("%s.isolation: expected \"restart\" or \"ride-through\"", where);
		return -EINVAL;
	}
	fs->ttl_ms = ttl_s * 1000u;
	fs->renew_ms = (uint32_t)renew;
	fs->kill_ms = (uint32_t)kill;
	fs->margin_ms = (uint32_t)margin;
	fs->fence_ms = (uint32_t)fence;
	fs->policy = iso && !strcmp(iso, "ride-through") ? FENCE_RIDE_THROUGH : FENCE_RESTART;
	fs->ride_through_ms = (uint32_t)ride * 1000u;
	if ((fs->policy == FENCE_RIDE_THROUGH) != (ride > 0)) {
		log_err("%s: \"isolation\": \"ride-through\" goes with \"ride_through_s\" > 0", where);
		return -EINVAL;
	}
	if (fence_settings_check(fs, why, sizeof(why))) {
		log_err("%s: %s", where, why);
		return -EINVAL;
	}
	return 0;
}

/* "pool": {"address": "https://ADDR:PORT", "lease_ttl_s": N}: this host is
 * a member of the pool whose store is store.etcd (docs/pool.md): its host
 * record, kept alive by a lease. */
static int conf_pool(struct conf *c, json_t *pool)
{
	const char *key;
	uint64_t ttl = POOL_LEASE_TTL_DEFAULT_S, backoff;
	json_t *v;

	if (!json_is_object(pool)) {
		log_err("config: pool: expected {\"address\", \"lease_ttl_s\"}");
		return -EINVAL;
	}
	json_object_foreach(pool, key, v) {
		static const char *const known[] = { "address", "lease_ttl_s", "renew_ms", "kill_ms",
						     "margin_ms", "fence_ms", "isolation",
						     "ride_through_s", "ha_backoff_ms" };
		bool ok = false;

		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			ok = ok || !strcmp(key, known[k]);
		if (!ok) {
			log_err("config: pool: unknown key '%s'", key);
			return -EINVAL;
		}
	}
	if (conf_string(c, pool, "address", &c->pool.address) ||
	    conf_uint(pool, "lease_ttl_s", 2, 300, &ttl))
		return -EINVAL;
	if (c->pool.address && strncmp(c->pool.address, "https://", 8)) {
		log_err("config: pool.address: expected https://ADDR:PORT (this host's TCP API)");
		return -EINVAL;
	}
	c->pool.lease_ttl_s = (unsigned)ttl;
	if (conf_fence(pool, "config: pool", (unsigned)ttl, &c->pool.fence))
		return -EINVAL;
	backoff = POOL_HA_BACKOFF_DEFAULT_MS;
	if (conf_uint(pool, "ha_backoff_ms", 0, 60000, &backoff))
		return -EINVAL;
	c->pool.ha_backoff_ms = (uint32_t)backoff;
	c->pool_set = true;
	return 0;
}

/* state_dir/pool/pool.json, written by cella pool create or join: the
 * pool's store and this host's membership, with the pool's files beside it
 * (docs/pool.md). 0 (none: *found false), or -EINVAL. */
static int conf_pool_files(struct conf *c, bool *found)
{
	char dir[PATH_MAX], path[PATH_MAX + 32];
	json_error_t jerr;
	json_t *pj, *eps, *v;
	uint64_t ttl = POOL_LEASE_TTL_DEFAULT_S;
	size_t i;
	int ret = -EINVAL;

	*found = false;
	snprintf(dir, sizeof(dir), "%s/pool", c->sup.state_dir);
	snprintf(path, sizeof(path), "%s/pool.json", dir);
	if (access(path, F_OK) < 0)
		return 0;
	*found = true;
	if (c->etcd_set || c->pool_set) {
		log_err("%s: this host is in a pool (cella pool create or join), and the "
			"configuration has a store or pool section too: remove one", path);
		return -EINVAL;
	}
	pj = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	eps = json_object_get(pj, "endpoints");
	if (!json_is_object(pj) || !json_is_array(eps) || !json_array_size(eps) ||
	    json_array_size(eps) > STORE_ETCD_MAX_ENDPOINTS ||
	    !json_string_value(json_object_get(pj, "prefix")) ||
	    !json_string_value(json_object_get(pj, "host"))) {
		log_err("%s: expected {name, prefix, endpoints, host, address, lease_ttl_s}", path);
		goto out;
	}
	json_array_foreach(eps, i, v) {
		if (!json_is_string(v) || strncmp(json_string_value(v), "https://", 8)) {
			log_err("%s: endpoints: expected https:// URLs", path);
			goto out;
		}
		c->etcd.endpoints[c->etcd.nr_endpoints++] = keep(c, json_string_value(v));
	}
	if (conf_uint(pj, "lease_ttl_s", 2, 300, &ttl))
		goto out;
	c->etcd.prefix = keep(c, json_string_value(json_object_get(pj, "prefix")));
	c->etcd.host = keep(c, json_string_value(json_object_get(pj, "host")));
	c->etcd.timeout_ms = 3000;
	snprintf(path, sizeof(path), "%s/ca.pem", dir);
	c->etcd.ca = c->pool.ca = keep(c, path);
	snprintf(path, sizeof(path), "%s/host.pem", dir);
	c->etcd.cert = c->pool.cert = keep(c, path);
	snprintf(path, sizeof(path), "%s/host.key", dir);
	c->etcd.key = c->pool.key = keep(c, path);
	snprintf(path, sizeof(path), "%s/ca.key", dir);
	if (access(path, F_OK) == 0)
		c->pool.ca_key = keep(c, path);
	if (json_string_value(json_object_get(pj, "address")) &&
	    json_string_value(json_object_get(pj, "address"))[0])
		c->pool.address = keep(c, json_string_value(json_object_get(pj, "address")));
	c->pool.lease_ttl_s = (unsigned)ttl;
	if (conf_fence(pj, path, (unsigned)ttl, &c->pool.fence))
		goto out;
	c->pool.ha_backoff_ms = POOL_HA_BACKOFF_DEFAULT_MS;
	c->pool.from_files = true;
	/* The pool's certificates are this host's: its HTTPS API, forwarded
	 * requests and moves all use them. */
	c->sup.tls_cert = c->pool.cert;
	c->sup.tls_key = c->pool.key;
	c->sup.tls_ca = c->pool.ca;
	c->etcd_set = c->pool_set = true;
	ret = 0;
out:
	json_decref(pj);
	return ret;
}

static const char *const known_keys[] = {
	"socket", "socket_group", "state_dir", "run_dir", "worker", "sandbox", "sandbox_user",
	"seccomp", "cgroup_parent", "memory_overhead_mib", "shutdown_timeout_s",
	"start_timeout_s", "console_history_kib", "tcp", "boot_id_file", "test_probe", "tls",
	"test_crash_at", "memory_capacity_mib", "memory_overcommit", "roles", "ui_dir", "storage",
	"move_timeout_s", "sandbox_uid_base", "sandbox_uid_count", "store", "pool",
	"session_ttl_s", "login_attempts_per_minute", "http_loopback_port",
	"dynmem", "passt", "standby_workers",
};

static int conf_load(struct conf *c, const char *path, bool must_exist)
{
	json_error_t jerr;
	json_t *root, *tcp, *tls;
	const char *key;
	json_t *v;
	uint64_t n;
	int ret = 0;

	if (!must_exist && access(path, F_OK) < 0)
		return 0;
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		log_err("config %s: %s (line %d)", path, root ? "expected an object" : jerr.text,
			jerr.line);
		json_decref(root);
		return -EINVAL;
	}
	json_object_foreach(root, key, v) {
		bool ok = false;

		for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]); i++)
			ok |= !strcmp(key, known_keys[i]);
		if (!ok) {
			log_err("config %s: unknown key '%s'", path, key);
			ret = -EINVAL;
		}
	}
	if (!ret)
		ret = conf_string(c, root, "socket", &c->api.socket_path) ?:
		      conf_string(c, root, "socket_group", &c->api.socket_group) ?:
		      conf_string(c, root, "state_dir", &c->sup.state_dir) ?:
		      conf_string(c, root, "run_dir", &c->sup.run_dir) ?:
		      conf_string(c, root, "worker", &c->sup.worker_path) ?:
		      conf_string(c, root, "passt", &c->sup.passt_path) ?:
		      conf_string(c, root, "sandbox_user", &c->sup.sandbox_user) ?:
		      conf_string(c, root, "cgroup_parent", &c->sup.cgroup_parent) ?:
		      conf_string(c, root, "boot_id_file", &c->sup.boot_id_path) ?:
		      conf_bool(root, "seccomp", &c->sup.seccomp) ?:
		      conf_string(c, root, "test_crash_at", &c->sup.test_crash_at) ?:
		      conf_string(c, root, "ui_dir", &c->api.ui_dir) ?:
		      conf_bool(root, "test_probe", &c->sup.test_probe);
	if (!ret) {
		char why[256];

		if ((ret = dynmem_conf_parse(json_object_get(root, "dynmem"), &c->dynmem, why,
					     sizeof(why))))
			log_err("config: %s", why);
	}
	if (!ret && json_object_get(root, "sandbox")) {
		ret = conf_bool(root, "sandbox", &c->sup.sandbox);
		c->sandbox_set = true;
	}
	n = c->sup.memory_capacity_mib;
	if (!ret && !(ret = conf_uint(root, "memory_capacity_mib", 0, 1ULL << 40, &n)))
		c->sup.memory_capacity_mib = n;
	if (!ret && json_object_get(root, "memory_overcommit")) {
		json_t *v = json_object_get(root, "memory_overcommit");

		if (!json_is_number(v) || json_number_value(v) < 0.1 || json_number_value(v) > 100) {
			log_err("config: memory_overcommit: expected a number from 0.1 to 100");
			ret = -EINVAL;
		} else {
			c->sup.memory_overcommit = json_number_value(v);
		}
	}
	n = c->sup.memory_overhead_mib;
	if (!ret && !(ret = conf_uint(root, "memory_overhead_mib", 0, 1 << 20, &n)))
		c->sup.memory_overhead_mib = n;
	n = c->sup.shutdown_timeout_s;
	if (!ret && !(ret = conf_uint(root, "shutdown_timeout_s", 0, 3600, &n)))
		c->sup.shutdown_timeout_s = (unsigned)n;
	n = c->sup.start_timeout_s;
	if (!ret && !(ret = conf_uint(root, "start_timeout_s", 1, 3600, &n)))
		c->sup.start_timeout_s = (unsigned)n;
	n = c->sup.console_history >> 10;
	if (!ret && !(ret = conf_uint(root, "console_history_kib", 4, 1 << 20, &n)))
		c->sup.console_history = (size_t)n << 10;
	n = c->sup.sandbox_uid_base;
	if (!ret && !(ret = conf_uint(root, "sandbox_uid_base", 1, UINT32_MAX - (1u << 24), &n)))
		c->sup.sandbox_uid_base = (uint32_t)n;
	n = c->sup.sandbox_uid_count;
	if (!ret && !(ret = conf_uint(root, "sandbox_uid_count", 0, 1u << 24, &n)))
		c->sup.sandbox_uid_count = (uint32_t)n;
	n = 0;
	if (!ret && json_object_get(root, "standby_workers") &&
	    !(ret = conf_uint(root, "standby_workers", 0, 8, &n)))
		c->sup.standby_workers = (int)n;
	n = c->sup.move_timeout_s;
	if (!ret && !(ret = conf_uint(root, "move_timeout_s", 10, 86400, &n)))
		c->sup.move_timeout_s = (unsigned)n;
	/* The web console (docs/web.md). */
	n = c->api.session_ttl_s;
	if (!ret && !(ret = conf_uint(root, "session_ttl_s", 1, 30 * 86400, &n)))
		c->api.session_ttl_s = (unsigned)n;
	n = c->api.login_per_minute;
	if (!ret && !(ret = conf_uint(root, "login_attempts_per_minute", 1, 10000, &n)))
		c->api.login_per_minute = (unsigned)n;
	n = c->api.http_loopback_port;
	if (!ret && !(ret = conf_uint(root, "http_loopback_port", 0, 65535, &n)))
		c->api.http_loopback_port = (unsigned)n;
	if (!ret && (tls = json_object_get(root, "tls"))) {
		const char *key;
		json_t *v;

		json_object_foreach(tls, key, v) {
			if (strcmp(key, "cert") && strcmp(key, "key") && strcmp(key, "ca")) {
				log_err("config: tls: unknown key '%s'", key);
				ret = -EINVAL;
			}
		}
		if (!ret && (!json_is_object(tls) || conf_string(c, tls, "cert", &c->sup.tls_cert) ||
			     conf_string(c, tls, "key", &c->sup.tls_key) ||
			     conf_string(c, tls, "ca", &c->sup.tls_ca))) {
			log_err("config: tls: expected {\"cert\", \"key\", \"ca\"} (PEM file paths)");
			ret = -EINVAL;
		}
	}
	if (!ret && json_object_get(root, "storage"))
		ret = conf_storage(c, json_object_get(root, "storage"));
	if (!ret && json_object_get(root, "store"))
		ret = conf_store(c, json_object_get(root, "store"));
	if (!ret && json_object_get(root, "pool"))
		ret = conf_pool(c, json_object_get(root, "pool"));
	if (!ret && c->pool_set && !c->etcd_set) {
		log_err("config: pool: needs the pool's store (store.etcd)");
		ret = -EINVAL;
	}
	if (!ret && json_object_get(root, "roles"))
		ret = conf_roles(c, json_object_get(root, "roles"));
	tcp = json_object_get(root, "tcp");
	if (!ret && tcp) {
		const char *token_file = NULL;

		uint64_t idle = 30, per_client = 32;

		n = 8419;
		if (!json_is_object(tcp) || conf_string(c, tcp, "address", &c->api.tcp_address) ||
		    conf_uint(tcp, "port", 1, 65535, &n) ||
		    conf_uint(tcp, "idle_timeout_s", 1, 3600, &idle) ||
		    conf_uint(tcp, "connections_per_client", 1, 1000, &per_client) ||
		    conf_string(c, tcp, "token_file", &token_file) || !token_file) {
			log_err("config: tcp: expected {\"address\", \"port\", \"token_file\"} "
				"and optionally \"idle_timeout_s\" (1-3600), "
				"\"connections_per_client\" (1-1000)");
			ret = -EINVAL;
		} else {
			c->api.tcp_idle_timeout_s = (unsigned)idle;
			c->api.tcp_per_client = (unsigned)per_client;
			FILE *f = fopen(token_file, "re");
			char buf[256] = "";

			c->api.tcp_port = (unsigned)n;
			if (!f || !fgets(buf, sizeof(buf), f)) {
				log_err("config: tcp.token_file %s: cannot read it", token_file);
				ret = -EINVAL;
			}
			if (f)
				fclose(f);
			buf[strcspn(buf, "\r\n")] = 0;
			c->api.token = keep(c, buf);
			if (!ret)
				ret = conf_tokens(c, json_object_get(tcp, "tokens"));
		}
	}
	json_decref(root);
	return ret;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The migration TLS files: all three or none, absolute (workers get the
 * paths), readable now (cellad reads them at each move). */
static int conf_tls_check(struct conf *c)
{
	const char *f[3] = { c->sup.tls_cert, c->sup.tls_key, c->sup.tls_ca };
	static const char *const what[3] = { "tls-cert", "tls-key", "tls-ca" };
	char abs[PATH_MAX];
	unsigned set = 0;

	for (int i = 0; i < 3; i++)
		set += f[i] != NULL;
	if (set == 0)
		return 0;
	if (set != 3) {
		log_err("--tls-cert, --tls-key and --tls-ca go together");
		return -EINVAL;
	}
	for (int i = 0; i < 3; i++) {
		if (!realpath(f[i], abs) || access(abs, R_OK) < 0) {
			log_err("--%s %s: %s", what[i], f[i], strerror(errno));
			return -EINVAL;
		}
		f[i] = keep(c, abs);
	}
	c->sup.tls_cert = f[0];
	c->sup.tls_key = f[1];
	c->sup.tls_ca = f[2];
	return 0;
}

/* systemd readiness (Type=notify), without libsystemd. */
static void notify_ready(void)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!sock || strlen(sock) >= sizeof(sa.sun_path) || (sock[0] != '/' && sock[0] != '@'))
		return;
	strcpy(sa.sun_path, sock);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sock))) < 0)
		log_debug("sd_notify: %s", strerror(errno));
	close(fd);
}

/* cella-vm next to cellad, one level up (the build tree), or installed. */
static const char *default_worker(struct conf *c)
{
	static const char *const rel[] = { "cella-vm", "../cella-vm" };
	char exe[PATH_MAX], path[PATH_MAX + 16], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = 0;
		slash = strrchr(exe, '/');
		*slash = 0;
		for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s", exe, rel[i]);
			if (access(path, X_OK) == 0)
				return keep(c, realpath(path, exe) ? exe : path);
		}
	}
	return access("/usr/local/bin/cella-vm", X_OK) == 0 ? "/usr/local/bin/cella-vm"
							     : "/usr/bin/cella-vm";
}

/* Others' changes in the pool's store. Nothing acts on them yet (the pool
 * layer will: docs/pool.md); the log says what changed. */
static void store_changed(void *opaque, const char *collection, const char *key)
{
	(void)opaque;
	log_info("store: %s/%s changed by another writer", collection, key);
}

static void pool_event(void *opaque, const char *event, const char *detail)
{
	sup_pool_event(opaque, event, detail);
}

static void pool_ha_extend(void *opaque, uint64_t until_ns)
{
	sup_ha_extend(opaque, until_ns);
}

static uint64_t pool_ha_fence(void *opaque, const char *reason)
{
	return sup_ha_fence(opaque, reason);
}

static void pool_ha_take(void *opaque, const struct vmdef *def, const char *from,
			 const char *reason, bool start)
{
	sup_ha_take(opaque, def, from, reason, start);
}

static void pool_ha_drop(void *opaque, const char *uuid, const char *owner)
{
	sup_ha_drop(opaque, uuid, owner);
}

static bool pool_place_has(void *opaque, const char *uuid)
{
	return sup_place_has(opaque, uuid);
}

static void pool_place_adopt_def(void *opaque, const struct vmdef *def)
{
	sup_place_adopt(opaque, def);
}

static size_t pool_ha_running(void *opaque, char (*uuids)[40], size_t max)
{
	return sup_ha_running_uuids(opaque, uuids, max);
}

static const struct pool_ha_ops pool_ha = { .extend = pool_ha_extend, .fence = pool_ha_fence,
					    .take = pool_ha_take, .drop = pool_ha_drop,
					    .has = pool_place_has, .adopt = pool_place_adopt_def,
					    .running = pool_ha_running };

/* A pool create, join or leave answered: cellad starts again (main's
 * loop re-executes it) on the pool's store, or without it. */
static void request_restart(void)
{
	kill(getpid(), SIGUSR1);
}

/* Every kind of long operation, for the core to recover after a crash. */
static const struct job_kind *const job_kinds[] = {
	&start_job, &stop_job, &save_job, &checkpoint_create_job, &checkpoint_apply_job,
	&checkpoint_delete_job, &move_out_job, &move_in_job, &image_convert_job,
	&image_backup_job, NULL,
};

int main(int argc, char **argv)
{
	struct etcd_stats etcd_stats = { 0 }; /* outlives the store and the pool */

	/* cellad's own binary, run afresh to read a VM image's /boot jailed
	 * (worker/imageboot_jail.c): nothing else of cellad runs. */
	if (argc > 1 && !strcmp(argv[1], "--bootfs-helper"))
		return imageboot_helper_main(argc, argv);
	enum { O_CONFIG = 256, O_SOCKET, O_STATE, O_RUN, O_WORKER, O_NOSANDBOX, O_NOSECCOMP,
	       O_HELP, O_VERSION, O_TLS_CERT, O_TLS_KEY, O_TLS_CA };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, O_CONFIG },
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "run-dir", required_argument, NULL, O_RUN },
		{ "worker", required_argument, NULL, O_WORKER },
		{ "no-sandbox", no_argument, NULL, O_NOSANDBOX },
		{ "no-seccomp", no_argument, NULL, O_NOSECCOMP },
		{ "tls-cert", required_argument, NULL, O_TLS_CERT },
		{ "tls-key", required_argument, NULL, O_TLS_KEY },
		{ "tls-ca", required_argument, NULL, O_TLS_CA },
		{ "foreground", no_argument, NULL, 'f' }, /* always: accepted for habit */
		{ "help", no_argument, NULL, O_HELP },
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct conf c = {
		.sup = { .state_dir = "/var/lib/cella", .run_dir = "/run/cella",
			 .seccomp = true, .cgroup_parent = "cella", .memory_overhead_mib = 64,
			 .shutdown_timeout_s = 30, .start_timeout_s = 30,
			 .boot_id_path = "/proc/sys/kernel/random/boot_id",
			 .console_history = 64 << 10, .move_timeout_s = 600,
			 .sandbox_uid_base = 200000, .sandbox_uid_count = 4096,
			 .standby_workers = -1 },
		.api = { .socket_path = "/run/cella/cellad.sock", .socket_group = "cella",
			 .max_body = 1 << 20 },
	};
	const char *config = NULL, *o_socket = NULL, *o_state = NULL, *o_run = NULL,
		   *o_worker = NULL, *o_tls[3] = { NULL, NULL, NULL };
	bool no_sandbox = false, no_seccomp = false, restart = false, pool_files = false;
	char dbpath[PATH_MAX], logs[PATH_MAX], err[512];
	struct store *db = NULL;
	struct sup *sup = NULL;
	struct api *api = NULL;
	struct pool *pool = NULL;
	struct maint_resume *resume = NULL;
	struct dynmem *dynmem = NULL;
	struct signalfd_siginfo si;
	sigset_t set;
	int opt, sfd, lockfd, status = 1;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		switch (opt) {
		case O_CONFIG: config = optarg; break;
		case O_SOCKET: o_socket = optarg; break;
		case O_STATE: o_state = optarg; break;
		case O_RUN: o_run = optarg; break;
		case O_WORKER: o_worker = optarg; break;
		case O_NOSANDBOX: no_sandbox = true; break;
		case O_NOSECCOMP: no_seccomp = true; break;
		case O_TLS_CERT: o_tls[0] = optarg; break;
		case O_TLS_KEY: o_tls[1] = optarg; break;
		case O_TLS_CA: o_tls[2] = optarg; break;
		case 'f': break;
		case O_HELP: usage(stdout); return 0;
		case O_VERSION: puts("cellad 0.1.0"); return 0;
		default:
			fprintf(stderr, "cellad: unknown option or missing value: '%s' (see --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cellad: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (dynmem_conf_parse(NULL, &c.dynmem, err, sizeof(err))) /* the defaults */
		return 2;
	if (conf_load(&c, config ? config : DEFAULT_CONFIG, config != NULL)) {
		conf_release(&c);
		return 2;
	}
	if (o_socket) c.api.socket_path = o_socket;
	if (o_state) c.sup.state_dir = o_state;
	if (o_run) c.sup.run_dir = o_run;
	if (o_worker) c.sup.worker_path = o_worker;
	if (o_tls[0]) c.sup.tls_cert = o_tls[0];
	if (o_tls[1]) c.sup.tls_key = o_tls[1];
	if (o_tls[2]) c.sup.tls_ca = o_tls[2];
	if (conf_pool_files(&c, &pool_files)) {
		conf_release(&c);
		return 2;
	}
	if (conf_tls_check(&c))
		return 2;
	c.api.on_restart = request_restart;
	c.api.tls_cert = c.sup.tls_cert;
	c.api.tls_key = c.sup.tls_key;
	c.api.tls_ca = c.sup.tls_ca;
	if (c.api.tcp_address && !c.api.tls_cert) {
		log_err("tcp: the TCP API is HTTPS only: give this host's certificate, key and its "
			"peers' CA (tls, or --tls-cert, --tls-key, --tls-ca)");
		return 2;
	}
	if (!c.sup.worker_path)
		c.sup.worker_path = default_worker(&c);
	if (!c.sandbox_set)
		c.sup.sandbox = geteuid() == 0;
	if (no_sandbox)
		c.sup.sandbox = false;
	if (no_seccomp)
		c.sup.seccomp = false;
	if (c.sup.sandbox && geteuid() != 0) {
		log_warn("sandbox: needs root; workers run unsandboxed");
		c.sup.sandbox = false;
	}
	/* Without a range (count 0) every worker shares one user, as before. */
	if (c.sup.sandbox && !c.sup.sandbox_user && !c.sup.sandbox_uid_count)
		c.sup.sandbox_user = getpwnam("cella") ? "cella" : "nobody";
	if (access(c.sup.worker_path, X_OK) < 0) {
		log_err("worker %s: %s", c.sup.worker_path, strerror(errno));
		return 2;
	}
	snprintf(logs, sizeof(logs), "%s/logs", c.sup.state_dir);
	if (mkdir_p(c.sup.state_dir, 0750) || mkdir_p(logs, 0750) || mkdir_p(c.sup.run_dir, 0750)) {
		log_err("cannot create %s or %s: %s", c.sup.state_dir, c.sup.run_dir,
			strerror(errno));
		return 1;
	}
	snprintf(dbpath, sizeof(dbpath), "%s/cellad.lock", c.sup.state_dir);
	lockfd = open(dbpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		log_err("another cellad uses %s", c.sup.state_dir);
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	{
		char why[160];
		long nofile = host_raise_nofile(why, sizeof(why));

		if (nofile < 0)
			log_warn("%s: cellad may run out of descriptors with many VMs", why);
		else
			log_info("descriptors: RLIMIT_NOFILE soft limit %ld", nofile);
	}
	/* Before any thread: peers and etcd are reached with libcurl. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (c.etcd_set) {
		c.etcd.stats = &etcd_stats; /* the store's and the pool's requests */
		if (c.pool_set) { /* a pool member starts from it while etcd is away */
			snprintf(dbpath, sizeof(dbpath), "%s/pool-cache.json", c.sup.state_dir);
			c.etcd.cache_path = dbpath;
			c.etcd.watch_own_only = true; /* the pool layer watches the pool */
		}
		if (store_etcd_open(&db, &c.etcd, err, sizeof(err))) {
			log_err("store: %s", err);
			curl_global_cleanup();
			conf_release(&c);
			return 1;
		}
		if (store_watch(db, store_changed, NULL))
			log_warn("store: cannot watch etcd for others' changes");
		log_info("store: etcd at %s (prefix %s, host %s)", c.etcd.endpoints[0],
			 c.etcd.prefix, c.etcd.host);
	} else {
		snprintf(dbpath, sizeof(dbpath), "%s/cellad.db", c.sup.state_dir);
		if (store_sqlite_open(&db, dbpath, err, sizeof(err))) {
			log_err("database: %s", err);
			curl_global_cleanup();
			return 1;
		}
	}
	{
		char err[512], owned[PATH_MAX + 8], abs[PATH_MAX];

		/* cellad's own files (checkpoint overlays) are always accepted. */
		snprintf(owned, sizeof(owned), "%s/vms",
			 realpath(c.sup.state_dir, abs) ? abs : c.sup.state_dir);
		c.storage.owned_dir = keep(&c, owned);
		if (storage_open(&c.storage, err, sizeof(err))) {
			log_err("config: %s", err);
			return 2;
		}
		c.sup.storage = &c.storage;
	}
	{
		struct sysinfo si;

		c.pool.etcd = c.pool_set ? &c.etcd : NULL;
		c.pool.state_dir = c.sup.state_dir;
		c.pool.memory_mib = c.sup.memory_capacity_mib;
		if (!c.pool.memory_mib && sysinfo(&si) == 0)
			c.pool.memory_mib = (uint64_t)si.totalram * si.mem_unit >> 20;
		c.pool.cpus = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
		if (c.pool_set && !c.pool.ca) { /* a pool from the configuration */
			c.pool.ca = c.sup.tls_ca ? c.sup.tls_ca : c.etcd.ca;
			c.pool.cert = c.sup.tls_cert ? c.sup.tls_cert : c.etcd.cert;
			c.pool.key = c.sup.tls_key ? c.sup.tls_key : c.etcd.key;
		}
		/* On a store from the configuration without a pool section,
		 * create and join are not offered (the store is set by hand). */
		if (c.pool_set || !c.etcd_set) {
			if (pool_start(&pool, &c.pool, err, sizeof(err))) {
				log_err("%s", err);
				goto out;
			}
			c.sup.pool = &pool_sup_ops;
			c.sup.pool_ctx = pool;
		}
	}
	c.sup.job_kinds = job_kinds;
	c.sup.hooks = &incoming_hooks;
	if (sup_create(&sup, &c.sup, db)) {
		log_err("cannot start the supervisor");
		goto out;
	}
	if (pool) {
		pool_set_events(pool, pool_event, sup);
		pool_set_ha(pool, &pool_ha, sup);
	}
	if (!c.roles_set && c.api.socket_group && c.api.socket_group[0]) {
		/* By default the socket's group may run VMs, not define them:
		 * definitions name host files (admin only). */
		c.api.principals[0] = (struct api_principal){ c.api.socket_group, true, ROLE_OPERATOR };
		c.api.nr_principals = 1;
	}
	{
		/* The web console's users are this host's: in its SQLite store's
		 * file, or a file of their own when the VMs are in etcd. */
		char up[PATH_MAX];

		snprintf(up, sizeof(up), "%s/%s", c.sup.state_dir,
			 c.etcd_set ? "users.db" : "cellad.db");
		c.api.users_db = keep(&c, up);
	}
	/* Before the API (its metrics read the balancer), stopped after it. */
	dynmem = dynmem_start(sup, &c.dynmem);
	if (api_start(&api, &c.api, sup))
		goto out;
	{
		char who[64];

		if (c.sup.sandbox_user)
			snprintf(who, sizeof(who), "%s", c.sup.sandbox_user);
		else
			snprintf(who, sizeof(who), "uids %u-%u", c.sup.sandbox_uid_base,
				 c.sup.sandbox_uid_base + c.sup.sandbox_uid_count - 1);
		log_info("cellad ready on %s (workers: %s; sandbox %s as %s, seccomp %s)",
			 c.api.socket_path, c.sup.worker_path, c.sup.sandbox ? "on" : "off",
			 c.sup.sandbox ? who : "-", c.sup.seccomp ? "on" : "off");
	}
	notify_ready();
	resume = sup_maint_resume_start(sup); /* an evacuation cut short goes on */
	while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP)
			continue;
		if (si.ssi_signo == SIGUSR1) {
			if (si.ssi_pid != (uint32_t)getpid())
				continue; /* only cellad's own request */
			log_info("restarting: the pool changed (docs/pool.md); VMs keep running");
			restart = true;
			break;
		}
		log_info("stopping on %s; VMs keep running", strsignal((int)si.ssi_signo));
		break;
	}
	status = 0;
out:
	sup_maint_resume_stop(resume);
	if (sup)
		sup_quiesce(sup);
	api_stop(api);
	dynmem_stop(dynmem);
	if (pool) {
		/* HA workers that outlive cellad keep the lease's deadline:
		 * their lease must lapse, not be revoked (docs/pool.md). */
		pool_keep_lease(pool, sup && sup_ha_running(sup));
		pool_set_events(pool, NULL, NULL); /* before the core goes */
		pool_set_ha(pool, NULL, NULL);
	}
	sup_destroy(sup);
	pool_stop(pool);
	store_close(db);
	curl_global_cleanup();
	conf_release(&c);
	if (restart) {
		close(lockfd);
		execv("/proc/self/exe", argv);
		log_err("cannot start again: %s", strerror(errno));
		return 1;
	}
	return status;
}
