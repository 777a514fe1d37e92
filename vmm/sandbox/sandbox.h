/* sandbox.h: least privilege for cella-vm once its VM is set up (a jailer
 * in the worker itself): new mount, IPC, UTS and network namespaces whose
 * root is an empty read-only tmpfs (every file, socket and tap the VM needs
 * is already open), an empty capability bounding set, a switch to an
 * unprivileged uid (one per VM under cellad), rlimits, and a seccomp
 * allowlist with argument filters inherited by the threads created later. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "compiler.h"

struct sandbox_ids {
	bool drop;      /* false: keep the current ids */
	/* Started as uid 0 of a user namespace of its own that maps it to a
	 * per-VM uid (cellad spawns it so): keep uid 0 there and drop every
	 * capability (--sandbox=userns). */
	bool userns;
	bool per_vm;    /* the ids belong to this worker alone (RLIMIT_NPROC counts them) */
	uid_t uid;
	gid_t gid;
};

/* Parse --sandbox's value: NULL (keep the ids), "UID:GID" (numbers: a
 * per-VM identity), a user name (looked up now, before /etc disappears),
 * or "userns" (cellad's spawn: uid 0 of a user namespace whose uid 0 is not
 * the host's root, checked in /proc/self/uid_map). Returns 0 or
 * -EINVAL/-ENOENT (logged). */
int sandbox_parse_ids(const char *spec, struct sandbox_ids *ids) __must_check;

/* Enter the sandbox: unshare the mount, IPC, UTS and network namespaces,
 * pivot_root into an empty read-only tmpfs, empty the capability bounding
 * set, set the rlimits (NOFILE, NPROC for a per-VM uid, CORE), become ids
 * (userns: stay uid 0 of the namespace and empty the permitted and
 * effective sets) and set PR_SET_NO_NEW_PRIVS. Needs root (of the host, or
 * of the worker's own user namespace); call after every file and socket
 * is open and before any thread is created. Returns 0 or -errno (logged). */
int sandbox_enter(const struct sandbox_ids *ids) __must_check;

/* Threads and io_uring workers a per-VM uid may run (RLIMIT_NPROC); cellad
 * sets the same figure as the cgroup's pids.max. */
#define SANDBOX_MAX_TASKS 1024

/* Install the system-call allowlist for this process and the threads it
 * creates later: clone with thread flags only (allow_fork: also the fork
 * and close_range of the fallback KVM teardown), no new namespaces; prctl and ioctl by argument
 * (vcpu_hotplug: also vCPU creation and CPUID setup, for a VM with room for
 * more vCPUs). A call outside the list
 * ends the worker: its number is logged and the process exits with status 4
 * (VMM error). Returns 0 or -errno. */
int sandbox_seccomp_install(bool allow_fork, bool vcpu_hotplug) __must_check;

/* A thread's own filter, stacked on the process's (a call must pass both;
 * a struct sock_fprog, kept in struct vm): an allowlist of what that
 * thread calls, ioctl by exact number.
 * - SANDBOX_THREAD_VCPU: a vCPU thread and the register handlers it runs
 *   (KVM_RUN, register and event calls, interrupt lines, ioeventfds,
 *   irqfds; the UART's output; no open, socket, clone or ring setup);
 * - SANDBOX_THREAD_MIGRATION: the live-migration sender (its socket, dirty
 *   logs, state reads, the disks' chunks; the throttle thread);
 * - SANDBOX_THREAD_THROTTLE: the throttle thread (kicks and sleeps);
 * - SANDBOX_THREAD_PREFETCH: a restore's prefetch thread (madvise with
 *   the populate and read-ahead advice only, lseek with SEEK_DATA and
 *   SEEK_HOLE only, its lock, its log line).
 * Build them before sandbox_seccomp_install (libseccomp needs a pipe).
 * CELLA_SECCOMP_LOG=1 in the environment: log instead of refusing (to
 * find what a new code path calls). *out is malloc'd
 * (sandbox_thread_filter_free). Returns 0 or -errno. */
enum sandbox_thread {
	SANDBOX_THREAD_VCPU,
	SANDBOX_THREAD_MIGRATION,
	SANDBOX_THREAD_THROTTLE,
	SANDBOX_THREAD_PREFETCH,
	SANDBOX_THREADS
};
struct sock_fprog;
int sandbox_thread_filter(enum sandbox_thread kind, struct sock_fprog **out) __must_check;
void sandbox_thread_filter_free(struct sock_fprog *f);

/* The BPF program sandbox_seccomp_install(allow_fork, vcpu_hotplug) loads,
 * built the same way (the same rules, CELLA_SECCOMP_LOG read now) but
 * exported instead of loaded: byte for byte what the kernel gets from it
 * (tests/unit/sandbox/test_precompiled.c). *out is malloc'd
 * (sandbox_thread_filter_free). Returns 0 or -errno (logged). */
int sandbox_process_filter(bool allow_fork, bool vcpu_hotplug, struct sock_fprog **out) __must_check;

/* Install prog as sandbox_seccomp_install installs its filter: the SIGSYS
 * handler (status 4), PR_SET_NO_NEW_PRIVS, then seccomp(2)'s
 * SECCOMP_SET_MODE_FILTER without flags, as libseccomp's seccomp_load does
 * by default. No libseccomp work on the way: a standby worker's request
 * installs what it built ahead. Returns 0 or -errno (logged). */
int sandbox_seccomp_load(const struct sock_fprog *prog) __must_check;

/* Every filter a restore may install, built ahead (vmm/sandbox/
 * sandbox_pre.c): a standby worker builds them before it says "ready"
 * (libseccomp takes ~0.7 ms a request otherwise). process[allow_fork]
 * [vcpu_hotplug] as sandbox_process_filter; thread[k] as
 * sandbox_thread_filter(k), taken by whoever uses one (set to NULL). */
struct sandbox_filters {
	struct sock_fprog *process[2][2];
	struct sock_fprog *thread[SANDBOX_THREADS];
};

/* All of them into *sf, or none: 0 or -errno (logged). */
int sandbox_filters_build(struct sandbox_filters *sf) __must_check;
/* Free what sf still holds (NULL: nothing). */
void sandbox_filters_free(struct sandbox_filters *sf);
