/* vsock_relay.c: guest-initiated virtio-vsock connections of sandboxed
 * workers, connected by cellad (vsock_relay.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "unixsock.h"
#include "vsock_relay.h"

#define RELAY_CONNECT_MS 1000

struct relay {
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void relay_answer(int fd, uint32_t seq, int32_t status, int conn)
{
	int32_t rep[2] = { (int32_t)seq, status };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { rep, sizeof(rep) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (conn >= 0) {
		struct cmsghdr *cm;

		memset(cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &conn, sizeof(int));
	}
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0) {
		/* The worker is gone: the next recv ends the thread. */
	}
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;

	for (;;) {
		char path[sizeof(r->path) + 16];
		uint32_t req[2]; /* seq, port */
		ssize_t n = recv(r->fd, req, sizeof(req), 0);
		int conn;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (n != sizeof(req)) {
			relay_answer(r->fd, 0, -EINVAL, -1);
			continue;
		}
		if ((size_t)snprintf(path, sizeof(path), "%s_%u", r->path, req[1]) >=
		    sizeof(r->path)) {
			relay_answer(r->fd, req[0], -ENAMETOOLONG, -1);
			continue;
		}
		conn = unix_connect_timeout(path, RELAY_CONNECT_MS);
		relay_answer(r->fd, req[0], conn < 0 ? conn : 0, conn);
		if (conn >= 0)
			close(conn);
	}
	close(r->fd);
	free(r);
	return NULL;
}

int vsock_relay_start(const char *uds_path)
{
	struct relay *r = calloc(1, sizeof(*r));
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	int sv[2], ret;

	if (!r)
		return -ENOMEM;
	if (strlen(uds_path) >= sizeof(r->path)) {
		free(r);
		return -ENAMETOOLONG;
	}
	snprintf(r->path, sizeof(r->path), "%s", uds_path);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		free(r);
		return ret;
	}
	r->fd = sv[0];
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* cellad's signals stay with its own threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&t, &attr, relay_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (ret) {
		log_err("vsock relay: cannot start a thread: %s", strerror(-ret));
		close(sv[0]);
		close(sv[1]);
		free(r);
		return ret;
	}
	return sv[1];
}
