/* blkwriter.c: random writes at a chosen rate, every 4 KiB stamped with its
 * write's number and time, for replication's RPO (bench/replica.py) and
 * anything else that must find out which writes a copy of the disk holds.
 *   mode=write bs=B kbs=K qd=Q span_mib=M seed=S seconds=N report_ms=P
 *        flush_ms=F verify=1: write n = 1, 2, ... of B bytes (4 KiB to
 *        1 MiB, a multiple of 4 KiB) to slot hash(n, S) of the first M MiB,
 *        Q in flight, paced to K kB/s (1000 bytes; 0: as fast as the disk
 *        takes them); a FLUSH every F ms (0: none). Every P ms (default
 *        100) it prints "blkwriter: t=T done=D issued=I inflight=F": its
 *        clock in ns since the start and D, such that writes 1..D have all
 *        completed. N = 0: for
 *        ever; otherwise it stops after N s, prints "blkwriter: wrote
 *        n=... bytes=... us=... kbs=..." and, with verify=1, reads the
 *        span back: every slot must hold exactly the last write to it.
 *   mode=check bs=B span_mib=M seed=S: reads the span and checks every
 *        4 KiB unit is zeroes or a whole stamp of this seed at its place;
 *        prints "blkwriter: check units=U stamped=W newest=N t=T".
 * The stamp (4 KiB unit u of write n): u64 magic "CELLWRT", n, u, seed,
 * t (ns since the start, when the write was made), B; pseudo-random words
 * from (seed, n, u); a zero word and a crc32 of the first 4092 bytes.
 * bench/replica.py reads the same stamps from the target's points.
 *
 * All of it runs in ring 3 with completions polled from the used ring, so
 * the only ring-0 (emulated here) work is the sleep between paced writes:
 * one LAPIC-timer wake-up per millisecond ahead of the schedule. */
#include "virtio_blk.h"

TEST_PROGRAM("blkwriter");

#define UNIT 4096u
#define WRT_MAGIC 0x5452574c4c4543ull /* "CELLWRT" */
#define LAPIC_TIMER_PERIODIC (1u << 17)

struct writer {
	struct vblk b;
	uint64_t seed, bs, slots, hz, t0;
	bool oneshot;
	uint64_t n_of[VBLK_MAX_INFLIGHT];	/* the write in each request slot */
	uint8_t *bufs;
};

static uint64_t now_ns(const struct writer *w)
{
	uint64_t d = rdtsc() - w->t0;
	return d / w->hz * 1000000000ull + d % w->hz * 1000000000ull / w->hz;
}

static uint64_t slot_of(uint64_t n, uint64_t seed, uint64_t slots)
{
	uint64_t st = n * 0x9E3779B97F4A7C15ull ^ seed;
	return splitmix64(&st) % slots;
}

static void stamp(uint8_t *p, uint64_t n, uint64_t unit, uint64_t seed, uint64_t t, uint64_t bs)
{
	uint64_t *q = (uint64_t *)p, st = seed ^ n * 0xD1B54A32D192ED03ull ^ unit;
	q[0] = WRT_MAGIC;
	q[1] = n;
	q[2] = unit;
	q[3] = seed;
	q[4] = t;
	q[5] = bs;
	for (unsigned i = 6; i < UNIT / 8 - 1; i++)
		q[i] = splitmix64(&st);
	((uint32_t *)p)[UNIT / 4 - 2] = 0;
	((uint32_t *)p)[UNIT / 4 - 1] = crc32(p, UNIT - 4);
}

/* 0: zeroes; 1: a good stamp of write *n made at *t; -1: anything else. */
static int unit_check(const uint8_t *p, uint64_t unit, const struct writer *w, uint64_t *n,
		      uint64_t *t)
{
	const uint64_t *q = (const uint64_t *)p;
	if (!q[0] && !q[1] && !q[2])
		return 0;
	*n = q[1];
	*t = q[4];
	if (q[0] != WRT_MAGIC || q[2] != unit || q[3] != w->seed || q[5] != w->bs ||
	    ((const uint32_t *)p)[UNIT / 4 - 1] != crc32(p, UNIT - 4))
		return -1;
	/* The write numbered n went to this unit's slot. */
	return slot_of(q[1], w->seed, w->slots) == unit * UNIT / w->bs ? 1 : -1;
}

static void flush_now(struct writer *w)
{
	int st = vblk_flush(&w->b);
	if (st)
		fail("FLUSH: status %d", st);
}

