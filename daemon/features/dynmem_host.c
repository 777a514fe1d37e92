/* dynmem_host.c: what the dynamic-memory balancer reads: the host's
 * MemAvailable and memory PSI, each worker's resident guest memory, the
 * guests' balloon statistics, and the test pressure file (dynmem_priv.h). */
#include "dynmem_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_text(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = 0;
	return buf;
}

/* The value of "Key:   N kB" in text, or -1. */
static long long kv_kib(const char *text, const char *key)
{
	size_t kl = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, key, kl) && p[kl] == ':')
			return strtoll(p + kl + 1, NULL, 10);
	}
	return -1;
}

int dynmem_parse_meminfo(const char *text, uint64_t *avail_kib, uint64_t *total_kib)
{
	long long a = kv_kib(text, "MemAvailable"), t = kv_kib(text, "MemTotal");

	*total_kib = t > 0 ? (uint64_t)t : 0;
	if (a < 0)
		return -1;
	*avail_kib = (uint64_t)a;
	return 0;
}

double dynmem_parse_psi(const char *text)
{
	const char *p = strstr(text, "some ");

	if (p && (p == text || p[-1] == '\n') && (p = strstr(p, "avg10=")))
		return strtod(p + 6, NULL);
	return -1;
}

void dynmem_host_read(int64_t *avail_mib, uint64_t *total_mib, double *psi)
{
	char buf[4096];
	uint64_t a, t;

	*avail_mib = -1;
	*total_mib = 0;
	*psi = -1;
	if (read_text("/proc/meminfo", buf, sizeof(buf)) && !dynmem_parse_meminfo(buf, &a, &t)) {
		*avail_mib = (int64_t)(a >> 10);
		*total_mib = t >> 10;
	}
	if (read_text("/proc/pressure/memory", buf, sizeof(buf)))
		*psi = dynmem_parse_psi(buf);
}

uint64_t dynmem_worker_resident_mib(pid_t pid)
{
	char path[64], buf[4096];
	long long shm, anon;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!read_text(path, buf, sizeof(buf)))
		return 0;
	shm = kv_kib(buf, "RssShmem");
	anon = kv_kib(buf, "RssAnon");
	return (uint64_t)((shm > 0 ? shm : 0) + (anon > 0 ? anon : 0)) >> 10;
}

bool dynmem_test_host_read(const char *path, uint64_t *memory_mib, double *psi)
{
	json_t *j = json_load_file(path, 0, NULL), *m = json_object_get(j, "memory_mib");
	bool ok = json_is_integer(m) && json_integer_value(m) >= 0;

	if (ok) {
		*memory_mib = (uint64_t)json_integer_value(m);
		m = json_object_get(j, "psi_some_avg10");
		*psi = json_is_number(m) ? json_number_value(m) : 0;
	}
	json_decref(j);
	return ok;
}

bool dynmem_guest_demand(json_t *balloon, uint64_t startup_mib, uint64_t *demand_mib,
			 uint64_t *free_mib)
{
	json_t *st = json_object_get(balloon, "stats");
	json_t *total = json_object_get(st, "total_memory");
	json_t *avail = json_object_get(st, "available_memory");
	json_t *freej = json_object_get(st, "free_memory");
	uint64_t t, a, used, bal;

	if (!json_is_integer(total) || (!json_is_integer(avail) && !json_is_integer(freej)))
		return false;
	t = (uint64_t)json_integer_value(total);
	a = (uint64_t)json_integer_value(json_is_integer(avail) ? avail : freej);
	*free_mib = json_is_integer(freej) ? (uint64_t)json_integer_value(freej) >> 20 : a >> 20;
	used = t > a ? t - a : 0;
	/* A driver with deflate-on-OOM (Linux) keeps ballooned pages in its
	 * total, as used: then total + balloon exceeds the startup memory. */
	bal = (uint64_t)json_integer_value(json_object_get(balloon, "actual_pages")) * 4096;
	if ((t >> 20) + (bal >> 20) > startup_mib)
		used = used > bal ? used - bal : 0;
	*demand_mib = (used + (1 << 20) - 1) >> 20;
	return true;
}
