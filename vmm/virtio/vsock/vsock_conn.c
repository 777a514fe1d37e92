/* vsock_conn.c: virtio-vsock's connections: the Unix-socket host side, the
 * stream state machine and credit accounting (design: vsock.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "evloop.h"
#include "log.h"
#include "virtio/vsock/vsock.h"
#include "vm.h"

#define CONN_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool vsock_may_warn(struct vsock *vs)
{
	if (vs->warned >= VSOCK_WARN_MAX)
		return false;
	if (++vs->warned == VSOCK_WARN_MAX)
		log_warn("%s: further problems are counted, not logged", vs->vd.name);
	return true;
}

unsigned vsock_nr_conns(const struct vsock *vs)
{
	unsigned n = 0;

	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i].state != VC_FREE && vs->conns[i].state != VC_DEAD)
			n++;
	return n;
}

static void conn_cb(void *opaque, uint32_t events);

/* Release the slot: unwatch and close the socket (I/O thread, or a stopped
 * loop). */
static void conn_free(struct vconn *c)
{
	struct vsock *vs = c->vs;

	if (c->watched)
		evloop_del(vs->vd.vm->loop, c->fd);
	if (c->fd >= 0)
		close(c->fd);
	free(c->txbuf);
	memset(c, 0, sizeof(*c));
	c->vs = vs;
	c->fd = -1;
}

static void orphan_rst(struct vsock *vs, uint32_t host_port, uint32_t guest_port)
{
	if (vs->nr_orphans >= VSOCK_ORPHAN_MAX) {
		vs->n.dropped_rst++;
		return;
	}
	vs->orphans[vs->nr_orphans].src_port = host_port;
	vs->orphans[vs->nr_orphans].dst_port = guest_port;
	vs->nr_orphans++;
}

/* End a connection now: the host client's socket is closed; the guest gets
 * a RST when rst is set. */
static void conn_kill(struct vconn *c, bool rst)
{
	if (rst) {
		orphan_rst(c->vs, c->local_port, c->peer_port);
		c->vs->n.resets_sent++;
	}
	conn_free(c);
}

static struct vconn *conn_alloc(struct vsock *vs)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vconn *c = &vs->conns[i];

		if (c->state == VC_FREE) {
			c->vs = vs;
			c->fd = -1;
			return c;
		}
	}
	return NULL;
}

static struct vconn *conn_find(struct vsock *vs, uint32_t local_port, uint32_t peer_port)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vconn *c = &vs->conns[i];

		if ((c->state == VC_LOCAL_INIT || c->state == VC_ESTABLISHED) &&
		    c->local_port == local_port && c->peer_port == peer_port)
			return c;
	}
	return NULL;
}

static int conn_watch(struct vconn *c)
{
	int ret = evloop_add(c->vs->vd.vm->loop, c->fd, CONN_EVENTS, conn_cb, c);

	if (ret)
		return ret;
	c->watched = true;
	return 0;
}

static void timer_arm(struct vsock *vs, bool on)
{
	struct itimerspec its = { 0 };

	if (on == vs->timer_armed || vs->timer_fd < 0)
		return;
	if (on) {
		/* A quarter of the timeout, at most 0.5 s. */
		uint64_t tick = vs->connect_timeout_ns / 4;

		if (tick > 500000000ull)
			tick = 500000000ull;
		its.it_value.tv_nsec = (long)tick;
		its.it_interval.tv_nsec = (long)tick;
	}
	if (timerfd_settime(vs->timer_fd, 0, &its, NULL) == 0)
		vs->timer_armed = on;
}

static bool conn_established(const struct vconn *c)
{
	return c->state == VC_ESTABLISHED;
}

/* Both directions are over: the guest gets its RST, the client EOF. */
static void conn_maybe_finish(struct vconn *c)
{
	if (conn_established(c) && c->host_eof && c->shut_sent && c->peer_no_send && !c->tx_len)
		conn_kill(c, true);
}

/* Write what the ring buffer holds to the host socket. Returns false when
 * the connection was killed. */
