/* wctl.h: cellad's client for a worker's control socket (JSON lines). */
#pragma once
#include <jansson.h>

#include "compiler.h"

/* Connect to the worker's control socket. Returns the fd or -errno. */
int wctl_connect(const char *path) __must_check;

/* Send req (not consumed) on fd and wait up to timeout_ms for one reply
 * line; gives up early when pidfd (>= 0) says the worker died. On success
 * *reply is the parsed object (caller decrefs). Returns 0, -ETIMEDOUT,
 * -ESRCH (worker gone), -EPROTO (bad reply) or -errno. */
int wctl_call(int fd, json_t *req, int timeout_ms, int pidfd, json_t **reply) __must_check;

/* Connect, call, close. */
int wctl_request(const char *path, json_t *req, int timeout_ms, json_t **reply) __must_check;

#define WCTL_MAX_FDS 8
/* The same with file descriptors attached to the request line (SCM_RIGHTS);
 * the request names each by its index ("fd": 0). The caller keeps its
 * copies (close them after the call). */
int wctl_call_fds(int fd, json_t *req, const int *fds, unsigned nfds, int timeout_ms, int pidfd,
		  json_t **reply) __must_check;
int wctl_request_fds(const char *path, json_t *req, const int *fds, unsigned nfds,
		     int timeout_ms, json_t **reply) __must_check;
