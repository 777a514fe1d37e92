/* sup_metrics.c: per-VM metrics (state, uptime, vCPU time, exits by kind,
 * memory, disk and NIC counters) as JSON and Prometheus text, and the host
 * summary. Worker figures come from its control socket; disk counters from
 * /proc/PID/io (the worker's own image I/O), NIC counters from the tap's
 * sysfs statistics (host view: rx = sent by the guest). */
#include "sup_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "standby_pool.h"
#include "ksm.h"
#include "dynmem.h"
#include "wctl.h"

struct snap {
	char name[VMDEF_NAME_MAX + 1];
	char uuid[37];
	enum vm_state state;
	pid_t pid;
	int64_t uptime_ms;
	unsigned restarts;
	unsigned nr_nics;
	char taps[VMDEF_MAX_NICS][16];
	uint64_t memory_mib;
	unsigned cpus;
	uint64_t start_ns, first_out_ns;
};

static void snap_take(struct sup *s, struct vmrt *vm, struct snap *sn)
{
	json_t *o = sup_vm_json(s, vm);

	memset(sn, 0, sizeof(*sn));
	snprintf(sn->name, sizeof(sn->name), "%s", vm->def.name);
	snprintf(sn->uuid, sizeof(sn->uuid), "%s", vm->def.uuid);
	sn->state = vm->state;
	sn->pid = vm->pid;
	sn->uptime_ms = json_integer_value(json_object_get(o, "uptime_ms"));
	sn->restarts = vm->restarts;
	sn->nr_nics = vm->def.nr_nics;
	for (unsigned i = 0; i < vm->def.nr_nics; i++)
		memcpy(sn->taps[i], vm->def.nics[i].tap, sizeof(sn->taps[i]));
	sn->memory_mib = vm->def.memory_mib;
	sn->cpus = vm->def.cpus;
	sn->start_ns = vm->start_ns;
	sn->first_out_ns = vm->first_out_ns;
	json_decref(o);
}

static uint64_t read_u64_file(const char *path)
{
	unsigned long long v = 0;
	FILE *f = fopen(path, "re");

	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

static json_t *proc_io(pid_t pid)
{
	char path[64], key[32];
	unsigned long long v;
	json_t *o = json_object();
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	f = fopen(path, "re");
	while (f && fscanf(f, "%31[^:]: %llu\n", key, &v) == 2) {
		if (!strcmp(key, "read_bytes") || !strcmp(key, "write_bytes") ||
		    !strcmp(key, "syscr") || !strcmp(key, "syscw"))
			json_object_set_new(o, key, json_integer((json_int_t)v));
	}
	if (f)
		fclose(f);
	return o;
}

static json_t *nic_stats(const struct snap *sn)
{
	static const char *const keys[] = { "rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
					    "rx_dropped", "tx_dropped" };
	json_t *arr = json_array();

	for (unsigned i = 0; i < sn->nr_nics; i++) {
		json_t *o = json_pack("{s:s}", "tap", sn->taps[i]);

		for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
			char path[128];

			snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", sn->taps[i],
				 keys[k]);
			json_object_set_new(o, keys[k], json_integer((json_int_t)read_u64_file(path)));
		}
		json_array_append_new(arr, o);
	}
	return arr;
}