static bool conn_flush(struct vconn *c)
{
	while (c->tx_len) {
		struct iovec iov[2];
		struct msghdr msg = { .msg_iov = iov };
		uint32_t first = VSOCK_CONN_BUF - c->tx_head;
		ssize_t n;

		if (first > c->tx_len)
			first = c->tx_len;
		iov[0] = (struct iovec){ c->txbuf + c->tx_head, first };
		iov[1] = (struct iovec){ c->txbuf, c->tx_len - first };
		msg.msg_iovlen = iov[1].iov_len ? 2 : 1;
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->writable = false;
			return true;
		}
		if (n <= 0) {
			conn_kill(c, true); /* the client went away */
			return false;
		}
		c->tx_head = (c->tx_head + (uint32_t)n) % VSOCK_CONN_BUF;
		c->tx_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
		c->vs->n.tx_bytes += (uint64_t)n;
	}
	if (c->peer_no_send && !c->host_wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
	if (c->fwd_cnt - c->fwd_advertised >= VSOCK_CONN_BUF / 4)
		c->pending |= VC_P_CREDIT;
	conn_maybe_finish(c);
	return true;
}

/* Guest data bytes [off, off + len) of the chain's readable part. */
static void conn_from_guest(struct vconn *c, const struct virtq_chain *c_, uint32_t off,
			    uint32_t len)
{
	struct iovec sl[VIRTQ_CHAIN_MAX];
	uint32_t done = 0;

	if (!c->txbuf) {
		c->txbuf = malloc(VSOCK_CONN_BUF);
		if (!c->txbuf) {
			conn_kill(c, true);
			return;
		}
	}
	if (!c->tx_len) {
		struct msghdr msg = { .msg_iov = sl };
		ssize_t n;

		msg.msg_iovlen = iov_slice(c_->iov, c_->nr_out, off, len, sl, VIRTQ_CHAIN_MAX);
		do
			n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			conn_kill(c, true);
			return;
		}
		if (n > 0) {
			done = (uint32_t)n;
			c->fwd_cnt += done;
			c->vs->n.tx_bytes += done;
		}
	}
	/* The rest waits in the ring (the credit check made room for it). */
	while (done < len) {
		uint32_t tail = (c->tx_head + c->tx_len) % VSOCK_CONN_BUF;
		uint32_t room = VSOCK_CONN_BUF - tail, want = len - done;
		size_t got;

		if (want > room)
			want = room;
		got = iov_to_buf(c_->iov, c_->nr_out, off + done, c->txbuf + tail, want);
		c->tx_len += (uint32_t)got;
		done += (uint32_t)got;
		if (got < want)
			break;
	}
	if (c->tx_len)
		conn_flush(c);
	else if (c->fwd_cnt - c->fwd_advertised >= VSOCK_CONN_BUF / 4)
		c->pending |= VC_P_CREDIT;
}

static void guest_connect(struct vsock *vs, const struct vsock_hdr *h)
{
	struct vconn *c = conn_alloc(vs);
	int fd;

	if (!c) {
		vs->n.refused++;
		orphan_rst(vs, h->dst_port, h->src_port);
		return;
	}
	fd = vsock_host_connect(vs, h->dst_port);
	if (fd < 0) {
		vs->n.refused++;
		if (vsock_may_warn(vs))
			log_info("%s: guest port %u to host port %u: %s", vs->vd.name, h->src_port,
				 h->dst_port, strerror(-fd));
		orphan_rst(vs, h->dst_port, h->src_port);
		return;
	}
	c->fd = fd;
	c->state = VC_ESTABLISHED;
	c->guest_initiated = true;
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->pending = VC_P_RESPONSE;
	if (conn_watch(c)) {
		conn_kill(c, true);
		return;
	}
	vs->n.guest_connects++;
}

