/* memorder_sample.c: the save's write sample (memorder_sample.h), on the
 * live migration's dirty log (vmm/migrate/dirty.h). */
#include "state/memorder_sample.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "migrate/dirty.h"
#include "state/memorder.h"
#include "vm.h"

#define BITS (8 * sizeof(unsigned long))

static unsigned ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (unsigned)((now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000);
}

/* Rank the pages first seen in this round; returns how many. */
static uint64_t rank_new(const struct mig_dirty *d, uint8_t *rank, uint8_t round)
{
	uint64_t added = 0;

	for (size_t i = 0; i < d->words; i++) {
		unsigned long w = d->bits[i];

		while (w) {
			uint64_t pg = i * BITS + (uint64_t)__builtin_ctzl(w);

			w &= w - 1;
			if (pg < d->npages && !rank[pg]) {
				rank[pg] = round;
				added++;
			}
		}
	}
	return added;
}

int mem_order_sample(struct vm *vm, unsigned max_ms, struct mem_order_sample *s)
{
	const struct timespec tick = { 0, MEM_ORDER_SAMPLE_ROUND_MS * 1000000L };
	struct mig_dirty d;
	struct timespec t0;
	unsigned last_new = 0; /* ms: when a round last found new pages */
	char err[200];
	int ret;

	memset(s, 0, sizeof(*s));
	s->rank = calloc((size_t)(vm->mem.size / 4096), 1);
	if (!s->rank)
		return -ENOMEM;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = mig_dirty_start(&d, vm, err, sizeof(err));
	if (ret) {
		log_warn("save: no write sample (%s): the state file gets no memory order", err);
		free(s->rank);
		s->rank = NULL;
		return ret;
	}
	d.keep_writable = true;
	while (!vm_exiting(vm) && s->rounds < MEM_ORDER_MAX_RANK) {
		uint64_t added;

		clock_nanosleep(CLOCK_MONOTONIC, 0, &tick, NULL);
		ret = mig_dirty_sync(&d, err, sizeof(err));
		if (ret) {
			log_warn("save: write sample: %s", err);
			break;
		}
		added = rank_new(&d, s->rank, (uint8_t)++s->rounds);
		s->pages += added;
		s->ms = ms_since(&t0);
		last_new = added ? s->ms : last_new;
		if (s->ms >= max_ms || s->ms - last_new >= MEM_ORDER_SAMPLE_QUIET_MS)
			break;
	}
	mig_dirty_stop(&d);
	s->ms = ms_since(&t0);
	log_debug("save: write sample: %llu pages in %u rounds, %u ms",
		  (unsigned long long)s->pages, s->rounds, s->ms);
	return 0;
}
