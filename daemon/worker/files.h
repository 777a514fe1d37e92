/* files.h: the files a cella-vm worker needs, opened by cellad and handed
 * over as descriptors (docs/security.md): the kernel, the initrd, each disk
 * with its whole backing chain and its change-tracking file, the saved
 * state to restore, the TLS files of a move in; /dev/kvm, each NIC's tap,
 * and cellad's own files in run_dir (the configuration, the exit record,
 * the console socket), none of which the worker, in a user namespace of
 * its own, could open. Each storage file is
 * opened by the same call that checks it beneath its location
 * (storage_open_file), so the worker uses the very file checked and opens
 * nothing by name. */
#pragma once
#include <jansson.h>

#include "cerr.h"
#include "compiler.h"

struct sup;
struct vmrt;

/* The worker finds file i at fd WORKER_FILES_BASE + i (0-2 stdio, 3 the
 * control socket, 4 a move's listening socket). */
#define WORKER_FILES_BASE 5
#define WORKER_FILES_MAX  512

struct worker_files {
	unsigned nr;
	int fd[WORKER_FILES_MAX]; /* cellad's descriptors */
	int restore;              /* the worker's number for the saved state, or -1 */
	int uffd;                 /* /dev/userfaultfd for a restore, or -1 (none here) */
	int tls[3];               /* cert, key, CA of a move in, or -1 */
	int kvm;                  /* /dev/kvm */
	int exit;                 /* the exit record (run_dir/UUID.exit), created empty */
	int console;              /* the console's listening socket (run_dir/UUID.console) */
	int config;               /* the worker's JSON (worker_files_add_config), or -1 */
};

/* Open every file of vm's configuration `cfg` (the worker's JSON, from
 * vmdef_worker_config) and rewrite its names as "fd:N": "kernel",
 * "initrd", each disk's "path", "backing" [{"fd", "name"}...] and
 * "cbt_file" (IMAGE.cbt, created beside the image if missing); the saved
 * state when the VM restores, the TLS files when it moves in; /dev/kvm,
 * each NIC's tap ("tap_fd", attached as cella-vm would: tapdev_open), the
 * exit record and the console socket. Refused as
 * storage_open_file refuses (a file swapped for a symlink out of its
 * location, a backing file outside it...). 0, or -1 with e set and
 * nothing left open. */
int worker_files_open(struct sup *s, struct vmrt *vm, json_t *cfg, struct worker_files *wf,
		      struct cerr *e) __must_check;
/* A descriptor cellad made (e.g. a memfd) into wf, taken; *n gets the
 * worker's number for it. 0, or -1 with e set (fd closed). */
int worker_files_add_fd(struct worker_files *wf, int fd, int *n, struct cerr *e) __must_check;
/* The configuration file cellad wrote at path, read-only, into wf->config. */
int worker_files_add_config(struct worker_files *wf, const char *path, struct cerr *e)
	__must_check;
void worker_files_close(struct worker_files *wf);

/* In the forked child, before exec (async-signal-safe calls only), in two
 * steps around putting fds 0-4 in place: lift copies every file above the
 * numbers it will have (into hi, WORKER_FILES_MAX entries), so that no
 * dup2 of either step lands on a descriptor still to be moved; place puts
 * file i at WORKER_FILES_BASE + i, without close-on-exec. Everything above
 * the last one is the caller's to close. 0 or -1. */
int worker_files_lift(const struct worker_files *wf, int *hi);
int worker_files_place(const struct worker_files *wf, const int *hi);
