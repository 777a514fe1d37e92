/* passt.c: passt's qemu stream framing (4-byte big-endian length, then the
 * Ethernet frame) for virtio-net, with partial reads and writes, bounded
 * buffers, and a stream that breaks into "link down", never a crash. */
#include "backend/passt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "evloop.h"
#include "log.h"
#include "virtio/virtq.h"

int passt_parse_fd(const char *spec)
{
	char *end;
	long n;

	if (!spec || strncmp(spec, "fd:", 3) || !spec[3])
		return -EINVAL;
	errno = 0;
	n = strtol(spec + 3, &end, 10);
	if (errno || *end || n < 0 || n > 1 << 20)
		return -EINVAL;
	return (int)n;
}

int passt_stream_init(struct passt_stream *ps, int fd, const char *who)
{
	int type = 0;
	socklen_t tl = sizeof(type);
	int fl;

	memset(ps, 0, sizeof(*ps));
	ps->fd = fd;
	ps->out_fd = -1;
	ps->who = who;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM) {
		log_err("%s: passt fd %d is not a stream socket", who, fd);
		close(fd);
		ps->fd = -1;
		return -ENOTSOCK;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int e = errno;

		close(fd);
		ps->fd = -1;
		return -e;
	}
	ps->rbuf = malloc(PASST_FRAME_MAX);
	ps->wbuf = malloc(4 + PASST_FRAME_MAX);
	if (!ps->rbuf || !ps->wbuf) {
		passt_stream_destroy(ps);
		return -ENOMEM;
	}
	return 0;
}

static void __printf(2, 3) passt_set_down(struct passt_stream *ps, const char *fmt, ...)
{
	va_list ap;

	if (ps->down)
		return;
	ps->down = true;
	va_start(ap, fmt);
	vsnprintf(ps->down_reason, sizeof(ps->down_reason), fmt, ap);
	va_end(ap);
	log_err("%s: passt stream %s; link down", ps->who, ps->down_reason);
	if (ps->on_down)
		ps->on_down(ps->down_opaque);
}

static ssize_t passt_read_some(struct passt_stream *ps, void *buf, size_t len)
{
	if (ps->read)
		return ps->read(ps->read_opaque, buf, len);
	return read(ps->fd, buf, len);
}

/* Pull bytes towards the current frame. Returns 1 when a whole frame is
 * in rbuf, 0 when more bytes are needed, -1 when the stream is down. */
static int passt_fill(struct passt_stream *ps)
{
	while (ps->hdr_got < sizeof(ps->hdr)) {
		ssize_t n = passt_read_some(ps, ps->hdr + ps->hdr_got, sizeof(ps->hdr) - ps->hdr_got);

		if (n == 0) {
			passt_set_down(ps, "closed by passt%s", ps->hdr_got ? " inside a length" : "");
			return -1;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			passt_set_down(ps, "read failed: %s", strerror(errno));
			return -1;
		}
		ps->hdr_got += (size_t)n;
		if (ps->hdr_got == sizeof(ps->hdr)) {
			ps->frame_len = (uint32_t)ps->hdr[0] << 24 | (uint32_t)ps->hdr[1] << 16 |
					(uint32_t)ps->hdr[2] << 8 | ps->hdr[3];
			ps->frame_got = 0;
			if (ps->frame_len > PASST_FRAME_MAX) {
				passt_set_down(ps, "sent a frame length over the maximum (%u > %u)",
					       ps->frame_len, PASST_FRAME_MAX);
				return -1;
			}
		}
	}
	while (ps->frame_got < ps->frame_len) {
		ssize_t n = passt_read_some(ps, ps->rbuf + ps->frame_got,
					    ps->frame_len - ps->frame_got);

		if (n == 0) {
			passt_set_down(ps, "cut inside a frame (%zu of %u bytes)", ps->frame_got,
				       ps->frame_len);
			return -1;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			passt_set_down(ps, "read failed: %s", strerror(errno));
			return -1;
		}
		ps->frame_got += (size_t)n;
	}
	return 1;
}

ssize_t passt_readv(struct passt_stream *ps, const struct iovec *iov, unsigned nr, size_t skip)
{
	static const uint8_t zero[64];
	size_t room = 0, len;
	int r;

	for (unsigned i = 0; i < nr; i++)
		room += iov[i].iov_len;
	for (;;) {
		if (ps->down) {
			errno = EPIPE;
			return -1;
		}
		r = passt_fill(ps);
		if (r < 0) {
			errno = EPIPE;
			return -1;
		}
		if (r == 0) {
			errno = EAGAIN;
			return -1;
		}
		/* A whole frame: start the next one whatever happens to this. */
		len = ps->frame_len;
		ps->hdr_got = 0;
		if (len < PASST_FRAME_MIN)
			continue; /* runt: not worth the guest's buffer */
		if (skip > sizeof(zero) || skip + len > room) {
			ps->rx_dropped++;
			errno = EMSGSIZE;
			return -1;
		}
		iov_from_buf(iov, nr, 0, zero, skip);
		iov_from_buf(iov, nr, skip, ps->rbuf, len);
		ps->rx_frames++;
		return (ssize_t)(skip + len);
	}
}

