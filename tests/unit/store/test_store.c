/* test_store.c: the store contract (daemon/store/store.h), the same cases
 * on every implementation: SQLite always, etcd when CELLA_TEST_ETCD names a
 * cluster ({"endpoints", "ca", "cert", "key"}: tests/pool/test_store_etcd.py
 * starts one and runs this). Definitions, runtime records, metadata,
 * checkpoints, peer hosts, jobs, transactions; for etcd also watches from a
 * second handle, ownership of VMs between hosts (and two hosts defining
 * one VM at once: exactly one wins), an unreachable cluster
 * and, with CELLA_TEST_ETCD_KILL_PID, a member killed under load; and the
 * etcd client below the store (store/etcd.h): compare-and-swap on
 * mod_revision, leases, a watch from a past revision, and from a compacted
 * one. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "etcd.h"
#include "store.h"

struct env {
	bool etcd;
	json_t *conf; /* etcd: the cluster */
	unsigned next;  /* prefixes and files: one per test */
};

struct seen {
	pthread_mutex_t lock;
	char items[64][96];
	unsigned n;
};

struct fx {
	struct env *env;
	struct store *st, *st2; /* st2: a second host on the same etcd prefix */
	char path[256];
	char prefix[64];
	struct seen seen;
};

static void etcd_conf(struct env *env, struct store_etcd_conf *c, const char *prefix,
		      const char *host)
{
	json_t *eps = json_object_get(env->conf, "endpoints"), *v;
	size_t i;

	memset(c, 0, sizeof(*c));
	json_array_foreach(eps, i, v)
		c->endpoints[c->nr_endpoints++] = json_string_value(v);
	c->ca = json_string_value(json_object_get(env->conf, "ca"));
	c->cert = json_string_value(json_object_get(env->conf, "cert"));
	c->key = json_string_value(json_object_get(env->conf, "key"));
	c->prefix = prefix;
	c->host = host;
	c->timeout_ms = 2000;
}

static int open_etcd(struct fx *f, const char *host, struct store **out)
{
	struct store_etcd_conf c;
	char err[512] = "";
	int ret;

	etcd_conf(f->env, &c, f->prefix, host);
	ret = store_etcd_open(out, &c, err, sizeof(err));
	if (ret)
		fprintf(stderr, "store_etcd_open: %s\n", err);
	return ret;
}

static int setup(void **state)
{
	struct env *env = *state;
	struct fx *f = calloc(1, sizeof(*f));
	char err[512];

	f->env = env;
	pthread_mutex_init(&f->seen.lock, NULL);
	env->next++;
	if (env->etcd) {
		snprintf(f->prefix, sizeof(f->prefix), "/cella/t%d-%u", (int)getpid(), env->next);
		assert_int_equal(open_etcd(f, "h1", &f->st), 0);
		assert_int_equal(open_etcd(f, "h2", &f->st2), 0);
	} else {
		snprintf(f->path, sizeof(f->path), "/tmp/cella-store-%d-%u.db", (int)getpid(),
			 env->next);
		assert_int_equal(store_sqlite_open(&f->st, f->path, err, sizeof(err)), 0);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[300];

	store_close(f->st);
	store_close(f->st2);
	if (f->path[0]) {
		unlink(f->path);
		snprintf(p, sizeof(p), "%s-wal", f->path);
		unlink(p);
		snprintf(p, sizeof(p), "%s-shm", f->path);
		unlink(p);
	}
	pthread_mutex_destroy(&f->seen.lock);
	free(f);
	return 0;
}

static void def_make(struct vmdef *d, const char *name, const char *uuid)
{
	vmdef_init(d);
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->uuid, sizeof(d->uuid), "%s", uuid);
	d->cpus = 2;
	d->memory_mib = 256;
	d->kernel = strdup("/boot/k");
	d->cmdline = strdup("console=ttyS0");
	d->rng = true;
	d->restart = RESTART_ON_CRASH;
	d->cpu_weight = 300;
	d->cpu_max = 50;
	d->disks[0].path = strdup("/var/lib/cella/d0.qcow2");
	d->disks[0].format = VMDEF_FMT_QCOW2;
	snprintf(d->disks[0].id, sizeof(d->disks[0].id), "root");
	d->disks[0].qos.iops = 1000;
	d->disks[0].qos.bps_burst = 1 << 20;
	d->disks[0].cbt = true;
	d->disks[1].path = strdup("/var/lib/cella/d1.raw");
	d->disks[1].readonly = true;
	snprintf(d->disks[1].id, sizeof(d->disks[1].id), "disk1");
	d->nr_disks = 2;
	snprintf(d->nics[0].tap, sizeof(d->nics[0].tap), "tap0");
	snprintf(d->nics[0].mac, sizeof(d->nics[0].mac), "52:54:00:12:34:56");
	/* A port on a switch (docs/networking.md). */
	snprintf(d->nics[1].sw, sizeof(d->nics[1].sw), "lab");
	d->nics[1].vlan = 42;
	d->nics[1].queues = 2; /* a multi-queue port */
	snprintf(d->nics[1].policy, sizeof(d->nics[1].policy), "{\"mac_guard\":true}");
	/* User-mode networking through passt, with forwards. */
	d->nics[2].user = true;
	snprintf(d->nics[2].forward, sizeof(d->nics[2].forward), "tcp:8080:80,udp:5353:53");
	d->nr_nics = 3;
	snprintf(d->anti_affinity, sizeof(d->anti_affinity), "web");
	d->anti_affinity_hard = true;
	d->balloon = true;
	d->dynmem = (struct vmdef_dynmem){ .enabled = true, .minimum_mib = 64, .buffer_pct = 35,
					   .weight = 700 }; /* maximum: the default */
	d->memory_max_mib = 1024; /* virtio-mem ceiling (docs/memory.md) */
	d->vsock_cid = 42;
	d->cpus_max = d->cpus + 2; /* vCPU hot-plug ceiling (docs/guests.md) */
}