static json_t *snap_metrics(struct sup *s, const struct snap *sn)
{
	json_t *m = json_pack("{s:s, s:s, s:I, s:i}", "name", sn->name, "state",
			      vm_state_name(sn->state), "uptime_ms", (json_int_t)sn->uptime_ms,
			      "restarts", (int)sn->restarts);
	json_t *req, *st = NULL, *dm;
	char path[512];
	int64_t cg;

	if (sn->first_out_ns && sn->first_out_ns >= sn->start_ns) {
		/* Start request to the guest's first console byte, as cellad saw it. */
		json_object_set_new(m, "first_output_ms",
				    json_real((double)(sn->first_out_ns - sn->start_ns) / 1e6));
		json_object_set_new(m, "first_output_monotonic_ns",
				    json_integer((json_int_t)sn->first_out_ns));
	}
	if (!sn->pid)
		return m;
	snprintf(path, sizeof(path), "%s/%s.ctl", s->conf.run_dir, sn->uuid);
	req = json_pack("{s:s}", "cmd", "stats");
	if (wctl_request(path, req, 5000, &st) == 0 && json_is_true(json_object_get(st, "ok"))) {
		json_object_set(m, "vcpu_time_ns", json_object_get(st, "vcpu_time_ns"));
		json_object_set(m, "process_cpu_time_ns", json_object_get(st, "process_cpu_time_ns"));
		json_object_set(m, "exits", json_object_get(st, "exits"));
		json_object_set(m, "vcpus", json_object_get(st, "vcpus"));
		json_object_set(m, "memory", json_object_get(st, "memory"));
		if (json_is_object(json_object_get(json_object_get(st, "devices"), "balloon")))
			json_object_set(m, "balloon",
					json_object_get(json_object_get(st, "devices"), "balloon"));
		if ((dm = dynmem_vm_json(s, sn->uuid)))
			json_object_set_new(m, "dynamic_memory", dm);
		if (json_is_object(json_object_get(json_object_get(st, "devices"), "virtio_mem")))
			json_object_set(m, "virtio_mem",
					json_object_get(json_object_get(st, "devices"), "virtio_mem"));
		if (json_is_object(json_object_get(json_object_get(st, "devices"), "vsock")))
			json_object_set(m, "vsock",
					json_object_get(json_object_get(st, "devices"), "vsock"));
		if (json_is_object(json_object_get(json_object_get(st, "devices"), "cpu_hotplug")))
			json_object_set(m, "cpu_hotplug",
					json_object_get(json_object_get(st, "devices"), "cpu_hotplug"));
	}
	json_decref(req);
	json_decref(st);
	if (!json_object_get(m, "memory"))
		json_object_set_new(m, "memory", json_object());
	cg = cgroups_vm_memory(&s->cg, sn->uuid);
	if (cg >= 0)
		json_object_set_new(json_object_get(m, "memory"), "cgroup_bytes",
				    json_integer(cg));
	json_object_set_new(json_object_get(m, "memory"), "guest_mib",
			    json_integer((json_int_t)sn->memory_mib));
	json_object_set_new(json_object_get(m, "memory"), "ksm", ksm_proc_json(sn->pid));
	json_object_set_new(m, "disk_io", proc_io(sn->pid));
	json_object_set_new(m, "nics", nic_stats(sn));
	return m;
}

int sup_metrics(struct sup *s, const char *name, json_t **out, struct cerr *e)
{
	struct snap sn;
	struct vmrt *vm;

	vm = sup_vm_lock_name(s, name, e);
	if (!vm)
		return -1;
	snap_take(s, vm, &sn);
	sup_vm_unlock(s, vm);
	*out = snap_metrics(s, &sn);
	return 0;
}

static void self_usage(double *cpu_s, uint64_t *rss_kib)
{
	struct rusage ru;
	char line[256];
	FILE *f = fopen("/proc/self/status", "re");

	getrusage(RUSAGE_SELF, &ru);
	*cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	*rss_kib = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long kb;

		if (sscanf(line, "VmRSS: %llu", &kb) == 1)
			*rss_kib = kb;
	}
	if (f)
		fclose(f);
}

/* A growing text buffer for the exposition format. */
struct text {
	char *p;
	size_t len, cap;
};

static void tprintf(struct text *t, const char *fmt, ...) __printf(2, 3);
static void tprintf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (t->p && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		t->cap = (t->cap + (size_t)n + 1) * 2;
		t->p = realloc(t->p, t->cap);
		if (!t->p)
			return;
	}
}

