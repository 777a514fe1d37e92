/* control.h: the worker side of cellad's private control socket: a JSON-lines
 * server (one request object per line, one reply object per line) that runs
 * on the VM's I/O loop.
 *
 * Requests: {"cmd":"status"|"start"|"pause"|"resume"|"shutdown"|"stop"|
 * "reset"|"stats"|"probe-open"|"probe-syscall"|"save"|"migrate", ...} (a table
 * in control.c), plus the commands device types register (devtype.h; e.g.
 * virtio-blk's set-qos, flush-disks, disk-switch). Replies: {"ok":true,...} or
 * {"ok":false,"error":"reason"}. See docs/cellad.md for the protocol.
 * "migrate" (docs/migration.md) answers only when the move is over, and
 * then the worker exits with WORKER_EXIT_MIGRATED.
 *
 * To the blk and migrate engineers (and any command that needs a file or a
 * socket): a request line may carry file descriptors as SCM_RIGHTS
 * ancillary data sent with the line (up to 8; the worker may be sandboxed,
 * so always accept one). In ctl_handle (control.c) each handler gets the
 * request's `struct ctl_req *rq`: take a descriptor with ctl_take_fd(rq, i)
 * (you then own it), or use ctl_req_file(rq, req, flags, ...) which does
 * "fd": i or "path": P for you. Descriptors nobody took are closed after
 * the handler returns. A handler that ends the VM sets *after (e.g.
 * WORKER_EXIT_SAVED); the exit is requested once the reply is written.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"

struct vm;
struct control;

struct control_opts {
	const char *spec;       /* "PATH" (bound here) or "fd:N" (inherited, listening) */
	const char *exit_file;  /* NULL or where the exit status is recorded */
	const char *name;       /* VM name reported by status; may be NULL */
	bool test_probe;        /* enable the test-only "probe-open" and "probe-syscall" */
};

/* Open the control socket and the exit file (before any sandboxing: both
 * stay usable afterwards). Nothing is served until control_wait_start() or
 * vm_run(). Returns 0 or -errno (logged). */
int control_create(struct control **out, struct vm *vm, const struct control_opts *opts)
	__must_check;

/* Serve on vm->loop (call before vm_run, after any sandboxing). When
 * `gated`, the vCPUs stay parked before their first instruction until a
 * client sends {"cmd":"start"} ("status" answers "created" meanwhile); with
 * no start within 30 s the VM ends with WORKER_EXIT_ERROR. 0 or -errno. */
int control_attach(struct control *c, bool gated) __must_check;

/* Write {"status":N,"kind":...,"reason":...} to the exit file. */
void control_record_exit(struct control *c, int code, const char *reason);

void control_destroy(struct control *c);

/* One request being handled, with the descriptors that came with it. */
struct ctl_req;
/* Take the idx-th descriptor attached to the request (the caller owns it
 * from then on); -1 when there is none or it was taken already. */
int ctl_take_fd(struct ctl_req *rq, unsigned idx);
unsigned ctl_nr_fds(const struct ctl_req *rq);
/* The file a command names: {"fd": N} (an attached descriptor, taken) or
 * {"path": P} (opened with open(P, flags | O_CLOEXEC, 0600)). Returns the
 * descriptor, or -errno with the reason in err ("fd: no file descriptor 1
 * attached to the request", "P: No such file or directory"). */
typedef struct json_t json_t;
int ctl_req_file(struct ctl_req *rq, json_t *req, int flags, char *err, size_t errlen);