struct loaded {
	struct vmdef defs[8];
	struct store_runtime rts[8];
	unsigned n;
};

static int load_one(void *opaque, struct vmdef *def, const struct store_runtime *rt)
{
	struct loaded *l = opaque;

	if (l->n >= 8)
		return -E2BIG;
	assert_int_equal(vmdef_copy(&l->defs[l->n], def), 0);
	l->rts[l->n++] = *rt;
	return 0;
}

static void load_all(struct store *st, struct loaded *l)
{
	memset(l, 0, sizeof(*l));
	assert_int_equal(store_load(st, load_one, l), 0);
}

static void loaded_free(struct loaded *l)
{
	for (unsigned i = 0; i < l->n; i++)
		vmdef_free(&l->defs[i]);
}

static void def_equal(const struct vmdef *a, const struct vmdef *b)
{
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->uuid, b->uuid);
	assert_int_equal(a->cpus, b->cpus);
	assert_int_equal(a->memory_mib, b->memory_mib);
	if (a->kernel)
		assert_string_equal(a->kernel, b->kernel);
	else /* boots its first disk's own kernel (docs/boot.md) */
		assert_null(b->kernel);
	assert_null(b->initrd);
	assert_string_equal(a->cmdline, b->cmdline);
	assert_int_equal(a->rng, b->rng);
	assert_int_equal(a->autostart, b->autostart);
	assert_int_equal(a->restart, b->restart);
	assert_int_equal(a->cpu_weight, b->cpu_weight);
	assert_int_equal(a->cpu_max, b->cpu_max);
	assert_string_equal(a->checkpoint, b->checkpoint);
	assert_string_equal(a->anti_affinity, b->anti_affinity);
	assert_int_equal(a->anti_affinity_hard, b->anti_affinity_hard);
	assert_int_equal(a->dynmem.enabled, b->dynmem.enabled);
	assert_int_equal(a->dynmem.minimum_mib, b->dynmem.minimum_mib);
	assert_int_equal(a->dynmem.maximum_mib, b->dynmem.maximum_mib);
	assert_int_equal(a->dynmem.buffer_pct, b->dynmem.buffer_pct);
	assert_int_equal(a->dynmem.weight, b->dynmem.weight);
	assert_int_equal(a->balloon, b->balloon);
	assert_int_equal(a->memory_max_mib, b->memory_max_mib);
	assert_int_equal(a->vsock_cid, b->vsock_cid);
	assert_int_equal(a->cpus_max, b->cpus_max);
	assert_int_equal(a->replica.on, b->replica.on);
	assert_string_equal(a->replica.source, b->replica.source);
	assert_string_equal(a->replica.last_point, b->replica.last_point);
	assert_int_equal(a->nr_disks, b->nr_disks);
	for (unsigned i = 0; i < a->nr_disks; i++) {
		assert_string_equal(a->disks[i].path, b->disks[i].path);
		assert_string_equal(a->disks[i].id, b->disks[i].id);
		assert_int_equal(a->disks[i].readonly, b->disks[i].readonly);
		assert_int_equal(a->disks[i].format, b->disks[i].format);
		assert_memory_equal(&a->disks[i].qos, &b->disks[i].qos, sizeof(a->disks[i].qos));
		assert_int_equal(a->disks[i].cbt, b->disks[i].cbt);
	}
	assert_int_equal(a->nr_nics, b->nr_nics);
	for (unsigned i = 0; i < a->nr_nics; i++) {
		assert_string_equal(a->nics[i].tap, b->nics[i].tap);
		assert_string_equal(a->nics[i].mac, b->nics[i].mac);
		assert_string_equal(a->nics[i].sw, b->nics[i].sw);
		assert_int_equal(a->nics[i].vlan, b->nics[i].vlan);
		assert_string_equal(a->nics[i].policy, b->nics[i].policy);
		assert_int_equal(a->nics[i].user, b->nics[i].user);
		assert_string_equal(a->nics[i].forward, b->nics[i].forward);
		assert_int_equal(a->nics[i].queues, b->nics[i].queues);
	}
}