void vsock_handle_tx(struct vsock *vs, const struct vsock_hdr *h, const struct virtq_chain *ch)
{
	struct vconn *c;

	if (h->op == VSOCK_OP_REQUEST) {
		c = conn_find(vs, h->dst_port, h->src_port);
		if (c) {
			/* A second REQUEST on a live pair: both ends are confused. */
			conn_kill(c, true);
			return;
		}
		guest_connect(vs, h);
		return;
	}
	c = conn_find(vs, h->dst_port, h->src_port);
	if (!c) {
		if (h->op != VSOCK_OP_RST) {
			vs->n.unknown++;
			orphan_rst(vs, h->dst_port, h->src_port);
		}
		return;
	}
	/* The guest's fwd_cnt may only move forward, and not past what it
	 * was sent. */
	if ((uint32_t)(h->fwd_cnt - c->peer_fwd_cnt) > (uint32_t)(c->rx_cnt - c->peer_fwd_cnt)) {
		vs->n.bad[VSOCK_BAD_CREDIT]++;
		if (vsock_may_warn(vs))
			log_warn("%s: port %u: fwd_cnt %u past the %u bytes sent: reset", vs->vd.name,
				 c->peer_port, h->fwd_cnt, c->rx_cnt);
		conn_kill(c, true);
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		if (c->state != VC_LOCAL_INIT) {
			conn_kill(c, true);
			return;
		}
		{
			char ok[32];
			int len = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);

			if (send(c->fd, ok, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT) != len) {
				conn_kill(c, true);
				return;
			}
		}
		c->state = VC_ESTABLISHED;
		c->deadline_ns = 0;
		break;
	case VSOCK_OP_RST:
		conn_kill(c, false);
		return;
	case VSOCK_OP_SHUTDOWN:
		if (h->flags & VSOCK_SHUTDOWN_RCV)
			c->peer_no_rcv = true;
		if (h->flags & VSOCK_SHUTDOWN_SEND)
			c->peer_no_send = true;
		if (c->peer_no_rcv && c->peer_no_send) {
			/* The guest closed: it waits for our RST. Hand the
			 * client what we can. */
			if (c->tx_len && c->state == VC_ESTABLISHED)
				conn_flush(c);
			if (c->state != VC_FREE)
				conn_kill(c, true);
			return;
		}
		if (c->state == VC_ESTABLISHED)
			conn_flush(c);
		return;
	case VSOCK_OP_RW:
		if (c->state != VC_ESTABLISHED || c->peer_no_send) {
			conn_kill(c, true);
			return;
		}
		if (c->tx_len + h->len > VSOCK_CONN_BUF) {
			vs->n.bad[VSOCK_BAD_CREDIT]++;
			if (vsock_may_warn(vs))
				log_warn("%s: port %u: %u bytes past the credit given: reset",
					 vs->vd.name, c->peer_port,
					 c->tx_len + h->len - VSOCK_CONN_BUF);
			conn_kill(c, true);
			return;
		}
		conn_from_guest(c, ch, VSOCK_HDR_LEN, h->len);
		return;
	case VSOCK_OP_CREDIT_REQUEST:
		c->pending |= VC_P_CREDIT;
		return;
	case VSOCK_OP_CREDIT_UPDATE:
	default:
		return;
	}
}

static void conn_hdr(struct vconn *c, struct vsock_hdr *h, uint16_t op, uint32_t len,
		     uint32_t flags)
{
	*h = (struct vsock_hdr){
		.src_cid = VSOCK_HOST_CID, .dst_cid = c->vs->cid, .src_port = c->local_port,
		.dst_port = c->peer_port, .len = len, .type = VSOCK_TYPE_STREAM, .op = op,
		.flags = flags, .buf_alloc = VSOCK_CONN_BUF, .fwd_cnt = c->fwd_cnt,
	};
	c->fwd_advertised = c->fwd_cnt;
}

static bool conn_may_read(const struct vconn *c)
{
	return conn_established(c) && c->readable && !c->host_eof &&
	       vsock_peer_free(c->peer_buf_alloc, c->peer_fwd_cnt, c->rx_cnt) > 0;
}

static bool conn_has_control(const struct vconn *c)
{
	return c->pending && (c->state == VC_LOCAL_INIT || c->state == VC_ESTABLISHED);
}

static bool rx_have_work(const struct vsock *vs)
{
	if (vs->nr_orphans)
		return true;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
		if (conn_has_control(&vs->conns[i]) || conn_may_read(&vs->conns[i]))
			return true;
	return false;
}

static uint32_t put_hdr(const struct virtq_chain *ch, const struct vsock_hdr *h)
{
	uint8_t raw[VSOCK_HDR_LEN];

	vsock_hdr_encode(h, raw);
	iov_from_buf(ch->iov + ch->nr_out, ch->nr_in, 0, raw, sizeof(raw));
	return VSOCK_HDR_LEN;
}

/* One control packet the connection owes, into the chain. */
static uint32_t conn_fill_control(struct vconn *c, const struct virtq_chain *ch)
{
	struct vsock_hdr h;

	if (c->pending & VC_P_REQUEST) {
		c->pending &= ~VC_P_REQUEST;
		conn_hdr(c, &h, VSOCK_OP_REQUEST, 0, 0);
	} else if (c->pending & VC_P_RESPONSE) {
		c->pending &= ~VC_P_RESPONSE;
		conn_hdr(c, &h, VSOCK_OP_RESPONSE, 0, 0);
	} else if (c->pending & VC_P_SHUTDOWN) {
		c->pending &= ~(VC_P_SHUTDOWN | VC_P_CREDIT);
		conn_hdr(c, &h, VSOCK_OP_SHUTDOWN, 0, VSOCK_SHUTDOWN_SEND);
		c->shut_sent = true;
	} else {
		c->pending &= ~VC_P_CREDIT;
		conn_hdr(c, &h, VSOCK_OP_CREDIT_UPDATE, 0, 0);
	}
	return put_hdr(ch, &h);
}

