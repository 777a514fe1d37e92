/* uidpool.c: per-worker uids from a configured range, round-robin. */
#include "uidpool.h"

#include <errno.h>
#include <stdlib.h>

int uidpool_init(struct uidpool *p, uint32_t base, uint32_t count)
{
	pthread_mutex_init(&p->lock, NULL);
	p->base = base;
	p->count = count;
	p->next = 0;
	p->used = count ? calloc(count, 1) : NULL;
	return count && !p->used ? -ENOMEM : 0;
}

void uidpool_destroy(struct uidpool *p)
{
	free(p->used);
	p->used = NULL;
	p->count = 0;
	pthread_mutex_destroy(&p->lock);
}

int64_t uidpool_take(struct uidpool *p)
{
	int64_t uid = -EAGAIN;

	pthread_mutex_lock(&p->lock);
	for (uint32_t i = 0; i < p->count; i++) {
		uint32_t slot = (p->next + i) % p->count;

		if (!p->used[slot]) {
			p->used[slot] = 1;
			p->next = (slot + 1) % p->count;
			uid = (int64_t)p->base + slot;
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return uid;
}

bool uidpool_claim(struct uidpool *p, uint32_t uid)
{
	bool in = uid >= p->base && uid - p->base < p->count;

	if (in) {
		pthread_mutex_lock(&p->lock);
		p->used[uid - p->base] = 1;
		pthread_mutex_unlock(&p->lock);
	}
	return in;
}

void uidpool_put(struct uidpool *p, uint32_t uid)
{
	if (uid < p->base || uid - p->base >= p->count)
		return;
	pthread_mutex_lock(&p->lock);
	p->used[uid - p->base] = 0;
	pthread_mutex_unlock(&p->lock);
}