#define UUID_A "11111111-1111-4111-8111-111111111111"
#define UUID_B "22222222-2222-4222-8222-222222222222"
#define UUID_C "33333333-3333-4333-8333-333333333333"

static void test_vms(void **state)
{
	struct fx *f = *state;
	struct vmdef a, b;
	struct loaded l;

	def_make(&a, "alpha", UUID_A);
	def_make(&b, "beta", UUID_B);
	snprintf(b.checkpoint, sizeof(b.checkpoint), "cp1");
	/* A replica kept here (docs/replica.md): its mark is kept too. */
	b.replica.on = true;
	snprintf(b.replica.source, sizeof(b.replica.source), "host-a");
	snprintf(b.replica.last_point, sizeof(b.replica.last_point), "r000042");
	assert_int_equal(store_vm_put(f->st, &a), 0);
	assert_int_equal(store_vm_put(f->st, &b), 0);
	load_all(f->st, &l);
	assert_int_equal(l.n, 2);
	def_equal(&a, &l.defs[0]); /* definition order */
	def_equal(&b, &l.defs[1]);
	assert_string_equal(l.rts[0].state, "defined");
	assert_int_equal(l.rts[0].pid, 0);
	loaded_free(&l);

	/* Replace: same uuid, new values; the order stays. No kernel (the
	 * first disk's own) stays none. */
	a.cpus = 4;
	free(a.kernel);
	a.kernel = NULL;
	a.nr_disks = 1;
	free(a.disks[1].path);
	a.disks[1].path = NULL;
	assert_int_equal(store_vm_put(f->st, &a), 0);
	load_all(f->st, &l);
	assert_int_equal(l.n, 2);
	def_equal(&a, &l.defs[0]);
	loaded_free(&l);

	assert_int_equal(store_vm_delete(f->st, UUID_A), 0);
	load_all(f->st, &l);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.defs[0].uuid, UUID_B);
	loaded_free(&l);
	vmdef_free(&a);
	vmdef_free(&b);
}

static void test_runtime(void **state)
{
	struct fx *f = *state;
	struct store_runtime rt = { .state = "running", .pid = 4242, .pid_start = 987654321,
				    .started_at = 1700000000, .exit_status = -1, .restarts = 3 };
	struct vmdef a;
	struct loaded l;

	def_make(&a, "alpha", UUID_A);
	assert_int_equal(store_vm_put(f->st, &a), 0);
	assert_int_equal(store_runtime_put(f->st, UUID_A, &rt), 0);
	load_all(f->st, &l);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.rts[0].state, "running");
	assert_int_equal(l.rts[0].pid, 4242);
	assert_int_equal(l.rts[0].pid_start, 987654321);
	assert_int_equal(l.rts[0].started_at, 1700000000);
	assert_int_equal(l.rts[0].exit_status, -1);
	assert_int_equal(l.rts[0].restarts, 3);
	loaded_free(&l);
	snprintf(rt.state, sizeof(rt.state), "stopped");
	snprintf(rt.exit_reason, sizeof(rt.exit_reason), "guest exit 0");
	rt.pid = 0;
	rt.exit_status = 0;
	assert_int_equal(store_runtime_put(f->st, UUID_A, &rt), 0);
	load_all(f->st, &l);
	assert_string_equal(l.rts[0].state, "stopped");
	assert_string_equal(l.rts[0].exit_reason, "guest exit 0");
	assert_int_equal(l.rts[0].exit_status, 0);
	loaded_free(&l);
	vmdef_free(&a);
}

static void test_meta(void **state)
{
	struct fx *f = *state;
	char v[64];

	assert_int_equal(store_meta_get(f->st, "boot_id", v, sizeof(v)), -ENOENT);
	assert_int_equal(store_meta_set(f->st, "boot_id", "abc"), 0);
	assert_int_equal(store_meta_set(f->st, "boot_id", "def"), 0);
	assert_int_equal(store_meta_get(f->st, "boot_id", v, sizeof(v)), 0);
	assert_string_equal(v, "def");
}

static json_t *cp_make(const char *name, const char *parent, int64_t at)
{
	return json_pack("{s:s, s:o, s:s, s:I, s:b, s:[{s:s, s:s}]}", "name", name, "parent",
			 parent ? json_string(parent) : json_null(), "kind", "disk", "created_at",
			 (json_int_t)at, "memory", parent != NULL, "layers", "id", "root", "path",
			 "/x/layer.qcow2");
}

