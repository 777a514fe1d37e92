/* vsock_host.c: virtio-vsock's connections to host port P for the guest:
 * "<uds>_P" by name (cella-vm by hand), or through cellad's relay (the
 * sandbox: docs/security.md, "virtio-vsock"). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "virtio/vsock/vsock.h"
#include "vm.h"

#define CONNECTOR_TIMEOUT_MS 2000

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Ask cellad (connector: a SOCK_SEQPACKET socket) to connect host port
 * `port`. Request {seq, port}, answer {seq, status} with the descriptor
 * attached when status is 0 (daemon/worker/vsock_relay.h); answers to an
 * earlier request that timed out are dropped by their seq. */
static int connector_ask(struct vsock *vs, uint32_t port)
{
	uint32_t req[2] = { ++vs->connector_seq, port };
	uint64_t deadline = now_ns() + CONNECTOR_TIMEOUT_MS * 1000000ull;

	if (send(vs->connector_fd, req, sizeof(req), MSG_NOSIGNAL) != sizeof(req))
		return -ECONNREFUSED;
	for (;;) {
		int32_t rep[2] = { 0, -ECONNREFUSED };
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { rep, sizeof(rep) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				      .msg_controllen = sizeof(cbuf) };
		struct pollfd pfd = { .fd = vs->connector_fd, .events = POLLIN };
		uint64_t now = now_ns();
		struct cmsghdr *cm;
		int fd = -1;
		ssize_t n;

		if (now >= deadline ||
		    poll(&pfd, 1, (int)((deadline - now) / 1000000) + 1) != 1)
			return -ETIMEDOUT;
		n = recvmsg(vs->connector_fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		for (cm = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm; cm = CMSG_NXTHDR(&msg, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
			    cm->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(&fd, CMSG_DATA(cm), sizeof(int));
		if (n != sizeof(rep)) {
			if (fd >= 0)
				close(fd);
			return -ECONNREFUSED; /* cellad went away, or spoke nonsense */
		}
		if ((uint32_t)rep[0] != req[0] || rep[1] || fd < 0) {
			if (fd >= 0)
				close(fd);
			if ((uint32_t)rep[0] != req[0])
				continue; /* a late answer to an earlier request */
			return rep[1] < 0 ? rep[1] : -ECONNREFUSED;
		}
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		return fd;
	}
}

/* A connection to host port `port` for the guest: "<uds>_<port>" by name,
 * or cellad's answer on the connector. A non-blocking descriptor or -errno. */
int vsock_host_connect(struct vsock *vs, uint32_t port)
{
	if (vs->connector_fd >= 0)
		return connector_ask(vs, port);
	if (vs->uds_path && vs->vd.vm->no_new_sockets)
		return -EPERM; /* under seccomp: only cellad's connector connects */
	if (vs->uds_path) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd;

		if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", vs->uds_path, port) >=
		    sizeof(sa.sun_path))
			return -ENAMETOOLONG;
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		return fd;
	}
	return -ECONNREFUSED;
}
