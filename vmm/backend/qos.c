/* qos.c: token-bucket storage QoS (IOPS normalized to 8 KiB, bandwidth). */
#include "backend/qos.h"

#include <string.h>
#include <time.h>

#define NS_PER_S 1000000000ULL

uint64_t qos_op_cost(uint64_t bytes)
{
	uint64_t n = bytes / QOS_OP_BYTES + (bytes % QOS_OP_BYTES != 0);

	return n ? n : 1;
}

uint64_t qos_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t default_burst(uint64_t rate, uint64_t unit)
{
	uint64_t b = rate / 10;

	return b > unit ? b : unit;
}

static void bucket_refill(struct qos_bucket *b, uint64_t now_ns)
{
	__int128 full = (__int128)b->size * NS_PER_S;

	if (now_ns > b->last_ns && b->level < full) {
		/* rate tokens/s over dt ns is rate * dt nanotokens. */
		b->level += (__int128)b->rate * (now_ns - b->last_ns);
		if (b->level > full)
			b->level = full;
	}
	if (now_ns > b->last_ns)
		b->last_ns = now_ns;
}

static void bucket_set(struct qos_bucket *b, uint64_t rate, uint64_t burst, uint64_t unit,
		       uint64_t now_ns, bool fill)
{
	__int128 full;

	bucket_refill(b, now_ns);
	b->rate = rate;
	b->size = rate ? (burst ? burst : default_burst(rate, unit)) : 0;
	full = (__int128)b->size * NS_PER_S;
	if (fill || b->level > full)
		b->level = full;
	b->last_ns = now_ns;
}

void qos_init(struct qos *q, const struct qos_limits *l, uint64_t now_ns)
{
	memset(q, 0, sizeof(*q));
	q->lim = *l;
	bucket_set(&q->ops, l->iops, l->iops_burst, 1, now_ns, true);
	bucket_set(&q->bytes, l->bps, l->bps_burst, QOS_OP_BYTES, now_ns, true);
}

void qos_set(struct qos *q, const struct qos_limits *l, uint64_t now_ns)
{
	/* A bucket that was unlimited starts full; others keep their level. */
	bucket_set(&q->ops, l->iops, l->iops_burst, 1, now_ns, !q->ops.rate);
	bucket_set(&q->bytes, l->bps, l->bps_burst, QOS_OP_BYTES, now_ns, !q->bytes.rate);
	q->lim = *l;
}

bool qos_enabled(const struct qos *q)
{
	return q->ops.rate || q->bytes.rate;
}

/* 0 when the bucket can give `cost` now, else the wait in ns. */
static uint64_t bucket_wait(struct qos_bucket *b, uint64_t cost, uint64_t now_ns)
{
	__int128 need;
	uint64_t want;

	if (!b->rate)
		return 0;
	bucket_refill(b, now_ns);
	want = cost < b->size ? cost : b->size;
	need = (__int128)want * NS_PER_S - b->level;
	if (need <= 0)
		return 0;
	/* ceil(need / rate) ns, at least 1 */
	return (uint64_t)((need + b->rate - 1) / b->rate);
}

uint64_t qos_admit(struct qos *q, uint64_t ops, uint64_t bytes, uint64_t now_ns)
{
	uint64_t w1 = bucket_wait(&q->ops, ops, now_ns);
	uint64_t w2 = bucket_wait(&q->bytes, bytes, now_ns);

	if (w1 || w2) {
		q->delayed++;
		return w1 > w2 ? w1 : w2;
	}
	if (q->ops.rate)
		q->ops.level -= (__int128)ops * NS_PER_S;
	if (q->bytes.rate)
		q->bytes.level -= (__int128)bytes * NS_PER_S;
	q->admitted_ops += ops;
	q->admitted_bytes += bytes;
	return 0;
}