static void test_checkpoints(void **state)
{
	struct fx *f = *state;
	json_t *c1 = cp_make("one", NULL, 100), *c2 = cp_make("two", "one", 200), *l;
	struct vmdef a;

	def_make(&a, "alpha", UUID_A);
	assert_int_equal(store_vm_put(f->st, &a), 0);
	assert_int_equal(store_cp_put(f->st, UUID_A, c1), 0);
	assert_int_equal(store_cp_put(f->st, UUID_A, c2), 0);
	l = store_cp_list(f->st, UUID_A);
	assert_int_equal(json_array_size(l), 2);
	assert_true(json_equal(json_array_get(l, 0), c1));
	assert_true(json_equal(json_array_get(l, 1), c2));
	json_decref(l);
	/* An update keeps its place. */
	json_object_set_new(c1, "memory", json_true());
	assert_int_equal(store_cp_put(f->st, UUID_A, c1), 0);
	l = store_cp_list(f->st, UUID_A);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "name")), "one");
	assert_true(json_is_true(json_object_get(json_array_get(l, 0), "memory")));
	json_decref(l);
	assert_int_equal(store_cp_delete(f->st, UUID_A, "one"), 0);
	l = store_cp_list(f->st, UUID_A);
	assert_int_equal(json_array_size(l), 1);
	json_decref(l);
	/* Deleting the VM deletes its checkpoints. */
	assert_int_equal(store_vm_delete(f->st, UUID_A), 0);
	l = store_cp_list(f->st, UUID_A);
	assert_int_equal(json_array_size(l), 0);
	json_decref(l);
	json_decref(c1);
	json_decref(c2);
	vmdef_free(&a);
}

static void test_hosts(void **state)
{
	struct fx *f = *state;
	json_t *l;

	assert_int_equal(store_host_put(f->st, "zeta", "https://z:8419", "tok-z-0123456789", NULL), 0);
	assert_int_equal(store_host_put(f->st, "eta", "https://e:8419", "tok-e-0123456789", "e.example"), 0);
	l = store_host_list(f->st, false);
	assert_int_equal(json_array_size(l), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "name")), "eta");
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "tls_name")),
			    "e.example");
	assert_true(json_is_null(json_object_get(json_array_get(l, 1), "tls_name")));
	assert_null(json_object_get(json_array_get(l, 0), "token"));
	json_decref(l);
	l = store_host_list(f->st, true);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "token")),
			    "tok-z-0123456789");
	json_decref(l);
	assert_int_equal(store_host_delete(f->st, "zeta"), 0);
	assert_int_equal(store_host_delete(f->st, "zeta"), -ENOENT);
	l = store_host_list(f->st, false);
	assert_int_equal(json_array_size(l), 1);
	json_decref(l);
}

