/* net_rx_coalesce.c: virtio-net receive, moderated on the back end's side.
 * Under a steady stream the I/O thread empties the tap a few frames at a
 * time and sleeps in epoll until the next frame: on a nested host that
 * sleep and wake-up cost more than the frames (55 % of the I/O thread in
 * a profile of 60-byte frames, finish_task_switch after epoll_wait). When
 * a turn took at least NET_RX_COALESCE_MIN frames and left the back end
 * empty, the device stops watching it and looks again NET_RX_COALESCE_US
 * later, as a NIC's interrupt moderation (rx-usecs) does; a quiet link
 * (fewer frames per turn) is still served on the first frame. Frames that
 * come meanwhile wait in the back end's queue. Measured (docs/benchmarks.md):
 * 60-byte frames cost the I/O thread 555-627 ns each instead of 787-814,
 * with 200 us no better than 50. */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "virtio/net/net.h"
#include "vm.h"

static void net_rx_timer_cb(void *opaque, uint32_t events)
{
	struct net_queue *nq = opaque;
	struct virtio_dev *vd = &nq->net->vd;
	uint64_t ticks;

	pthread_mutex_lock(&vd->lock);
	if (read(nq->rx_timer_fd, &ticks, sizeof(ticks)) < 0) {
		/* Nothing to drain: already read. */
	}
	if (nq->rx_waiting) {
		nq->rx_waiting = false;
		net_rx(nq);
	}
	pthread_mutex_unlock(&vd->lock);
}

bool net_rx_coalesce(struct net_queue *nq, unsigned frames)
{
	struct itimerspec its = { .it_value = { 0, NET_RX_COALESCE_US * 1000L } };

	if (nq->rx_timer_fd < 0 || frames < NET_RX_COALESCE_MIN)
		return false;
	if (!nq->rx_timer_watched) {
		if (evloop_add(nq->net->vd.vm->loop, nq->rx_timer_fd, EPOLLIN, net_rx_timer_cb, nq))
			return false;
		nq->rx_timer_watched = true;
	}
	if (timerfd_settime(nq->rx_timer_fd, 0, &its, NULL) < 0)
		return false;
	nq->rx_waiting = true;
	nq->rx_coalesced++;
	return true;
}

int net_rx_coalesce_init(struct net_queue *nq)
{
	nq->rx_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	return nq->rx_timer_fd < 0 ? -errno : 0;
}

void net_rx_coalesce_free(struct net_queue *nq)
{
	if (nq->rx_timer_watched)
		evloop_del(nq->net->vd.vm->loop, nq->rx_timer_fd);
	if (nq->rx_timer_fd >= 0)
		close(nq->rx_timer_fd);
	nq->rx_timer_fd = -1;
	nq->rx_timer_watched = nq->rx_waiting = false;
}
