/* ws_fwd.h: console input typed into a WebSocket on this host for a VM
 * another pool host runs (docs/web.md, "Pools"), sent to the owner's POST
 * /v1/vms/{name}/console off the WebSocket loop's thread: the loop queues
 * each message (bounded) and one worker thread, started on the first,
 * posts them in order, coalescing a connection's consecutive messages.
 * Deliveries that fail come back to the loop as messages for the client. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "role.h"

struct sup;
struct ws_fwd;

/* Messages and bytes waiting at once, all connections together: input
 * past either is dropped (the client is told). */
#define WS_FWD_QUEUE_MSGS  256
#define WS_FWD_QUEUE_BYTES (256u << 10)

/* kick(arg) runs on the worker's thread when a failure waits to be taken. */
struct ws_fwd *ws_fwd_new(struct sup *s, void (*kick)(void *arg), void *arg);
/* Drops what waits, ends the worker (after the post in flight, if any). */
void ws_fwd_free(struct ws_fwd *f);

/* Queue len bytes of conn's input for vm on host (at address): 0,
 * -ENOSPC when the queue is full, -ENOMEM, or -EAGAIN when no worker
 * could start. The caller's role was checked already; it travels. */
int ws_fwd_submit(struct ws_fwd *f, uint64_t conn, const char *host, const char *address,
		  const char *vm, enum role role, const char *who, const void *data,
		  size_t len) __must_check;

/* On the loop's thread: fn for each failed delivery since the last call
 * (conn's id and a message that says what was lost and why). */
void ws_fwd_take_errors(struct ws_fwd *f, void (*fn)(void *arg, uint64_t conn, const char *msg),
			void *arg);
