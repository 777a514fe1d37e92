/* standby_pool.h: the standby workers cellad keeps ready on this host
 * (standby_pool.c; docs/cellad.md "Standby workers"): `cella-vm --standby`
 * processes in the same sandbox as any worker (a uid of their own from the
 * pool, user and PID namespaces, a cgroup: "standby" under cgroup_parent),
 * which a restore takes instead of starting a worker cold, handing over the
 * cold worker's argv and descriptors in one message (vmm/standby_fds.c). A
 * keeper thread spawns them, notices one that dies (reaped, replaced after
 * a backoff that grows while they keep dying) and refills the pool after a
 * take, never on the restore's path. Thread-safe. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "compiler.h"

struct sup;
struct standby_pool;

#define STANDBY_POOL_MAX 8
/* Descriptors one request can carry (the kernel's SCM_MAX_FD): a VM with
 * more files starts cold. */
#define STANDBY_POOL_FDS_MAX 253

/* A standby worker taken for a restore: cellad's child, now the caller's. */
struct standby_taken {
	pid_t pid;
	int pidfd;
	int sock;       /* cellad's end of its request socket */
	uint32_t uid;   /* the sandbox uid it runs as (from s->uids; 0: none taken there) */
	uint64_t start; /* its start time (proc_start_time) */
};

/* Start keeping `want` (0..STANDBY_POOL_MAX) standby workers for s, after
 * killing any a previous cellad left in the standby cgroup. want 0: *out
 * is NULL and nothing runs. 0 or -errno. */
int standby_pool_start(struct sup *s, unsigned want, struct standby_pool **out) __must_check;
/* Stop the keeper and kill every standby worker not taken (reaped). */
void standby_pool_stop(struct standby_pool *p);
/* A ready standby worker (p may be NULL): 0 with *t filled, or -EAGAIN
 * when none is ready. The keeper starts its replacement once the restore
 * is done (standby_pool_refill), or 10 s after at the latest. */
int standby_pool_take(struct standby_pool *p, struct standby_taken *t) __must_check;
/* The restore that took a standby is done (started or failed): its
 * replacement may start now (p may be NULL). */
void standby_pool_refill(struct standby_pool *p);
/* Hand t the restore: argv (argv[0] the worker's path, left out), the
 * descriptors fds[i] to be placed at to[i] (n of them, at most
 * STANDBY_POOL_FDS_MAX), and its own /dev/kvm at kvm_to (argv names
 * --kvm fd:kvm_to). 0, or -errno with err set (t is then the caller's to
 * kill: standby_pool_discard). t->sock is closed either way. */
int standby_pool_request(struct standby_taken *t, char *const *argv, const int *fds,
			 const int *to, unsigned n, int kvm_to, char *err, size_t errlen)
	__must_check;
/* Kill and reap a taken standby whose request failed (its uid stays with
 * the caller). */
void standby_pool_discard(struct standby_taken *t);
/* Kill one ready standby worker to free its sandbox uid (a cold start found
 * the uid pool empty). Whether one was. */
bool standby_pool_retire_one(struct standby_pool *p);
/* The RAM size (MiB) the next standby workers prepare their VM for
 * (cella-vm --standby --mem: memory slots, irqchip, PIT), e.g. the most
 * recently restored VM's; 0: none. Standbys already running keep theirs.
 * (spawn_one in standby_pool.c passes it.) */
void standby_pool_hint_ram(struct standby_pool *p, uint64_t mib);
/* {"want", "ready", "starting", "pids": [...], "spawned", "died",
 * "ram_hint_mib"} for GET
 * /v1/host (p may be NULL: want 0). */
json_t *standby_pool_json(struct standby_pool *p);
