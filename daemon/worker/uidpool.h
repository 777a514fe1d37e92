/* uidpool.h: the range of uids (and equal gids) cellad gives its workers,
 * one per running worker (sandbox_uid_base, sandbox_uid_count), so that no
 * two workers can signal, ptrace or read each other. Slots are handed out
 * round-robin: a freed uid is taken again as late as possible (the
 * deferred KVM teardown of a worker that ended may still run under it).
 * Thread-safe. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"

struct uidpool {
	pthread_mutex_t lock;
	uint32_t base, count, next;
	uint8_t *used; /* count flags */
};

/* count 0: an empty pool (every take fails). Returns 0 or -ENOMEM. */
int uidpool_init(struct uidpool *p, uint32_t base, uint32_t count) __must_check;
void uidpool_destroy(struct uidpool *p);
/* A free uid, now in use, or -EAGAIN when all are. */
int64_t uidpool_take(struct uidpool *p) __must_check;
/* Mark uid in use (an adopted worker's); false if it is not in the range. */
bool uidpool_claim(struct uidpool *p, uint32_t uid);
/* Give uid back (ignored outside the range). */
void uidpool_put(struct uidpool *p, uint32_t uid);