static void test_jobs(void **state)
{
	struct fx *f = *state;
	struct store_job j1 = { .id = "save-1", .vm_uuid = UUID_A, .kind = "save",
				.phase = "begun", .created_at = 10 };
	struct store_job j2 = { .id = "start-2", .vm_uuid = UUID_B, .kind = "start",
				.phase = "begun", .created_at = 20 };
	struct store_job *jobs;
	unsigned n;

	j1.data = json_pack("{s:s}", "path", "/x/state");
	j2.data = json_object();
	assert_int_equal(store_job_put(f->st, &j1), 0);
	assert_int_equal(store_job_put(f->st, &j2), 0);
	snprintf(j1.phase, sizeof(j1.phase), "written");
	assert_int_equal(store_job_put(f->st, &j1), 0);
	assert_int_equal(store_job_list(f->st, &jobs, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(jobs[0].id, "save-1"); /* oldest first, updates keep their place */
	assert_string_equal(jobs[0].phase, "written");
	assert_string_equal(jobs[0].kind, "save");
	assert_string_equal(jobs[0].vm_uuid, UUID_A);
	assert_true(json_equal(jobs[0].data, j1.data));
	assert_string_equal(jobs[1].id, "start-2");
	for (unsigned i = 0; i < n; i++)
		json_decref(jobs[i].data);
	free(jobs);
	assert_int_equal(store_job_delete(f->st, "save-1"), 0);
	assert_int_equal(store_job_list(f->st, &jobs, &n), 0);
	assert_int_equal(n, 1);
	json_decref(jobs[0].data);
	free(jobs);
	json_decref(j1.data);
	json_decref(j2.data);
}

static void test_transactions(void **state)
{
	struct fx *f = *state;
	json_t *c1 = cp_make("one", NULL, 100), *l;
	struct vmdef a;
	struct loaded ld;

	def_make(&a, "alpha", UUID_A);
	assert_int_equal(store_vm_put(f->st, &a), 0);
	/* Committed together. */
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(store_cp_put(f->st, UUID_A, c1), 0);
	snprintf(a.checkpoint, sizeof(a.checkpoint), "one");
	assert_int_equal(store_vm_put(f->st, &a), 0);
	assert_int_equal(store_end(f->st, 0), 0);
	l = store_cp_list(f->st, UUID_A);
	assert_int_equal(json_array_size(l), 1);
	json_decref(l);
	load_all(f->st, &ld);
	assert_string_equal(ld.defs[0].checkpoint, "one");
	loaded_free(&ld);
	/* Rolled back together: neither change is kept. */
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(store_cp_delete(f->st, UUID_A, "one"), 0);
	a.checkpoint[0] = 0;
	assert_int_equal(store_vm_put(f->st, &a), 0);
	assert_int_equal(store_end(f->st, -EINTR), -EINTR);
	l = store_cp_list(f->st, UUID_A);
	assert_int_equal(json_array_size(l), 1);
	json_decref(l);
	load_all(f->st, &ld);
	assert_string_equal(ld.defs[0].checkpoint, "one");
	loaded_free(&ld);
	json_decref(c1);
	vmdef_free(&a);
}

/* etcd only ----------------------------------------------------------------- */

static void seen_fn(void *opaque, const char *collection, const char *key)
{
	struct seen *s = opaque;

	pthread_mutex_lock(&s->lock);
	if (s->n < 64)
		snprintf(s->items[s->n++], sizeof(s->items[0]), "%s/%s", collection, key);
	pthread_mutex_unlock(&s->lock);
}

static bool seen_has(struct seen *s, const char *item)
{
	bool found = false;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->n; i++)
		found |= !strcmp(s->items[i], item);
	pthread_mutex_unlock(&s->lock);
	return found;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* A watch on the first host sees the second's changes, not its own. */
static void test_watch(void **state)
{
	struct fx *f = *state;
	struct vmdef a, b;

	if (!f->st2) {
		/* SQLite: only this cellad writes; the watch is accepted, never called. */
		assert_int_equal(store_watch(f->st, seen_fn, &f->seen), 0);
		return;
	}
	assert_int_equal(store_watch(f->st, seen_fn, &f->seen), 0);
	def_make(&a, "alpha", UUID_A);
	def_make(&b, "beta", UUID_B);
	assert_int_equal(store_vm_put(f->st, &a), 0);
	assert_int_equal(store_vm_put(f->st2, &b), 0);
	assert_int_equal(store_host_put(f->st2, "peer", "https://p:1", "tok-0123456789abcdef", NULL), 0);
	for (int i = 0; i < 500 && !(seen_has(&f->seen, "vms/" UUID_B) &&
				       seen_has(&f->seen, "hosts/peer")); i++)
		sleep_ms(10); /* guard: the watch thread delivers */
	assert_true(seen_has(&f->seen, "vms/" UUID_B));
	assert_true(seen_has(&f->seen, "hosts/peer"));
	assert_false(seen_has(&f->seen, "vms/" UUID_A));
	/* A deletion is a change too. */
	assert_int_equal(store_vm_delete(f->st2, UUID_B), 0);
	f->seen.n = 0;
	assert_int_equal(store_host_delete(f->st2, "peer"), 0);
	for (int i = 0; i < 500 && !seen_has(&f->seen, "hosts/peer"); i++)
		sleep_ms(10);
	assert_true(seen_has(&f->seen, "hosts/peer"));
	vmdef_free(&a);
	vmdef_free(&b);
}

/* A VM is its owner's: another host neither loads nor changes it. */
static void test_ownership(void **state)
{
	struct fx *f = *state;
	struct vmdef a;
	struct loaded l;
	json_t *cp = cp_make("one", NULL, 1);

	if (!f->st2) {
		json_decref(cp);
		return;
	}
	def_make(&a, "alpha", UUID_A);
	assert_int_equal(store_vm_put(f->st, &a), 0);
	load_all(f->st2, &l);
	assert_int_equal(l.n, 0);
	a.cpus = 8;
	assert_int_equal(store_vm_put(f->st2, &a), -EPERM);
	assert_int_equal(store_cp_put(f->st2, UUID_A, cp), -EPERM);
	assert_int_equal(store_vm_delete(f->st2, UUID_A), -EPERM);
	/* In a transaction, nothing of it is applied. */
	assert_int_equal(store_begin(f->st2), 0);
	assert_int_equal(store_meta_set(f->st2, "k", "v"), 0);
	assert_int_equal(store_vm_put(f->st2, &a), 0);
	assert_int_equal(store_end(f->st2, 0), -EPERM);
	{
		char v[8];

		assert_int_equal(store_meta_get(f->st2, "k", v, sizeof(v)), -ENOENT);
	}
	load_all(f->st, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.defs[0].cpus, 2);
	loaded_free(&l);
	/* Hosts' runtime records and jobs are their own. */
	{
		struct store_job j = { .id = "j", .vm_uuid = UUID_A, .kind = "save", .phase = "b" };
		struct store_job *jobs;
		unsigned n;

		j.data = json_object();
		assert_int_equal(store_job_put(f->st, &j), 0);
		assert_int_equal(store_job_list(f->st2, &jobs, &n), 0);
		assert_int_equal(n, 0);
		free(jobs);
		json_decref(j.data);
	}
	json_decref(cp);
	vmdef_free(&a);
}

struct racer {
	struct store *st;
	const struct vmdef *def;
	pthread_barrier_t *go;
	int ret;
};

static void *race_put(void *opaque)
{
	struct racer *r = opaque;

	pthread_barrier_wait(r->go);
	r->ret = store_vm_put(r->st, r->def);
	return NULL;
}

/* Two hosts define the same new VM at once: exactly one owns it. */
static void test_ownership_race(void **state)
{
	struct fx *f = *state;
	unsigned wins[2] = { 0, 0 };

	if (!f->st2)
		return;
	for (int i = 0; i < 20; i++) {
		char uuid[40];
		struct vmdef d;
		pthread_barrier_t go;
		struct racer r[2] = { { .st = f->st }, { .st = f->st2 } };
		pthread_t t[2];
		struct loaded l1, l2;

		snprintf(uuid, sizeof(uuid), "44444444-4444-4444-8444-%012d", i);
		def_make(&d, "raced", uuid);
		pthread_barrier_init(&go, NULL, 2);
		for (int k = 0; k < 2; k++) {
			r[k].def = &d;
			r[k].go = &go;
			assert_int_equal(pthread_create(&t[k], NULL, race_put, &r[k]), 0);
		}
		for (int k = 0; k < 2; k++)
			pthread_join(t[k], NULL);
		pthread_barrier_destroy(&go);
		assert_true((r[0].ret == 0) != (r[1].ret == 0));
		assert_true(r[0].ret == 0 || r[0].ret == -EPERM || r[0].ret == -EAGAIN);
		assert_true(r[1].ret == 0 || r[1].ret == -EPERM || r[1].ret == -EAGAIN);
		wins[r[0].ret == 0 ? 0 : 1]++;
		load_all(f->st, &l1);
		load_all(f->st2, &l2);
		assert_int_equal(l1.n + l2.n, 1); /* one owner loads it */
		loaded_free(&l1);
		loaded_free(&l2);
		assert_int_equal(store_vm_delete(r[0].ret == 0 ? f->st : f->st2, uuid), 0);
		vmdef_free(&d);
	}
	print_message("ownership race: host 1 won %u, host 2 won %u of 20\n", wins[0], wins[1]);
}

/* The pool's name index: a name another VM has is refused on any host
 * (-EEXIST) until that VM is deleted; the same VM keeps its name. */
static void test_names(void **state)
{
	struct fx *f = *state;
	struct vmdef d1, d2;

	if (!f->st2)
		return;
	def_make(&d1, "named", "55555555-5555-4555-8555-000000000001");
	def_make(&d2, "named", "55555555-5555-4555-8555-000000000002");
	assert_int_equal(store_vm_put(f->st, &d1), 0);
	assert_int_equal(store_vm_put(f->st, &d1), 0); /* its own name: kept */
	assert_int_equal(store_vm_put(f->st2, &d2), -EEXIST);
	assert_int_equal(store_vm_put(f->st, &d2), -EEXIST);
	assert_int_equal(store_vm_delete(f->st, d1.uuid), 0);
	assert_int_equal(store_vm_put(f->st2, &d2), 0);
	assert_int_equal(store_vm_delete(f->st2, d2.uuid), 0);
	vmdef_free(&d1);
	vmdef_free(&d2);
}

static void test_unreachable(void **state)
{
	struct fx *f = *state;
	struct store_etcd_conf c;
	struct store *st = NULL;
	char err[512] = "";

	if (!f->st2)
		return;
	etcd_conf(f->env, &c, "/cella/nowhere", "h1");
	c.endpoints[0] = "https://127.0.0.1:1";
	c.nr_endpoints = 1;
	assert_int_equal(store_etcd_open(&st, &c, err, sizeof(err)), -ECONNREFUSED);
	assert_non_null(strstr(err, "Connection refused"));
	/* Without a client certificate the cluster refuses us. */
	etcd_conf(f->env, &c, "/cella/nocert", "h1");
	c.cert = c.key = NULL;
	assert_true(store_unreachable(store_etcd_open(&st, &c, err, sizeof(err))));
}

/* CELLA_TEST_ETCD_KILL_PID: the first endpoint's member, killed between
 * writes (or frozen, with CELLA_TEST_ETCD_SIGNAL=STOP: its connections stay
 * open and silent): the store and the watch go on through the others. */
static void test_member_killed(void **state)
{
	struct fx *f = *state;
	const char *pid = getenv("CELLA_TEST_ETCD_KILL_PID");
	const char *sig = getenv("CELLA_TEST_ETCD_SIGNAL");
	struct vmdef a;
	struct loaded l;
	int ret = -1;

	if (!f->st2 || !pid)
		return;
	def_make(&a, "alpha", UUID_C);
	assert_int_equal(store_vm_put(f->st, &a), 0);
	assert_int_equal(store_watch(f->st, seen_fn, &f->seen), 0);
	assert_int_equal(kill(atoi(pid), sig && !strcmp(sig, "STOP") ? SIGSTOP : SIGKILL), 0);
	/* A new leader may take an election timeout (500 ms here). */
	a.cpus = 3;
	for (int i = 0; i < 100 && ret; i++) {
		ret = store_vm_put(f->st, &a);
		if (ret)
			sleep_ms(100);
	}
	assert_int_equal(ret, 0);
	load_all(f->st, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.defs[0].cpus, 3);
	loaded_free(&l);
	/* The watch moved to another member and goes on. */
	assert_int_equal(store_host_put(f->st2, "after", "https://a:1", "tok-0123456789abcdef", NULL), 0);
	for (int i = 0; i < 1000 && !seen_has(&f->seen, "hosts/after"); i++)
		sleep_ms(10);
	assert_true(seen_has(&f->seen, "hosts/after"));
	vmdef_free(&a);
}

/* The client itself ---------------------------------------------------------- */

struct events {
	pthread_mutex_t lock;
	char keys[16][128];
	bool deleted[16];
	int64_t revs[16];
	unsigned n, connected, resync;
};

static void ev_event(void *opaque, const struct etcd_event *ev)
{
	struct events *e = opaque;

	pthread_mutex_lock(&e->lock);
	if (e->n < 16) {
		snprintf(e->keys[e->n], sizeof(e->keys[0]), "%s", ev->kv.key);
		e->deleted[e->n] = ev->deleted;
		e->revs[e->n++] = ev->kv.mod_rev;
	}
	pthread_mutex_unlock(&e->lock);
}

static void ev_state(void *opaque, enum etcd_watch_state st, int err)
{
	struct events *e = opaque;

	(void)err;
	pthread_mutex_lock(&e->lock);
	e->connected += st == ETCD_WATCH_CONNECTED;
	e->resync += st == ETCD_WATCH_RESYNC;
	pthread_mutex_unlock(&e->lock);
}

static unsigned ev_count(struct events *e)
{
	unsigned n;

	pthread_mutex_lock(&e->lock);
	n = e->n;
	pthread_mutex_unlock(&e->lock);
	return n;
}

static void test_client(void **state)
{
	static const struct etcd_watch_ops ops = { .event = ev_event, .state = ev_state };
	struct fx *f = *state;
	struct store_etcd_conf sc;
	struct etcd_conf c = { 0 };
	struct etcd *e;
	struct etcd_kv kv;
	struct etcd_kvs kvs;
	struct etcd_txn t;
	struct etcd_watch *w;
	struct events evs = { .n = 0 };
	char err[256], k1[128], k2[128], p[96], end[96];
	int64_t rev1, rev2, lease, ttl, n;
	bool ok;

	if (!f->st2)
		return;
	etcd_conf(f->env, &sc, f->prefix, "h1");
	for (unsigned i = 0; i < sc.nr_endpoints; i++)
		c.endpoints[i] = sc.endpoints[i];
	c.nr_endpoints = sc.nr_endpoints;
	c.ca = sc.ca;
	c.cert = sc.cert;
	c.key = sc.key;
	assert_int_equal(etcd_open(&e, &c, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/client/", f->prefix);
	snprintf(k1, sizeof(k1), "%sone", p);
	snprintf(k2, sizeof(k2), "%stwo", p);
	etcd_prefix_end(p, end);
	assert_int_equal(end[strlen(end) - 1], '/' + 1);

	/* put, get, a binary value with a NUL inside. */
	assert_int_equal(etcd_put(e, k1, "a\0b", 3, 0, &rev1), 0);
	assert_int_equal(etcd_get(e, k1, &kv), 0);
	assert_int_equal(kv.value_len, 3);
	assert_memory_equal(kv.value, "a\0b", 3);
	assert_int_equal(kv.mod_rev, rev1);
	assert_int_equal(kv.version, 1);
	etcd_kv_free(&kv);
	assert_int_equal(etcd_get(e, k2, &kv), -ENOENT);

	/* Compare-and-swap on mod_revision: the first wins, a stale one loses. */
	etcd_txn_init(&t);
	assert_int_equal(etcd_txn_compare(&t, k1, ETCD_CMP_MOD, ETCD_CMP_EQUAL, rev1, NULL), 0);
	assert_int_equal(etcd_txn_put(&t, k1, "v2", 2, 0), 0);
	assert_int_equal(etcd_txn_put(&t, k2, "x", 1, 0), 0);
	assert_int_equal(etcd_txn_ops(&t), 2);
	assert_int_equal(etcd_txn_commit(e, &t, &ok, &rev2), 0);
	assert_true(ok);
	assert_true(rev2 > rev1);
	assert_int_equal(etcd_txn_commit(e, &t, &ok, NULL), 0);
	assert_false(ok); /* mod_revision moved on */
	etcd_txn_free(&t);
	assert_int_equal(etcd_range(e, p, end, &kvs), 0);
	assert_int_equal(kvs.n, 2);
	assert_string_equal(kvs.kv[0].key, k1);
	assert_string_equal(kvs.kv[0].value, "v2");
	assert_int_equal(kvs.revision, rev2);
	etcd_kvs_free(&kvs);

	/* A watch from a past revision replays what happened since, in order. */
	pthread_mutex_init(&evs.lock, NULL);
	assert_int_equal(etcd_watch_start(e, p, rev1, &ops, &evs, &w), 0);
	for (int i = 0; i < 500 && ev_count(&evs) < 3; i++)
		sleep_ms(10);
	assert_int_equal(ev_count(&evs), 3);
	assert_string_equal(evs.keys[0], k1);
	assert_int_equal(evs.revs[0], rev1);
	assert_int_equal(evs.revs[1], rev2);
	assert_int_equal(evs.revs[2], rev2);

	/* Leases: a key bound to one goes with it. */
	assert_int_equal(etcd_lease_grant(e, 30, &lease, &ttl), 0);
	assert_true(ttl > 0 && ttl <= 30);
	assert_int_equal(etcd_put(e, k2, "leased", 6, lease, NULL), 0);
	assert_int_equal(etcd_get(e, k2, &kv), 0);
	assert_int_equal(kv.lease, lease);
	etcd_kv_free(&kv);
	assert_int_equal(etcd_lease_keepalive(e, lease, &ttl), 0);
	assert_true(ttl > 0);
	assert_int_equal(etcd_lease_revoke(e, lease), 0);
	assert_int_equal(etcd_get(e, k2, &kv), -ENOENT);
	assert_int_equal(etcd_lease_keepalive(e, lease, &ttl), -ENOENT);
	assert_int_equal(etcd_put(e, k2, "x", 1, lease, NULL), -ENOENT); /* lease not found */

	/* The watch saw the put and the deletion the revoke made. */
	for (int i = 0; i < 500 && ev_count(&evs) < 5; i++)
		sleep_ms(10);
	assert_int_equal(ev_count(&evs), 5);
	assert_false(evs.deleted[3]);
	assert_true(evs.deleted[4]);
	assert_string_equal(evs.keys[4], k2);
	assert_int_equal(evs.connected, 1);
	etcd_watch_stop(w);

	/* A watch from a compacted revision is told to read everything again,
	 * then goes on from the present. */
	{
		struct events ev2 = { .n = 0 };
		int64_t old_rev, now_rev;

		pthread_mutex_init(&ev2.lock, NULL);
		assert_int_equal(etcd_put(e, k1, "c1", 2, 0, &old_rev), 0);
		assert_int_equal(etcd_put(e, k1, "c2", 2, 0, &now_rev), 0);
		assert_int_equal(etcd_compact(e, now_rev), 0);
		assert_int_equal(etcd_watch_start(e, p, old_rev, &ops, &ev2, &w), 0);
		for (int i = 0; i < 500; i++) {
			pthread_mutex_lock(&ev2.lock);
			ok = ev2.resync > 0;
			pthread_mutex_unlock(&ev2.lock);
			if (ok)
				break;
			sleep_ms(10);
		}
		assert_true(ok);
		assert_int_equal(etcd_put(e, k1, "c3", 2, 0, &rev2), 0);
		for (int i = 0; i < 500 && ev_count(&ev2) < 2; i++)
			sleep_ms(10);
		/* From the oldest revision kept: c2 (again), then c3. */
		assert_int_equal(ev_count(&ev2), 2);
		assert_int_equal(ev2.revs[0], now_rev);
		assert_int_equal(ev2.revs[1], rev2);
		etcd_watch_stop(w);
		pthread_mutex_destroy(&ev2.lock);
	}

	assert_int_equal(etcd_delete(e, p, end, &n, NULL), 0);
	assert_int_equal(n, 1);
	pthread_mutex_destroy(&evs.lock);
	etcd_close(e);
}

#define CASE(fn, env) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, env)
#define CASES(env)                                                                                 \
	{ CASE(test_vms, env), CASE(test_runtime, env), CASE(test_meta, env),                     \
	  CASE(test_checkpoints, env), CASE(test_hosts, env), CASE(test_jobs, env),               \
	  CASE(test_transactions, env), CASE(test_watch, env), CASE(test_ownership, env),         \
	  CASE(test_ownership_race, env), CASE(test_names, env),                                     \
	  CASE(test_unreachable, env), CASE(test_client, env), CASE(test_member_killed, env) }

int main(void)
{
	struct env sq = { 0 }, et = { .etcd = true };
	const char *conf = getenv("CELLA_TEST_ETCD");
	int ret;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	{
		const struct CMUnitTest tests[] = CASES(&sq);

		ret = cmocka_run_group_tests_name("store-sqlite", tests, NULL, NULL);
	}
	if (conf) {
		const struct CMUnitTest tests[] = CASES(&et);

		et.conf = json_loads(conf, 0, NULL);
		assert_non_null(et.conf);
		ret |= cmocka_run_group_tests_name("store-etcd", tests, NULL, NULL);
		printf("store-etcd: ran on %s\n", json_string_value(json_array_get(
							  json_object_get(et.conf, "endpoints"), 0)));
		json_decref(et.conf);
	} else {
		printf("store-etcd: not run (CELLA_TEST_ETCD unset: tests/pool runs it)\n");
	}
	curl_global_cleanup();
	return ret;
}
