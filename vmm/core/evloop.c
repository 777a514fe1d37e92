/* evloop.c: epoll-based I/O thread for device back ends. */
#include "evloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct evloop_watch {
	int fd;
	evloop_fn fn;
	void *opaque;
	bool dead;
	struct evloop_watch *next;
};

struct evloop {
	int epfd;
	int stopfd;
	pthread_mutex_t lock;     /* protects watches and `running` */
	pthread_cond_t idle;      /* signalled when a dispatch finishes */
	struct evloop_watch *watches;
	bool in_batch;            /* the loop is dispatching an epoll batch */
	pthread_t thread;
	bool in_loop;
};

int evloop_create(struct evloop **out)
{
	struct evloop *l = calloc(1, sizeof(*l));
	struct epoll_event ev = { .events = EPOLLIN };

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->stopfd < 0)
		goto fail;
	ev.data.ptr = NULL;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->stopfd, &ev) < 0)
		goto fail;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->idle, NULL);
	*out = l;
	return 0;
fail: {
	int err = -errno;

	if (l->epfd >= 0)
		close(l->epfd);
	if (l->stopfd >= 0)
		close(l->stopfd);
	free(l);
	return err;
}
}

void evloop_destroy(struct evloop *l)
{
	struct evloop_watch *w, *n;

	if (!l)
		return;
	for (w = l->watches; w; w = n) {
		n = w->next;
		free(w);
	}
	close(l->epfd);
	close(l->stopfd);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->idle);
	free(l);
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *opaque)
{
	struct evloop_watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = events };

	if (!w)
		return -ENOMEM;
	w->fd = fd;
	w->fn = fn;
	w->opaque = opaque;
	ev.data.ptr = w;
	pthread_mutex_lock(&l->lock);
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		pthread_mutex_unlock(&l->lock);
		free(w);
		return err;
	}
	w->next = l->watches;
	l->watches = w;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/* Free watches marked dead (lock held, no batch in flight). */
static void evloop_reap(struct evloop *l)
{
	struct evloop_watch **pp = &l->watches;

	while (*pp) {
		if ((*pp)->dead) {
			struct evloop_watch *w = *pp;

			*pp = w->next;
			free(w);
		} else {
			pp = &(*pp)->next;
		}
	}
}

int evloop_del(struct evloop *l, int fd)
{
	struct evloop_watch *w;
	bool on_loop;

	pthread_mutex_lock(&l->lock);
	for (w = l->watches; w; w = w->next)
		if (w->fd == fd && !w->dead)
			break;
	if (!w) {
		pthread_mutex_unlock(&l->lock);
		return -ENOENT;
	}
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	w->dead = true;
	on_loop = l->in_loop && pthread_equal(pthread_self(), l->thread);
	if (!on_loop) {
		/* The current batch may still hold a pointer to w, and its callback
		 * may be running: wait for the batch to end, then free. */
		while (l->in_batch)
			pthread_cond_wait(&l->idle, &l->lock);
		evloop_reap(l);
	}
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int evloop_run(struct evloop *l)
{
	struct epoll_event evs[32];

	pthread_mutex_lock(&l->lock);
	l->thread = pthread_self();
	l->in_loop = true;
	pthread_mutex_unlock(&l->lock);
	for (;;) {
		int n = epoll_wait(l->epfd, evs, 32, -1);
		bool stop = false;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		pthread_mutex_lock(&l->lock);
		l->in_batch = true;
		pthread_mutex_unlock(&l->lock);
		for (int i = 0; i < n; i++) {
			struct evloop_watch *w = evs[i].data.ptr;
			bool dead;

			if (!w) {
				uint64_t v;

				if (read(l->stopfd, &v, sizeof(v)) < 0) {
					/* Already drained: nothing to do. */
				}
				stop = true;
				continue;
			}
			pthread_mutex_lock(&l->lock);
			dead = w->dead;
			pthread_mutex_unlock(&l->lock);
			if (!dead)
				w->fn(w->opaque, evs[i].events);
		}
		pthread_mutex_lock(&l->lock);
		l->in_batch = false;
		evloop_reap(l);
		pthread_cond_broadcast(&l->idle);
		if (stop)
			l->in_loop = false;
		pthread_mutex_unlock(&l->lock);
		if (stop)
			return 0;
	}
}

void evloop_stop(struct evloop *l)
{
	uint64_t one = 1;

	if (write(l->stopfd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow from a handful of stops. */
	}
}
