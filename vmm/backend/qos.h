/* qos.h: storage QoS for one disk: an IOPS limit (normalized to 8 KiB, as
 * Hyper-V does: a request of n bytes counts ceil(n / 8192) operations, at
 * least 1) and a bandwidth limit, each a token bucket whose size is the
 * burst. Pure arithmetic on a caller-supplied clock (nanoseconds), so the
 * unit tests drive it with a fake one; the device keeps requests that are
 * not admitted in a FIFO and arms a timerfd for qos_admit's answer.
 * Not thread-safe: the owner (the disk's I/O thread) serialises calls.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define QOS_OP_BYTES 8192u /* the IOPS normalisation unit */

/* 0 = unlimited. A burst of 0 means the default: 100 ms worth of the rate
 * (at least one normalized operation / 8 KiB). */
struct qos_limits {
	uint64_t iops, iops_burst;
	uint64_t bps, bps_burst;
};

struct qos_bucket {
	uint64_t rate;        /* tokens per second; 0 = unlimited */
	uint64_t size;        /* tokens */
	__int128 level;       /* nanotokens (tokens * 1e9); negative = debt */
	uint64_t last_ns;     /* clock of the last refill */
};

struct qos {
	struct qos_limits lim; /* as configured (bursts as given) */
	struct qos_bucket ops, bytes;
	uint64_t admitted_ops, admitted_bytes, delayed; /* statistics */
};

/* Normalized operation count of a request of `bytes` bytes. */
uint64_t qos_op_cost(uint64_t bytes);

/* Set up with full buckets. */
void qos_init(struct qos *q, const struct qos_limits *l, uint64_t now_ns);
/* Change limits on the fly; the current levels are kept (clamped to the new sizes). */
void qos_set(struct qos *q, const struct qos_limits *l, uint64_t now_ns);
bool qos_enabled(const struct qos *q);

/* Admit a request of `ops` normalized operations and `bytes` bytes: returns
 * 0 and takes the tokens, or the nanoseconds to wait before it would be
 * admitted (nothing taken). A request bigger than a bucket is admitted when
 * that bucket is full, leaving it in debt, so any size eventually passes. */
uint64_t qos_admit(struct qos *q, uint64_t ops, uint64_t bytes, uint64_t now_ns);

/* The clock qos is driven with in production (CLOCK_MONOTONIC). */
uint64_t qos_now_ns(void);