/* Host bytes into the chain: their count with the header's; 0 when there
 * were none (readiness used up, EOF noted, or the connection died: each
 * changes what rx_have_work sees); -1 when the chain has no room past the
 * header (a buffer only a control packet fits). */
static int64_t conn_fill_data(struct vconn *c, const struct virtq_chain *ch)
{
	struct iovec sl[VIRTQ_CHAIN_MAX];
	uint32_t room = ch->in_len - VSOCK_HDR_LEN;
	uint32_t credit = vsock_peer_free(c->peer_buf_alloc, c->peer_fwd_cnt, c->rx_cnt);
	struct vsock_hdr h;
	unsigned nsl;
	ssize_t n;

	if (room > credit)
		room = credit;
	if (room > VSOCK_MAX_PAYLOAD)
		room = VSOCK_MAX_PAYLOAD;
	if (!room)
		return -1;
	nsl = iov_slice(ch->iov + ch->nr_out, ch->nr_in, VSOCK_HDR_LEN, room, sl, VIRTQ_CHAIN_MAX);
	do
		n = readv(c->fd, sl, (int)nsl);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		c->readable = false;
		return 0;
	}
	if (n < 0) {
		conn_kill(c, true);
		return 0;
	}
	if (n == 0) {
		c->readable = false;
		c->host_eof = true;
		c->pending |= VC_P_SHUTDOWN;
		return 0;
	}
	conn_hdr(c, &h, VSOCK_OP_RW, (uint32_t)n, 0);
	c->rx_cnt += (uint32_t)n;
	c->vs->n.rx_bytes += (uint64_t)n;
	put_hdr(ch, &h);
	return VSOCK_HDR_LEN + (uint32_t)n;
}

/* Whatever is owed first, into one rx chain: orphan RSTs, then each
 * connection's control packets and data, round robin. The bytes written;
 * 0 when nothing was, but some connection's state moved (try again); -1
 * when what is owed does not fit this chain. */
static int64_t rx_fill(struct vsock *vs, const struct virtq_chain *ch)
{
	bool no_room = false;

	if (vs->nr_orphans) {
		struct vsock_hdr h = {
			.src_cid = VSOCK_HOST_CID, .dst_cid = vs->cid,
			.src_port = vs->orphans[0].src_port, .dst_port = vs->orphans[0].dst_port,
			.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST,
		};

		vs->nr_orphans--;
		memmove(&vs->orphans[0], &vs->orphans[1], vs->nr_orphans * sizeof(vs->orphans[0]));
		return put_hdr(ch, &h);
	}
	for (unsigned k = 0; k < VSOCK_MAX_CONNS; k++) {
		unsigned i = (vs->rr + k) % VSOCK_MAX_CONNS;
		struct vconn *c = &vs->conns[i];
		int64_t len = 0;

		if (conn_has_control(c))
			len = conn_fill_control(c, ch);
		else if (conn_may_read(c))
			len = conn_fill_data(c, ch);
		if (len < 0) {
			no_room = true;
			continue;
		}
		if (c->state == VC_ESTABLISHED)
			conn_maybe_finish(c);
		if (len) {
			vs->rr = (i + 1) % VSOCK_MAX_CONNS;
			return len;
		}
	}
	return no_room ? -1 : 0;
}

void vsock_rx_pump(struct vsock *vs)
{
	struct virtio_dev *vd = &vs->vd;
	struct virtq *vq = &vd->vqs[VSOCK_RXQ];
	struct virtq_chain *ch = vs->chain;
	struct virtq_error err;
	bool pushed = false;
	int ret = 0;

	if (!virtio_dev_running(vd, VSOCK_RXQ))
		return;
	while (rx_have_work(vs)) {
		int64_t len;

		ret = virtq_pop(vq, ch, &err);
		if (ret <= 0)
			break;
		/* A buffer must hold a header and some data: one that only a
		 * control packet fits would block the ring for data. */
		if (ch->nr_out || ch->in_len <= VSOCK_HDR_LEN) {
			vs->n.bad_rx++;
			if (vsock_may_warn(vs))
				log_warn("%s: an rx buffer of %u bytes (%u readable): returned empty",
					 vd->name, ch->in_len, ch->out_len);
			virtq_push(vq, ch->head, 0);
			pushed = true;
			continue;
		}
		len = rx_fill(vs, ch);
		if (len <= 0) {
			virtq_unpop(vq);
			if (len < 0)
				break; /* the next buffers the driver gives may fit */
			continue;
		}
		virtq_push(vq, ch->head, (uint32_t)len);
		pushed = true;
	}
	virtio_dev_pop_done(vd, VSOCK_RXQ, ret, &err, pushed);
}

