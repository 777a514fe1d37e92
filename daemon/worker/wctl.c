/* wctl.c: one-request-one-reply JSON-lines client for workers' control sockets. */
#include "wctl.h"

#include "unixsock.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WCTL_CONNECT_TIMEOUT_MS 5000

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Send the whole line; the descriptors ride on its first byte (the worker
 * reads them with the line it starts). */
static int send_line(int fd, const char *s, size_t len, const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * WCTL_MAX_FDS)];
		struct cmsghdr align;
	} u;
	size_t off = 0;

	if (nfds > WCTL_MAX_FDS)
		return -EINVAL;
	while (off < len) {
		struct iovec iov = { .iov_base = (char *)s + off, .iov_len = len - off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (off == 0 && nfds) {
			struct cmsghdr *c;

			memset(&u, 0, sizeof(u));
			mh.msg_control = u.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;

			return err == -EPIPE || err == -ECONNRESET ? -ESRCH : err;
		}
		off += (size_t)n;
	}
	return 0;
}

int wctl_call(int fd, json_t *req, int timeout_ms, int pidfd, json_t **reply)
{
	return wctl_call_fds(fd, req, NULL, 0, timeout_ms, pidfd, reply);
}

int wctl_call_fds(int fd, json_t *req, const int *fds, unsigned nfds, int timeout_ms, int pidfd,
		  json_t **reply)
{
	char *s = json_dumps(req, JSON_COMPACT);
	char buf[65536];
	size_t len, got = 0;
	int64_t deadline = now_ms() + timeout_ms;
	json_error_t jerr;
	int ret;

	*reply = NULL;
	if (!s)
		return -ENOMEM;
	len = strlen(s);
	s[len++] = '\n';
	ret = send_line(fd, s, len, fds, nfds);
	free(s);
	if (ret)
		return ret;
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = pidfd, .events = POLLIN } };
		int left = (int)(deadline - now_ms());
		char *nl;
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(p, pidfd >= 0 ? 2 : 1, left) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (!p[0].revents) {
			if (p[1].revents)
				return -ESRCH;
			continue;
		}
		n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (n <= 0)
			return n == 0 || errno == ECONNRESET ? -ESRCH : -errno;
		got += (size_t)n;
		buf[got] = 0;
		nl = memchr(buf, '\n', got);
		if (nl) {
			*nl = 0;
			*reply = json_loads(buf, 0, &jerr);
			if (!*reply || !json_is_object(*reply)) {
				json_decref(*reply);
				*reply = NULL;
				return -EPROTO;
			}
			return 0;
		}
		if (got >= sizeof(buf) - 1)
			return -EPROTO;
	}
}

int wctl_request(const char *path, json_t *req, int timeout_ms, json_t **reply)
{
	return wctl_request_fds(path, req, NULL, 0, timeout_ms, reply);
}

int wctl_request_fds(const char *path, json_t *req, const int *fds, unsigned nfds,
		     int timeout_ms, json_t **reply)
{
	int fd = wctl_connect(path), ret;

	*reply = NULL;
	if (fd < 0)
		return fd == -ECONNREFUSED || fd == -ENOENT ? -ESRCH : fd;
	ret = wctl_call_fds(fd, req, fds, nfds, timeout_ms, -1, reply);
	close(fd);
	return ret;
}

int wctl_connect(const char *path)
{
	/* A worker whose control thread stopped accepting (hung, stopped)
	 * must not hold the API thread or the poller that asks it forever. */
	return unix_connect_timeout(path, WCTL_CONNECT_TIMEOUT_MS);
}