/* Sleeps about ms (1 to 1000) in ring 0 (sti; hlt) with the LAPIC timer
 * periodic rather than one-shot: with one-shots the guest stayed halted for
 * good twice in eight runs of the replication bench at 50 MB/s (hundreds of
 * naps a second; cause not found: a lost wake-up; docs/replica.md, "A guest
 * that stopped under replication load"), and a lost tick now costs one
 * more period instead of the run. nap=oneshot: the old way, to look again. */
static void nap(const struct writer *w, uint64_t ms)
{
	ms = ms > 1000 ? 1000 : ms;
	if (w->oneshot) { /* nap=oneshot: as it was, to study the lost wake-up */
		wait_irq_count(WATCHDOG_VECTOR, irq_counts[WATCHDOG_VECTOR], (uint32_t)ms);
		return;
	}
	uint64_t until = rdtsc() + w->hz / 1000 * ms;
	lapic_write(LAPIC_TIMER_DIV, 0xB);
	lapic_write(LAPIC_LVT_TIMER, WATCHDOG_VECTOR | LAPIC_TIMER_PERIODIC);
	lapic_write(LAPIC_TIMER_INIT, (uint32_t)(ms * 1000000));	/* KVM: 1 GHz */
	while (!tsc_expired(until))
		wait_for_interrupt();
	lapic_write(LAPIC_TIMER_INIT, 0);
}

static uint64_t write_loop(struct writer *w, unsigned qd, uint64_t kbs, uint64_t seconds,
			   uint64_t report_ms, uint64_t flush_ms)
{
	uint64_t issued = 0, inflight = 0, done_upto = 0, next_report = 0, next_flush = flush_ms;
	uint64_t end_ns = seconds * 1000000000ull;
	uint8_t *done = mem_alloc(VBLK_MAX_INFLIGHT * 4, 8); /* ring of completed writes */
	unsigned ring = VBLK_MAX_INFLIGHT * 4;

	memset(done, 0, ring);
	for (;;) {
		uint64_t t = now_ns(w);
		bool stopping = seconds && t >= end_ns;
		if (stopping && !inflight)
			break;
		if (t >= next_report) {
			printf("blkwriter: t=%lu done=%lu issued=%lu inflight=%lu before_hlt=%lu\n",
			       now_ns(w), done_upto, issued, inflight, (uint64_t)irq_before_hlt);
			next_report = t + report_ms * 1000000ull;
		}
		if (flush_ms && t >= next_flush * 1000000ull) {
			while (inflight) {	/* a FLUSH covers completed writes */
				int s = vblk_poll(&w->b);
				if (s < 0) {
					cpu_relax();
					continue;
				}
				if (w->b.reqs[s].status)
					fail("write %lu: status %d", w->n_of[s], w->b.reqs[s].status);
				done[w->n_of[s] % ring] = 1;
				inflight--;
			}
			flush_now(w);
			next_flush = t / 1000000ull + flush_ms;
		}
		/* Issue what the pace allows: bytes so far <= rate x time. */
		bool kicked = false;
		while (!stopping && inflight < qd && issued + qd < done_upto + ring &&
		       (!kbs || (issued + 1) * w->bs <= t / 1000000ull * kbs + w->bs)) {
			int s = vblk_free_slot(&w->b);
			if (s < 0)
				break;
			uint64_t n = ++issued, slot = slot_of(n, w->seed, w->slots);
			uint8_t *p = w->bufs + (uint64_t)s * w->bs;
			uint64_t tn = now_ns(w);
			for (uint64_t i = 0; i < w->bs / UNIT; i++)
				stamp(p + i * UNIT, n, slot * (w->bs / UNIT) + i, w->seed, tn, w->bs);
			w->n_of[s] = n;
			if (!vblk_submit(&w->b, s, VIRTIO_BLK_T_OUT, slot * (w->bs / 512), p,
					 (uint32_t)w->bs))
				fail("ring full");
			inflight++;
			kicked = true;
		}
		if (kicked)
			vblk_kick(&w->b);
		int s;
		bool any = false;
		while ((s = vblk_poll(&w->b)) >= 0) {
			if (w->b.reqs[s].status)
				fail("write %lu: status %d", w->n_of[s], w->b.reqs[s].status);
			done[w->n_of[s] % ring] = 1;
			inflight--;
			any = true;
		}
		while (done_upto < issued && done[(done_upto + 1) % ring]) {
			done[(done_upto + 1) % ring] = 0;
			done_upto++;
		}
		/* Ahead of the pace with nothing to reap: sleep until the next
		 * write is due rather than spin (what is in flight is reaped
		 * after the nap). */
		uint64_t due_ms = kbs ? ((issued + 1) * w->bs - w->bs) / kbs + 1 : 0;
		if (!any && kbs && !stopping && due_ms > now_ns(w) / 1000000ull)
			nap(w, due_ms - now_ns(w) / 1000000ull);
		else if (!any)
			cpu_relax();
	}
	if (flush_ms)
		flush_now(w);
	uint64_t us = now_ns(w) / 1000;
	printf("blkwriter: t=%lu done=%lu\n", now_ns(w), done_upto);
	printf("blkwriter: wrote n=%lu bytes=%lu us=%lu kbs=%lu\n", issued, issued * w->bs, us,
	       us ? issued * w->bs * 1000 / us : 0);
	return issued;
}