/* The host client's "CONNECT <port>\n", a byte at a time so that nothing
 * after it is consumed. */
static void conn_hello(struct vconn *c)
{
	struct vsock *vs = c->vs;

	while (c->readable) {
		char ch;
		ssize_t n = read(c->fd, &ch, 1);
		uint32_t port;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->readable = false;
			return;
		}
		if (n <= 0) {
			conn_free(c);
			return;
		}
		if (ch != '\n') {
			if (c->line_len + 1 >= VSOCK_LINE_MAX) {
				vs->n.bad_hello++;
				conn_free(c);
				return;
			}
			c->line[c->line_len++] = ch;
			continue;
		}
		if (c->line_len && c->line[c->line_len - 1] == '\r')
			c->line_len--;
		if (!vsock_parse_connect(c->line, c->line_len, &port)) {
			vs->n.bad_hello++;
			if (vsock_may_warn(vs))
				log_info("%s: a host client sent %.*s, not CONNECT <port>: closed",
					 vs->vd.name, (int)c->line_len, c->line);
			conn_free(c);
			return;
		}
		/* A host port of our own, unused by any connection. */
		for (;;) {
			uint32_t p = vs->next_local_port++;
			bool taken = false;

			if (vs->next_local_port < VSOCK_LOCAL_PORT_BASE ||
			    vs->next_local_port == UINT32_MAX)
				vs->next_local_port = VSOCK_LOCAL_PORT_BASE;
			for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
				if (vs->conns[i].state != VC_FREE && vs->conns[i].local_port == p)
					taken = true;
			if (!taken) {
				c->local_port = p;
				break;
			}
		}
		c->peer_port = port;
		c->state = VC_LOCAL_INIT;
		c->pending = VC_P_REQUEST;
		c->deadline_ns = now_ns() + vs->connect_timeout_ns;
		vs->n.host_connects++;
		timer_arm(vs, true);
		return;
	}
}

void vsock_conn_event(struct vconn *c, uint32_t events)
{
	if (c->state == VC_DEAD) {
		conn_free(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR))
		c->readable = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->writable = true;
	switch (c->state) {
	case VC_HOST_HELLO:
		conn_hello(c);
		break;
	case VC_LOCAL_INIT:
		if (events & (EPOLLHUP | EPOLLERR))
			conn_kill(c, true); /* the client gave up waiting */
		break;
	case VC_ESTABLISHED:
		if (c->writable && c->tx_len)
			conn_flush(c);
		break;
	default:
		break;
	}
}

static void conn_cb(void *opaque, uint32_t events)
{
	struct vconn *c = opaque;
	struct vsock *vs = c->vs;

	pthread_mutex_lock(&vs->vd.lock);
	vsock_conn_event(c, events);
	vsock_rx_pump(vs);
	pthread_mutex_unlock(&vs->vd.lock);
}

void vsock_accept(struct vsock *vs)
{
	for (;;) {
		int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct vconn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		c = conn_alloc(vs);
		if (!c) {
			vs->n.refused++;
			if (vsock_may_warn(vs))
				log_warn("%s: %u connections: a host client refused", vs->vd.name,
					 VSOCK_MAX_CONNS);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = VC_HOST_HELLO;
		if (conn_watch(c)) {
			conn_free(c);
			continue;
		}
	}
}

void vsock_check_deadlines(struct vsock *vs)
{
	uint64_t now = now_ns();
	bool left = false;

	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vconn *c = &vs->conns[i];

		if (c->state != VC_LOCAL_INIT || !c->deadline_ns)
			continue;
		if (now >= c->deadline_ns) {
			vs->n.timeouts++;
			conn_kill(c, true);
		} else {
			left = true;
		}
	}
	if (!left)
		timer_arm(vs, false);
}

void vsock_reset_conns(struct vsock *vs)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vconn *c = &vs->conns[i];

		if (c->state == VC_FREE || c->state == VC_DEAD)
			continue;
		if (!c->watched) {
			conn_free(c);
			continue;
		}
		/* Wakes the watch: the loop closes it (vsock_conn_event). */
		shutdown(c->fd, SHUT_RDWR);
		c->state = VC_DEAD;
		c->pending = 0;
		c->deadline_ns = 0;
	}
	vs->nr_orphans = 0;
}

void vsock_close_all(struct vsock *vs)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i].state != VC_FREE)
			conn_free(&vs->conns[i]);
}
