/* host_usage.c: what the VMs' workers use, summed, for GET /v1/host's
 * "usage" (the web console's dashboard charts): their workers' CPU time and
 * resident memory (/proc/PID/stat, statm), disk I/O (/proc/PID/io) and NIC
 * bytes (the taps' sysfs counters). Only files the kernel keeps: no worker
 * is asked anything, so one request covers hundreds of VMs in a few
 * milliseconds and the page sends no request per VM. */
#include "sup_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct usage_vm {
	pid_t pid;
	unsigned nr_nics;
	char taps[VMDEF_MAX_NICS][16];
};

struct usage {
	unsigned running;
	uint64_t cpu_ns, rss_bytes, read_bytes, write_bytes, rx_bytes, tx_bytes;
};

static uint64_t file_u64(const char *path)
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

/* utime + stime of the whole process (all its threads), in ns. */
static uint64_t proc_cpu_ns(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* The command name may hold spaces and parentheses: fields count
	 * from the last ')'. utime and stime are fields 14 and 15. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
			 &st) != 2)
		return 0;
	return (ut + st) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

static void usage_add(struct usage *u, const struct usage_vm *v)
{
	char path[128], key[32];
	unsigned long long size, rss, val;
	FILE *f;

	u->running++;
	u->cpu_ns += proc_cpu_ns(v->pid);
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)v->pid);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%llu %llu", &size, &rss) == 2)
			u->rss_bytes += rss * (uint64_t)sysconf(_SC_PAGESIZE);
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/io", (int)v->pid);
	f = fopen(path, "re");
	while (f && fscanf(f, "%31[^:]: %llu\n", key, &val) == 2) {
		if (!strcmp(key, "read_bytes"))
			u->read_bytes += val;
		else if (!strcmp(key, "write_bytes"))
			u->write_bytes += val;
	}
	if (f)
		fclose(f);
	for (unsigned i = 0; i < v->nr_nics; i++) {
		snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/rx_bytes", v->taps[i]);
		u->rx_bytes += file_u64(path);
		snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/tx_bytes", v->taps[i]);
		u->tx_bytes += file_u64(path);
	}
}

json_t *sup_host_usage(struct sup *s)
{
	struct usage u = {0};
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);

	for (size_t i = 0; i < n; i++) {
		struct usage_vm v = {0};

		/* Only what names the files is taken under the lock. */
		pthread_mutex_lock(&all[i]->lock);
		if (!all[i]->deleted && all[i]->pid) {
			v.pid = all[i]->pid;
			v.nr_nics = all[i]->def.nr_nics;
			for (unsigned k = 0; k < v.nr_nics; k++)
				memcpy(v.taps[k], all[i]->def.nics[k].tap, sizeof(v.taps[k]));
		}
		pthread_mutex_unlock(&all[i]->lock);
		if (v.pid)
			usage_add(&u, &v);
	}
	sup_vm_unpin_all(s, all, n);
	return json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I}", "running", (int)u.running,
			 "cpu_ns", (json_int_t)u.cpu_ns, "rss_bytes", (json_int_t)u.rss_bytes,
			 "read_bytes", (json_int_t)u.read_bytes, "write_bytes",
			 (json_int_t)u.write_bytes, "rx_bytes", (json_int_t)u.rx_bytes, "tx_bytes",
			 (json_int_t)u.tx_bytes);
}