static json_int_t jint(json_t *o, const char *k1, const char *k2)
{
	json_t *v = json_object_get(o, k1);

	if (k2)
		v = json_object_get(v, k2);
	return json_integer_value(v);
}

char *sup_prometheus(struct sup *s)
{
	struct text t = { 0 };
	struct snap *snaps = NULL;
	unsigned n = 0, cap = 0;
	double cpu;
	uint64_t rss;

	size_t nvm;
	struct vmrt **all = sup_vm_pin_all(s, &nvm);

	for (size_t i = 0; i < nvm; i++) {
		struct vmrt *vm = all[i];

		if (n == cap) {
			struct snap *ns = realloc(snaps, (cap = cap ? cap * 2 : 16) * sizeof(*ns));

			if (!ns)
				break;
			snaps = ns;
		}
		pthread_mutex_lock(&vm->lock);
		if (!vm->deleted)
			snap_take(s, vm, &snaps[n++]);
		pthread_mutex_unlock(&vm->lock);
	}
	sup_vm_unpin_all(s, all, nvm);

	self_usage(&cpu, &rss);
	tprintf(&t, "# HELP cella_daemon_vms VMs defined.\n# TYPE cella_daemon_vms gauge\n"
		    "cella_daemon_vms %u\n", n);
	tprintf(&t, "# HELP cella_daemon_cpu_seconds_total CPU time used by cellad.\n"
		    "# TYPE cella_daemon_cpu_seconds_total counter\n"
		    "cella_daemon_cpu_seconds_total %.6f\n", cpu);
	tprintf(&t, "# HELP cella_daemon_resident_bytes cellad's resident memory.\n"
		    "# TYPE cella_daemon_resident_bytes gauge\n"
		    "cella_daemon_resident_bytes %llu\n", (unsigned long long)rss * 1024);
	tprintf(&t, "# HELP cella_vm_state 1 for the VM's current state.\n"
		    "# TYPE cella_vm_state gauge\n");
	for (unsigned i = 0; i < n; i++)
		tprintf(&t, "cella_vm_state{vm=\"%s\",state=\"%s\"} 1\n", snaps[i].name,
			vm_state_name(snaps[i].state));
	tprintf(&t, "# HELP cella_vm_uptime_seconds Time since the VM started.\n"
		    "# TYPE cella_vm_uptime_seconds gauge\n");
	for (unsigned i = 0; i < n; i++)
		tprintf(&t, "cella_vm_uptime_seconds{vm=\"%s\"} %.3f\n", snaps[i].name,
			(double)snaps[i].uptime_ms / 1000);
	tprintf(&t, "# HELP cella_vm_restarts_total Automatic restarts.\n"
		    "# TYPE cella_vm_restarts_total counter\n");
	for (unsigned i = 0; i < n; i++)
		tprintf(&t, "cella_vm_restarts_total{vm=\"%s\"} %u\n", snaps[i].name,
			snaps[i].restarts);
	for (unsigned i = 0; i < n; i++) {
		const char *nm = snaps[i].name;
		json_t *m;

		if (!snaps[i].pid)
			continue;
		m = snap_metrics(s, &snaps[i]);
		tprintf(&t, "cella_vm_vcpu_seconds_total{vm=\"%s\"} %.6f\n", nm,
			(double)jint(m, "vcpu_time_ns", NULL) / 1e9);
		tprintf(&t, "cella_vm_exits_total{vm=\"%s\",kind=\"io\"} %lld\n", nm,
			(long long)jint(m, "exits", "io"));
		tprintf(&t, "cella_vm_exits_total{vm=\"%s\",kind=\"mmio\"} %lld\n", nm,
			(long long)jint(m, "exits", "mmio"));
		tprintf(&t, "cella_vm_exits_total{vm=\"%s\",kind=\"other\"} %lld\n", nm,
			(long long)jint(m, "exits", "other"));
		tprintf(&t, "cella_vm_worker_resident_bytes{vm=\"%s\"} %lld\n", nm,
			(long long)jint(m, "memory", "VmRSS_kib") * 1024);
		if (json_object_get(m, "balloon")) {
			tprintf(&t, "cella_vm_balloon_target_bytes{vm=\"%s\"} %lld\n", nm,
				(long long)jint(m, "balloon", "target_mib") << 20);
			tprintf(&t, "cella_vm_balloon_inflated_bytes{vm=\"%s\"} %lld\n", nm,
				(long long)jint(m, "balloon", "inflated_bytes"));
			tprintf(&t, "cella_vm_balloon_reported_bytes_total{vm=\"%s\"} %lld\n", nm,
				(long long)jint(m, "balloon", "reported_bytes"));
		}
		if (json_object_get(json_object_get(m, "memory"), "restore_prefetch")) {
			/* A restored VM's memory filled ahead of the guest
			 * (docs/state-format.md, "Filling restored memory"). */
			json_t *pf = json_object_get(json_object_get(m, "memory"), "restore_prefetch");

			tprintf(&t, "cella_vm_restore_prefetched_bytes{vm=\"%s\"} %lld\n", nm,
				(long long)(jint(pf, "written_pages", NULL) +
					    jint(pf, "read_pages", NULL)) * 4096);
			tprintf(&t, "cella_vm_restore_prefetch_seconds{vm=\"%s\"} %.3f\n", nm,
				(double)jint(pf, "ms", NULL) / 1000);
		}
		if (json_object_get(m, "virtio_mem")) {
			tprintf(&t, "cella_vm_memory_plugged_bytes{vm=\"%s\"} %lld\n", nm,
				(long long)jint(m, "virtio_mem", "plugged_bytes"));
			tprintf(&t, "cella_vm_memory_requested_bytes{vm=\"%s\"} %lld\n", nm,
				(long long)jint(m, "virtio_mem", "requested_mib") << 20);
		}
		if (json_object_get(m, "vsock")) { /* docs/virtio.md, "virtio-vsock" */
			tprintf(&t, "cella_vm_vsock_connections{vm=\"%s\"} %lld\n", nm,
				(long long)jint(m, "vsock", "connections"));
			tprintf(&t, "cella_vm_vsock_malformed_total{vm=\"%s\"} %lld\n", nm,
				(long long)jint(m, "vsock", "malformed"));
			tprintf(&t, "cella_vm_vsock_bytes_total{vm=\"%s\",dir=\"to_guest\"} %lld\n",
				nm, (long long)jint(m, "vsock", "rx_bytes"));
			tprintf(&t, "cella_vm_vsock_bytes_total{vm=\"%s\",dir=\"from_guest\"} %lld\n",
				nm, (long long)jint(m, "vsock", "tx_bytes"));
		}
		tprintf(&t, "cella_vm_ksm_merging_pages{vm=\"%s\"} %lld\n", nm,
			(long long)json_integer_value(json_object_get(
				json_object_get(json_object_get(m, "memory"), "ksm"), "merging_pages")));
		tprintf(&t, "cella_vm_ksm_profit_bytes{vm=\"%s\"} %lld\n", nm,
			(long long)json_integer_value(json_object_get(
				json_object_get(json_object_get(m, "memory"), "ksm"), "profit_bytes")));
		tprintf(&t, "cella_vm_disk_read_bytes_total{vm=\"%s\"} %lld\n", nm,
			(long long)jint(m, "disk_io", "read_bytes"));
		tprintf(&t, "cella_vm_disk_written_bytes_total{vm=\"%s\"} %lld\n", nm,
			(long long)jint(m, "disk_io", "write_bytes"));
		for (size_t k = 0; k < json_array_size(json_object_get(m, "nics")); k++) {
			json_t *nic = json_array_get(json_object_get(m, "nics"), k);
			const char *tap = json_string_value(json_object_get(nic, "tap"));

			tprintf(&t, "cella_vm_nic_rx_bytes_total{vm=\"%s\",tap=\"%s\"} %lld\n", nm,
				tap, (long long)jint(nic, "rx_bytes", NULL));
			tprintf(&t, "cella_vm_nic_tx_bytes_total{vm=\"%s\",tap=\"%s\"} %lld\n", nm,
				tap, (long long)jint(nic, "tx_bytes", NULL));
		}
		json_decref(m);
	}
	free(snaps);
	{ /* switch ports (core/sup_switch.c) */
		char *pm = sup_ports_prometheus(s);

		if (pm)
			tprintf(&t, "%s", pm);
		free(pm);
	}
	{ /* page sharing (ksm.c) */
		char *km = ksm_prometheus_host();

		if (km)
			tprintf(&t, "%s", km);
		free(km);
	}
	{ /* dynamic memory (dynmem.c) */
		char *dm = dynmem_prometheus(s);

		if (dm)
			tprintf(&t, "%s", dm);
		free(dm);
	}
	{ /* replication (replica_metrics.c) */
		char *rm = sup_replica_metrics(s);

		if (rm)
			tprintf(&t, "%s", rm);
		free(rm);
	}
	if (s->conf.pool && s->conf.pool->metrics) { /* the pool's (pool/metrics.c) */
		char *pm = s->conf.pool->metrics(s->conf.pool_ctx);

		if (pm)
			tprintf(&t, "%s", pm);
		free(pm);
	}
	return t.p;
}

