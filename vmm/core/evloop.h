/* evloop.h: the VM's I/O thread: an epoll loop that runs device back ends
 * (virtqueue kicks through ioeventfds, tap and console input, io_uring
 * completions) so that no vCPU thread ever waits for host I/O.
 *
 * Callbacks run on the loop thread only. evloop_add/del may be called from
 * any thread; after evloop_del returns, the callback for that fd is not
 * running and will not run again unless called from the loop thread itself.
 */
#pragma once
#include <stdint.h>

#include "compiler.h"

struct evloop;

typedef void (*evloop_fn)(void *opaque, uint32_t events);

int evloop_create(struct evloop **out) __must_check;
void evloop_destroy(struct evloop *l);

/* Watch fd for `events` (EPOLLIN...). Returns 0 or -errno. */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *opaque) __must_check;
int evloop_del(struct evloop *l, int fd);

/* Run until evloop_stop(). Returns 0 or -errno on epoll failure. */
int evloop_run(struct evloop *l);
/* Ask the loop to return; safe from any thread and from signal-free contexts. */
void evloop_stop(struct evloop *l);
