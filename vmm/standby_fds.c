/* standby_fds.c: a standby worker's request over a SOCK_SEQPACKET socket
 * (standby.h): one message, the request line with the restore's
 * descriptors (SCM_RIGHTS), each put at the number the request gives, as
 * a cold worker would have inherited it. cellad's standby workers take
 * their requests this way (daemon/worker/standby_pool.c); a pipe on stdin
 * still takes the plain line (vmm/standby.c). */
#include "standby.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "vm_prep.h"

bool standby_is_msg_socket(int fd)
{
	int type = 0;
	socklen_t len = sizeof(type);

	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET;
}

void standby_say_ready(int fd)
{
	static const char ready[] = "ready\n";

	/* A peer that is gone shows as the end of input at the request's read. */
	(void)!send(fd, ready, sizeof(ready) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void standby_rx_close(struct standby_rx *rx)
{
	for (int i = 0; i < rx->n; i++)
		if (rx->fd[i] >= 0)
			close(rx->fd[i]);
	rx->n = 0;
}

ssize_t standby_recv_request(int fd, char *buf, size_t cap, struct standby_rx *rx, char *err,
			     size_t errlen)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * STANDBY_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = cap - 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	ssize_t n;

	rx->n = 0;
	do
		n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		snprintf(err, errlen, "reading the request: %s", strerror(errno));
		return -1;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && rx->n < STANDBY_FDS_MAX; i++)
			memcpy(&rx->fd[rx->n++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (n == 0 && !rx->n) {
		snprintf(err, errlen, "end of input before a request");
		return -1;
	}
	if (msg.msg_flags & MSG_CTRUNC) {
		snprintf(err, errlen, "the request passes more than %d descriptors",
			 STANDBY_FDS_MAX);
		standby_rx_close(rx);
		return -1;
	}
	if ((size_t)n > cap - 2 || (msg.msg_flags & MSG_TRUNC)) {
		snprintf(err, errlen, "the request is longer than %zu bytes", cap - 2);
		standby_rx_close(rx);
		return -1;
	}
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n] = '\0';
	return n;
}

/* fd moved to a number above top (close-on-exec), the old one closed.
 * The new number, or -1. */
static int lift_above(int fd, int top)
{
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, top + 1);

	if (nfd >= 0)
		close(fd);
	return nfd;
}

int standby_place_fds(struct standby *sb, struct standby_rx *rx, int *kvm_fd, char *spec,
		      size_t speclen, char *err, size_t errlen)
{
	int top = sb->kvm_to;

	if (rx->n != sb->nr_fds) {
		snprintf(err, errlen, "the request names %d descriptors (fds), %d came with it%s",
			 sb->nr_fds, rx->n, rx->n ? "" : " (they come only over a SOCK_SEQPACKET "
			 "socket)");
		standby_rx_close(rx);
		return -1;
	}
	for (int i = 0; i < sb->nr_fds; i++)
		top = sb->fd_to[i] > top ? sb->fd_to[i] : top;
	if (top < 0)
		return 0;
	/* Nothing the standby holds, nor what came (placed by the kernel at
	 * the lowest free numbers), may sit where a descriptor goes. */
	if (*kvm_fd <= top) {
		char was[32];

		snprintf(was, sizeof(was), "%s", spec);
		if ((*kvm_fd = lift_above(*kvm_fd, top)) < 0)
			goto fail_errno;
		snprintf(spec, speclen, "fd:%d", *kvm_fd);
		/* The --kvm fd:N standby_parse_request added for it follows it. */
		if (sb->kvm_to < 0 && sb->argc >= 2 && !strcmp(sb->argv[sb->argc - 1], was) &&
		    standby_is_kvm_option(sb->argv[sb->argc - 2])) {
			char *w = strdup(spec);

			if (!w)
				goto fail_errno;
			free(sb->argv[sb->argc - 1]);
			sb->argv[sb->argc - 1] = w;
		}
	}
	if (sb->vm_fd > 0 && sb->vm_fd <= top && (sb->vm_fd = lift_above(sb->vm_fd, top)) < 0) {
		sb->vm_fd = 0;
		goto fail_errno;
	}
	/* --mem: the prepared VM holds it instead (standby_prep.c). */
	if (sb->prep && sb->prep->vm_fd >= 0 && sb->prep->vm_fd <= top &&
	    (sb->prep->vm_fd = lift_above(sb->prep->vm_fd, top)) < 0)
		goto fail_errno;
	for (int i = 0; i < rx->n; i++)
		if (rx->fd[i] <= top && (rx->fd[i] = lift_above(rx->fd[i], top)) < 0)
			goto fail_errno;
	/* 0-2 are stdio, there to be replaced; above them, something the
	 * standby opened that this file does not know of (a library's). */
	for (int i = -1; i < sb->nr_fds; i++) {
		int to = i < 0 ? sb->kvm_to : sb->fd_to[i];

		if (to > 2 && fcntl(to, F_GETFD) >= 0) {
			snprintf(err, errlen, "descriptor %d is the standby worker's own: the "
				 "request cannot place one there", to);
			standby_rx_close(rx);
			return -1;
		}
	}
	for (int i = 0; i < rx->n; i++) {
		if (dup2(rx->fd[i], sb->fd_to[i]) < 0)
			goto fail_errno;
		close(rx->fd[i]);
		rx->fd[i] = -1;
	}
	if (sb->kvm_to >= 0) {
		if (dup2(*kvm_fd, sb->kvm_to) < 0)
			goto fail_errno;
		close(*kvm_fd);
		*kvm_fd = sb->kvm_to;
		snprintf(spec, speclen, "fd:%d", sb->kvm_to);
	}
	/* The first line in the VM's log (its stderr now). */
	log_info("standby: restore request taken: %d descriptors placed%s", rx->n,
		 sb->kvm_to >= 0 ? ", its /dev/kvm where the request's is" : "");
	rx->n = 0;
	return 0;
fail_errno:
	snprintf(err, errlen, "placing the request's descriptors: %s", strerror(errno));
	standby_rx_close(rx);
	return -1;
}