json_t *sup_host(struct sup *s)
{
	struct utsname u;
	json_t *states = json_object(), *out;
	const char *me;
	double cpu;
	uint64_t rss;
	unsigned total = 0;
	struct timespec now;

	uname(&u);
	self_usage(&cpu, &rss);
	clock_gettime(CLOCK_MONOTONIC, &now);
	size_t nvm;
	struct vmrt **all = sup_vm_pin_all(s, &nvm);

	for (size_t i = 0; i < nvm; i++) {
		const char *st;

		pthread_mutex_lock(&all[i]->lock);
		st = all[i]->deleted ? NULL : vm_state_name(all[i]->state);
		pthread_mutex_unlock(&all[i]->lock);
		if (!st)
			continue;
		json_object_set_new(states, st, json_integer(
			json_integer_value(json_object_get(states, st)) + 1));
		total++;
	}
	sup_vm_unpin_all(s, all, nvm);
	out = json_pack("{s:s, s:s, s:s, s:i, s:I, s:b, s:i, s:o, s:s, s:b, s:b, s:{s:I, s:f, s:I}, "
			 "s:o, s:o, s:o}",
			 "hostname", u.nodename, "kernel", u.release, "version", "0.1.0",
			 "cpus", (int)sysconf(_SC_NPROCESSORS_ONLN), "memory_mib",
			 (json_int_t)((uint64_t)sysconf(_SC_PHYS_PAGES) *
				      (uint64_t)sysconf(_SC_PAGESIZE) >> 20),
			 "kvm", access("/dev/kvm", R_OK | W_OK) == 0, "vms", (int)total,
			 "states", states, "cgroups", cgroups_mode_name(&s->cg), "sandbox",
			 s->conf.sandbox, "seccomp", s->conf.seccomp, "daemon", "pid",
			 (json_int_t)getpid(), "cpu_seconds", cpu, "resident_kib", (json_int_t)rss,
			 "ksm", ksm_host_json(), "hugepages", hugepages_host_json(),
			 "usage", sup_host_usage(s));
	if (out)
		json_object_set_new(out, "standby_workers", standby_pool_json(s->standby));
	/* In a pool: this host's name there, so that a page knows to ask for
	 * GET /v1/pool (the web dashboard's pool section) without a 404. */
	me = s->conf.pool ? s->conf.pool->host(s->conf.pool_ctx) : NULL;
	if (out && me)
		json_object_set_new(out, "pool", json_pack("{s:s}", "host", me));
	return out;
}