/* Reads the span back, unit by unit through bs-sized reads. */
static void scan(struct writer *w, uint64_t upto)
{
	uint64_t *last = NULL, units = w->slots * (w->bs / UNIT);
	uint64_t bad = 0, stamped = 0, newest = 0, newest_t = 0;
	uint8_t *p = w->bufs;

	if (upto) {	/* verify: each slot holds exactly its last write */
		last = mem_alloc(w->slots * 8, 8);
		memset(last, 0, w->slots * 8);
		for (uint64_t n = 1; n <= upto; n++)
			last[slot_of(n, w->seed, w->slots)] = n;
	}
	for (uint64_t s = 0; s < w->slots; s++) {
		if (vblk_rw(&w->b, VIRTIO_BLK_T_IN, s * (w->bs / 512), p, w->bs))
			fail("read slot %lu", s);
		for (uint64_t i = 0; i < w->bs / UNIT; i++) {
			uint64_t u = s * (w->bs / UNIT) + i, n = 0, t = 0;
			int r = unit_check(p + i * UNIT, u, w, &n, &t);
			bool ok = last ? (last[s] ? r == 1 && n == last[s] : r == 0) : r >= 0;
			if (!ok && bad++ < 5)
				printf("blkwriter: unit %lu: %s (write %lu)\n", u,
				       r < 0 ? "torn or foreign" : "not the last write", n);
			if (r == 1) {
				stamped++;
				if (n > newest) {
					newest = n;
					newest_t = t;
				}
			}
		}
	}
	printf("blkwriter: check units=%lu stamped=%lu newest=%lu t=%lu\n", units, stamped, newest,
	       newest_t);
	if (last)
		report(bad == 0, "every slot holds its last write of %lu (%lu bad units)", upto, bad);
	else
		report(bad == 0, "%lu units stamped, %lu bad", stamped, bad);
}

int main(int argc, char **argv)
{
	struct writer w = { 0 };
	const char *mode = param_str("mode", "write");
	unsigned qd = (unsigned)param_u64("qd", 32);
	uint64_t span = param_u64("span_mib", 16) << 20;

	w.seed = param_u64("seed", 1);
	w.bs = param_u64("bs", UNIT);
	w.oneshot = !strcmp(param_str("nap", "periodic"), "oneshot");
	wait_hlt_fixup = param_u64("fixup", 1) != 0;
	if (!vblk_open(&w.b, 0))
		fail("no virtio-blk device on the command line ('%s')", cmdline());
	if (w.bs < UNIT || w.bs % UNIT || w.bs > w.b.max_bytes || w.bs > (1u << 20))
		fail("bs=%lu: a multiple of 4 KiB up to %u", w.bs, w.b.max_bytes);
	if (!qd || qd > VBLK_MAX_INFLIGHT)
		fail("qd=%u out of range (1-%u)", qd, VBLK_MAX_INFLIGHT);
	if (!span || span % w.bs || span / 512 > w.b.capacity)
		fail("span_mib=%lu: does not fit the disk or is not a whole number of bs", span >> 20);
	w.slots = span / w.bs;
	w.hz = tsc_hz();
	w.bufs = mem_alloc((uint64_t)qd * w.bs, 4096);
	lapic_setup();
	w.t0 = rdtsc();
	if (!strcmp(mode, "write")) {
		uint64_t kbs = param_u64("kbs", 0), seconds = param_u64("seconds", 0);
		printf("blkwriter: write bs=%lu kbs=%lu qd=%u span_mib=%lu seed=%lu\n", w.bs, kbs, qd,
		       span >> 20, w.seed);
		uint64_t n = write_loop(&w, qd, kbs, seconds, param_u64("report_ms", 100),
					param_u64("flush_ms", 0));
		if (param_u64("verify", 0))
			scan(&w, n);
	} else if (!strcmp(mode, "check")) {
		scan(&w, 0);
	} else {
		fail("unknown mode=%s (write, check)", mode);
	}
	return report_summary();
}