static void passt_out_cb(void *opaque, uint32_t events);

static void passt_watch_out(struct passt_stream *ps, bool on)
{
	if (!ps->loop || ps->out_fd < 0 || on == ps->out_watched)
		return;
	if (on) {
		if (evloop_add(ps->loop, ps->out_fd, EPOLLOUT, passt_out_cb, ps))
			return; /* the next tx flushes instead */
	} else {
		evloop_del(ps->loop, ps->out_fd);
	}
	ps->out_watched = on;
}

int passt_flush(struct passt_stream *ps)
{
	while (ps->woff < ps->wlen) {
		ssize_t n = send(ps->fd, ps->wbuf + ps->woff, ps->wlen - ps->woff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				passt_watch_out(ps, true);
				return -EAGAIN;
			}
			passt_set_down(ps, "write failed: %s", strerror(errno));
			ps->wlen = ps->woff = 0;
			passt_watch_out(ps, false);
			return -EPIPE;
		}
		ps->woff += (size_t)n;
	}
	ps->wlen = ps->woff = 0;
	passt_watch_out(ps, false);
	return 0;
}

static void passt_out_cb(void *opaque, uint32_t events)
{
	struct passt_stream *ps = opaque;

	(void)events;
	if (ps->lock)
		pthread_mutex_lock(ps->lock);
	(void)passt_flush(ps);
	if (ps->lock)
		pthread_mutex_unlock(ps->lock);
}

ssize_t passt_writev(struct passt_stream *ps, const struct iovec *iov, unsigned nr, size_t skip)
{
	struct iovec out[1 + 1024];
	size_t total = 0, len, off = 0;
	unsigned k = 1;
	uint8_t hdr[4];
	ssize_t n;

	if (ps->down) {
		errno = EPIPE;
		return -1;
	}
	if (ps->wlen && passt_flush(ps) < 0) {
		ps->tx_dropped++;
		errno = ps->down ? EPIPE : EAGAIN;
		return -1;
	}
	for (unsigned i = 0; i < nr; i++)
		total += iov[i].iov_len;
	if (total < skip || total - skip < PASST_FRAME_MIN || total - skip > PASST_FRAME_MAX ||
	    nr > 1024) {
		ps->tx_dropped++;
		errno = EMSGSIZE;
		return -1;
	}
	len = total - skip;
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
	out[0].iov_base = hdr;
	out[0].iov_len = sizeof(hdr);
	for (unsigned i = 0; i < nr; i++) {
		size_t l = iov[i].iov_len, s = 0;

		if (off + l <= skip) {
			off += l;
			continue;
		}
		if (off < skip)
			s = skip - off;
		out[k].iov_base = (uint8_t *)iov[i].iov_base + s;
		out[k].iov_len = l - s;
		k++;
		off += l;
	}
	{
		struct msghdr mh = { .msg_iov = out, .msg_iovlen = k };

		n = sendmsg(ps->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			ps->tx_dropped++; /* nothing went out: the stream is still whole */
			errno = EAGAIN;
			return -1;
		}
		passt_set_down(ps, "write failed: %s", strerror(errno));
		errno = EPIPE;
		return -1;
	}
	if ((size_t)n < 4 + len) {
		/* Part went out: the rest must follow before any other frame. */
		memcpy(ps->wbuf, hdr, sizeof(hdr));
		iov_to_buf(iov, nr, skip, ps->wbuf + 4, len);
		ps->wlen = 4 + len;
		ps->woff = (size_t)n;
		(void)passt_flush(ps);
	}
	ps->tx_frames++;
	return (ssize_t)len;
}

int passt_stream_attach(struct passt_stream *ps, struct evloop *loop, pthread_mutex_t *lock)
{
	ps->loop = loop;
	ps->lock = lock;
	ps->out_fd = fcntl(ps->fd, F_DUPFD_CLOEXEC, 3);
	return ps->out_fd < 0 ? -errno : 0;
}

void passt_stream_destroy(struct passt_stream *ps)
{
	passt_watch_out(ps, false);
	if (ps->out_fd >= 0)
		close(ps->out_fd);
	if (ps->fd >= 0)
		close(ps->fd);
	ps->fd = ps->out_fd = -1;
	free(ps->rbuf);
	free(ps->wbuf);
	ps->rbuf = ps->wbuf = NULL;
}
