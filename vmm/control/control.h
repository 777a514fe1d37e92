/* control.h: the worker side of cellad's private control socket: a JSON-lines
 * server (one request object per line, one reply object per line) that runs
 * on the VM's I/O loop.
 *
 * Requests: {"cmd":"status"|"start"|"pause"|"resume"|"shutdown"|"stop"|
 * "reset"|"stats"|"probe-open", ...}. Replies: {"ok":true,...} or
 * {"ok":false,"error":"reason"}. See docs/cellad.md for the protocol.
 */
#pragma once
#include <stdbool.h>

#include "compiler.h"

struct vm;
struct control;

struct control_opts {
	const char *spec;       /* "PATH" (bound here) or "fd:N" (inherited, listening) */
	const char *exit_file;  /* NULL or where the exit status is recorded */
	const char *name;       /* VM name reported by status; may be NULL */
	bool test_probe;        /* enable the test-only "probe-open" command */
};

/* Open the control socket and the exit file (before any sandboxing: both
 * stay usable afterwards). Nothing is served until control_wait_start() or
 * vm_run(). Returns 0 or -errno (logged). */
int control_create(struct control **out, struct vm *vm, const struct control_opts *opts)
	__must_check;

/* Serve on vm->loop (call before vm_run, after any sandboxing). When
 * `gated`, the vCPUs stay parked before their first instruction until a
 * client sends {"cmd":"start"} ("status" answers "created" meanwhile); with
 * no start within 30 s the VM ends with VM_EXIT_ERROR. 0 or -errno. */
int control_attach(struct control *c, bool gated) __must_check;

/* Write {"status":N,"kind":...,"reason":...} to the exit file. */
void control_record_exit(struct control *c, int code, const char *reason);

void control_destroy(struct control *c);
