/* dynmem_priv.h: the dynamic-memory balancer's inside (features/dynmem*.c):
 * what it reads from the host and the guests. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

/* MemAvailable and MemTotal (KiB) from /proc/meminfo's text. 0, or -1 when
 * MemAvailable is missing. */
int dynmem_parse_meminfo(const char *text, uint64_t *avail_kib, uint64_t *total_kib);
/* "some avg10" (%) from /proc/pressure/memory's text; -1 when missing. */
double dynmem_parse_psi(const char *text);
/* The host's MemAvailable (MiB, -1 unknown), MemTotal (MiB) and PSI some
 * avg10 (%, -1 without PSI), from /proc. */
void dynmem_host_read(int64_t *avail_mib, uint64_t *total_mib, double *psi);
/* The guest memory a worker holds on the host (MiB): its RssShmem (the
 * memfd) plus RssAnon (private guest memory, e.g. memory.merge). */
uint64_t dynmem_worker_resident_mib(pid_t pid);
/* tests only (config dynmem.test_host_file): {"memory_mib": N,
 * "psi_some_avg10": X}. The host is then taken to have N MiB for the
 * dynamic VMs and nothing else: MemAvailable = N - what their workers hold.
 * false when the file is absent or unreadable (the real host counts). */
bool dynmem_test_host_read(const char *path, uint64_t *memory_mib, double *psi);

/* The guest's demand from its balloon status (the worker's "balloon"
 * object): used = total - available (free when the guest gives no
 * available), less the balloon when the guest counts it in its total.
 * false when the guest has not sent statistics yet. */
bool dynmem_guest_demand(json_t *balloon, uint64_t startup_mib, uint64_t *demand_mib,
			 uint64_t *free_mib);
