/* ws.h: cellad's WebSocket connections (docs/web.md, "Console over
 * WebSocket"): once the HTTP server has answered a handshake with 101, the
 * socket is handed to one event-loop thread (epoll) that serves every
 * WebSocket of this cellad: console output from the VM's stream (the
 * history first), input to the guest, pings, the close. No thread per
 * socket. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"
#include "role.h"

struct sup;
struct sup_stream;
struct ws_loop;
struct MHD_UpgradeResponseHandle;

/* Connections one cellad serves at once: the handshake past it is a 503. */
#define WS_MAX_CONNS 512

/* Start the loop's thread: 0 or -errno. */
int ws_loop_start(struct ws_loop **out, struct sup *s) __must_check;
/* Close every connection (1001, "cellad is stopping") and end the thread.
 * Connections handed over afterwards are closed at once. NULL: nothing. */
void ws_loop_stop(struct ws_loop *l);
/* Free a stopped loop (once the HTTP server that hands over is stopped). */
void ws_loop_free(struct ws_loop *l);
/* Whether the loop serves WS_MAX_CONNS already (a hint for the handshake). */
bool ws_loop_full(struct ws_loop *l);

/* What a handshake prepared for the connection it upgrades: the stream
 * (owned): a VM's console (name: the VM, for its input; operator and above
 * may type) or, events true, the event stream (one JSON event per text
 * message; no input); the caller's role and a name for it. */
struct ws_pending;
struct ws_pending *ws_pending_new(struct sup_stream *st, const char *name, enum role role,
				  const char *who, bool events);
void ws_pending_free(struct ws_pending *p);
/* The console st is of a VM pool host `host` (at address) runs: st is its
 * owner's console stream, forwarded, and input is forwarded there too
 * (ws_fwd.h), off the loop's thread. */
void ws_pending_forward(struct ws_pending *p, const char *host, const char *address);

/* The upgraded socket (MHD's upgrade handler): the loop takes p, fd and
 * urh (it ends them with MHD_upgrade_action CLOSE), and the bytes MHD read
 * past the request's headers (copied). Never blocks. */
/* l NULL (no loop could start): closed at once. */
void ws_loop_adopt(struct ws_loop *l, struct ws_pending *p, int fd,
		   struct MHD_UpgradeResponseHandle *urh, const char *extra, size_t extra_len);
