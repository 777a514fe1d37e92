/* ksm.c: page sharing (KSM) and huge pages as cellad sees them (ksm.h,
 * docs/memory.md). Counters are read from the kernel on each request:
 * nothing is cached, so a metric is never staler than the kernel's own. */
#include "ksm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/memory.h"
#include "log.h"

#define KSM_DIR "/sys/kernel/mm/ksm"

/* A number from a one-value file; -1 when it cannot be read. */
static long long read_num(const char *path)
{
	long long v = -1;
	FILE *f = fopen(path, "re");

	if (f) {
		if (fscanf(f, "%lld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static long long ksm_num(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), KSM_DIR "/%s", name);
	return read_num(path);
}

json_t *ksm_host_json(void)
{
	static const char *const keys[] = { "run", "pages_shared", "pages_sharing",
					    "pages_unshared", "pages_volatile", "full_scans",
					    "pages_to_scan", "sleep_millisecs" };
	long long page = sysconf(_SC_PAGESIZE), profit;
	json_t *o;

	if (access(KSM_DIR "/run", R_OK) < 0)
		return json_pack("{s:b}", "available", false);
	o = json_pack("{s:b}", "available", true);
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		long long v = ksm_num(keys[i]);

		json_object_set_new(o, keys[i], json_integer(v < 0 ? 0 : v));
	}
	/* pages_sharing counts the sites that share a KSM page: the memory
	 * saved, before KSM's own cost (general_profit accounts for it). */
	json_object_set_new(o, "saved_bytes", json_integer(
		json_integer_value(json_object_get(o, "pages_sharing")) * page));
	profit = ksm_num("general_profit");
	if (profit != -1)
		json_object_set_new(o, "general_profit_bytes", json_integer(profit));
	return o;
}

json_t *ksm_proc_json(pid_t pid)
{
	long long rmap = 0, zero = 0, merging = 0, profit = 0, v;
	long long page = sysconf(_SC_PAGESIZE);
	char path[64], key[48];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/ksm_stat", (int)pid);
	f = fopen(path, "re");
	while (f && fscanf(f, "%47s %lld\n", key, &v) == 2) {
		if (!strcmp(key, "ksm_rmap_items"))
			rmap = v;
		else if (!strcmp(key, "ksm_zero_pages"))
			zero = v;
		else if (!strcmp(key, "ksm_merging_pages"))
			merging = v;
		else if (!strcmp(key, "ksm_process_profit"))
			profit = v;
	}
	if (f)
		fclose(f);
	if (!f) { /* kernels before 6.1 have only ksm_merging_pages */
		snprintf(path, sizeof(path), "/proc/%d/ksm_merging_pages", (int)pid);
		merging = read_num(path) < 0 ? 0 : read_num(path);
	}
	return json_pack("{s:I, s:I, s:I, s:I, s:I}", "merging_pages", (json_int_t)merging,
			 "rmap_items", (json_int_t)rmap, "zero_pages", (json_int_t)zero,
			 "profit_bytes", (json_int_t)profit, "saved_bytes",
			 (json_int_t)((merging + zero) * page));
}

char *ksm_prometheus_host(void)
{
	json_t *h = ksm_host_json();
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	if (!json_is_true(json_object_get(h, "available")) || !(f = open_memstream(&out, &len))) {
		json_decref(h);
		return NULL;
	}
#define G(name, key, help)                                                                        \
	fprintf(f, "# HELP cella_host_ksm_" name " " help "\n# TYPE cella_host_ksm_" name             \
		" gauge\ncella_host_ksm_" name " %lld\n",                                         \
		(long long)json_integer_value(json_object_get(h, key)))
	G("run", "run", "KSM's run mode (0 off, 1 merging, 2 unmerging).");
	G("pages_shared", "pages_shared", "KSM pages in use (each backs several guest pages).");
	G("pages_sharing", "pages_sharing", "Guest pages that share a KSM page: the pages saved.");
	G("pages_unshared", "pages_unshared", "Pages KSM checked that are unique.");
	G("pages_volatile", "pages_volatile", "Pages changing too fast to be merged.");
	G("saved_bytes", "saved_bytes", "Memory saved by page sharing (pages_sharing x page size).");
#undef G
	fprintf(f, "# HELP cella_host_ksm_full_scans_total Full scans KSM made.\n"
		   "# TYPE cella_host_ksm_full_scans_total counter\n"
		   "cella_host_ksm_full_scans_total %lld\n",
		(long long)json_integer_value(json_object_get(h, "full_scans")));
	fclose(f);
	json_decref(h);
	return out;
}

json_t *hugepages_host_json(void)
{
	uint64_t nfree = 0, total = 0;

	if (conf_hugepages_available(&nfree, &total))
		nfree = total = 0;
	return json_pack("{s:i, s:I, s:I}", "size_kib", 2048, "total", (json_int_t)total, "free",
			 (json_int_t)nfree);
}

/* Turn KSM on (run 0 -> 1). A host where an administrator chose 2
 * (unmerge everything) is left as it is. */
static void ksm_turn_on(const char *vm)
{
	long long run = ksm_num("run");
	int fd;

	if (run != 0) {
		if (run < 0)
			log_warn("VM %s: memory.merge: this host has no KSM (%s/run): no page sharing",
				 vm, KSM_DIR);
		else if (run == 2)
			log_warn("VM %s: memory.merge: KSM is set to unmerge (run=2) on this host: "
				 "left as it is, no page sharing", vm);
		return;
	}
	fd = open(KSM_DIR "/run", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1)
		log_warn("VM %s: memory.merge: cannot turn KSM on (%s/run): %s: no page sharing",
			 vm, KSM_DIR, strerror(errno));
	else
		log_info("VM %s: memory.merge: KSM turned on (%s/run = 1)", vm, KSM_DIR);
	if (fd >= 0)
		close(fd);
}

int ksm_prepare_start(const struct vmdef *d, struct cerr *e)
{
	if (d->memory.merge)
		ksm_turn_on(d->name);
	if (d->memory.hugepages) {
		uint64_t need = ALIGN_UP(d->memory_mib, 2) / 2, nfree = 0, total = 0;

		if (conf_hugepages_available(&nfree, &total) == 0 && nfree < need)
			return cerr_set(e, CERR_CAPACITY, "memory.hugepages",
					"%llu MiB of guest memory needs %llu huge pages of 2 MiB; "
					"this host has %llu free of %llu reserved (reserve them with "
					"/proc/sys/vm/nr_hugepages or hugepages= on the host's "
					"kernel command line)", (unsigned long long)d->memory_mib,
					(unsigned long long)need, (unsigned long long)nfree,
					(unsigned long long)total);
	}
	return 0;
}
