/* test_fence.c: daemon/pool/fence.c: the settings' check (the inequality of
 * docs/pool.md, "Fencing: the timing argument"), table-driven timelines of
 * renewals for both isolation policies, the survivor's start rule, and the
 * safety property on randomized timelines: for any renewal outcomes,
 * latencies, late wake-ups and clock rates within the drift bound, the old
 * owner's HA VMs are dead before the earliest moment a new owner may start
 * them. The property is checked against settings that break the inequality
 * too, to show that it can fail. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fence.h"

static struct fence_settings defaults(void)
{
	struct fence_settings s;

	fence_settings_default(&s);
	return s;
}

static void test_defaults(void **unused)
{
	struct fence_settings s = defaults();
	char err[300];

	(void)unused;
	assert_int_equal(s.ttl_ms, 5000);
	assert_int_equal(s.renew_ms, 1000);
	assert_int_equal(s.policy, FENCE_RESTART);
	/* (F + 0) / 0.999 + 1500 + 500 < 5000 / 1.001: F <= 2992. */
	assert_int_equal(fence_max_ms(&s), 2992);
	assert_int_equal(s.fence_ms, 2992);
	s.fence_ms = 2992;
	assert_int_equal(fence_settings_check(&s, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	s.fence_ms = 2993;
	assert_int_equal(fence_settings_check(&s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "fence_ms 2993 is unsafe"));
	assert_non_null(strstr(err, "at most 2992"));
	/* The failover bound of the issue: <= 10 s at p99. */
	s = defaults();
	assert_int_equal(fence_failover_bound_ms(&s), 1000 + 5005 + 500);
	assert_true(fence_failover_bound_ms(&s) <= 10000);
	/* Without drift, the inequality is F + K + M < T. */
	s.drift_ppm = 0;
	s.fence_ms = 0;
	assert_int_equal(fence_settings_check(&s, err, sizeof(err)), 0);
	assert_int_equal(s.fence_ms, 2999);
	assert_string_equal(fence_action_name(FENCE_STOP_BY_DEADLINE), "fence");
	assert_string_equal(fence_phase_name(FENCE_RIDING), "riding-through");
	assert_string_equal(fence_phase_name((enum fence_phase)42), "?");
}

/* Defaults for every whole-second TTL from etcd's minimum pass the check;
 * from the default TTL up only the TTL differs from the defaults. */
static void test_defaults_for_ttl(void **unused)
{
	(void)unused;
	for (uint32_t t = 2000; t <= 300000; t += 1000) {
		struct fence_settings s;
		char err[200];

		fence_settings_for_ttl(&s, t);
		assert_int_equal(s.ttl_ms, t);
		assert_int_equal(fence_settings_check(&s, err, sizeof(err)), 0);
		assert_true(s.fence_ms > 2 * s.renew_ms);
		if (t >= FENCE_DEFAULT_TTL_MS)
			assert_int_equal(s.renew_ms, FENCE_DEFAULT_RENEW_MS);
	}
}

static void test_settings_refused(void **unused)
{
	static const struct {
		struct fence_settings s;
		const char *error; /* NULL: accepted */
	} cases[] = {
		{ { .ttl_ms = 2500, .renew_ms = 500, .kill_ms = 100 }, "whole seconds" },
		{ { .ttl_ms = 1000, .renew_ms = 100, .kill_ms = 100 }, "ttl_ms 1000" },
		{ { .ttl_ms = 7200000, .renew_ms = 1000, .kill_ms = 100 }, "ttl_ms 7200000" },
		{ { .ttl_ms = 5000, .renew_ms = 50, .kill_ms = 100 }, "renew_ms 50" },
		{ { .ttl_ms = 5000, .renew_ms = 5000, .kill_ms = 100 }, "renew_ms 5000" },
		{ { .ttl_ms = 5000, .renew_ms = 1000, .kill_ms = 0 }, "kill_ms 0" },
		{ { .ttl_ms = 5000, .renew_ms = 1000, .kill_ms = 100, .drift_ppm = 200000 }, "drift_ppm" },
		{ { .ttl_ms = 5000, .renew_ms = 1000, .kill_ms = 100, .policy = 7 }, "policy 7" },
		{ { .ttl_ms = 5000, .renew_ms = 1000, .kill_ms = 100, .policy = FENCE_RIDE_THROUGH,
		    .ride_through_ms = 500 }, "ride_through_ms 500" },
		{ { .ttl_ms = 2000, .renew_ms = 500, .kill_ms = 1500, .margin_ms = 500 }, "no safe fence time" },
		/* Two renewals must fit before fencing: 1600 * 2 > 2992. */
		{ { .ttl_ms = 5000, .renew_ms = 1600, .kill_ms = 1500, .margin_ms = 500,
		    .drift_ppm = 1000 }, "renew at most every 1496 ms" },
		{ { .ttl_ms = 5000, .renew_ms = 1400, .kill_ms = 1500, .margin_ms = 500,
		    .drift_ppm = 1000 }, NULL },
		/* A generous kill time needs a longer lease. */
		{ { .ttl_ms = 4000, .renew_ms = 1000, .kill_ms = 4000 }, "no safe fence time" },
		{ { .ttl_ms = 4000, .renew_ms = 1000, .kill_ms = 3000 }, "two keepalives must fit" },
		{ { .ttl_ms = 4000, .renew_ms = 1000, .kill_ms = 1000, .fence_ms = 3000 }, "fence_ms 3000" },
		{ { .ttl_ms = 4000, .renew_ms = 1000, .kill_ms = 1000, .fence_ms = 2999 }, NULL },
		{ { .ttl_ms = 10000, .renew_ms = 2000, .kill_ms = 2000, .margin_ms = 1000,
		    .drift_ppm = 500, .policy = FENCE_RIDE_THROUGH, .ride_through_ms = 30000 }, NULL },
	};
	char err[400];

	(void)unused;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fence_settings s = cases[i].s;
		int ret = fence_settings_check(&s, err, sizeof(err));

		if (!cases[i].error) {
			if (ret)
				fail_msg("case %zu refused: %s", i, err);
			assert_true(s.fence_ms >= 2 * s.renew_ms);
			continue;
		}
		assert_int_equal(ret, -EINVAL);
		if (!strstr(err, cases[i].error))
			fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, cases[i].error);
	}
}

static void test_ride_through_bound(void **unused)
{
	struct fence_settings s = defaults();
	char err[300];

	(void)unused;
	s.policy = FENCE_RIDE_THROUGH;
	s.ride_through_ms = 30000;
	s.fence_ms = 0;
	assert_int_equal(fence_settings_check(&s, err, sizeof(err)), 0);
	/* The wait of 30 s runs on two clocks: the drift takes about
	 * 2 * 0.001 * 35 s = 70 ms more off the fence time. */
	assert_true(s.fence_ms <= 2992 - 55 && s.fence_ms > 2992 - 80);
	assert_int_equal(fence_failover_bound_ms(&s), 1000 + 35035 + 500);
	uint64_t nb;

	assert_false(fence_may_start(&s, 100000, 129999, &nb));
	assert_int_equal(nb, 130000);
	assert_true(fence_may_start(&s, 100000, 130000, &nb));
	s.policy = FENCE_RESTART;
	assert_true(fence_may_start(&s, 100000, 100000, &nb));
	assert_int_equal(nb, 100000);
	assert_true(fence_may_start(&s, 100000, 100000, NULL));
}

/* Timelines: events at times, and the decision expected after each. */
enum ev { STEP, SENT, OK, OK_SHORT, GONE, STOPPED, GRANTED };

struct tl_event {
	uint64_t t;
	enum ev ev;
	uint64_t sent;            /* OK, GRANTED: the request's send time */
	int action, phase;        /* expected at t after the event; -1: not checked */
	int64_t fence_at;         /* expected; -1: not checked */
};

struct timeline {
	const char *name;
	enum fence_policy policy;
	uint32_t ride_ms;
	struct tl_event ev[16];
};

#define K FENCE_KEEP_RUNNING
#define RN FENCE_RENEW_NOW
#define ST FENCE_STOP_BY_DEADLINE
#define FD FENCE_FENCED

static const struct timeline timelines[] = {
	{ "restart: renewals go through", FENCE_RESTART, 0, {
		{ 500, STEP, 0, K, FENCE_HELD, 2992 },
		{ 1000, STEP, 0, RN, FENCE_HELD, 2992 },
		{ 1000, SENT, 0, K, FENCE_HELD, 2992 },
		{ 1010, OK, 1000, K, FENCE_HELD, 3992 },
		{ 2000, STEP, 0, RN, FENCE_HELD, 3992 },
		{ 2000, SENT, 0, K, -1, -1 },
		{ 2400, OK, 2000, K, FENCE_HELD, 4992 }, /* a slow reply counts from its send time */
		{ 2400, OK, 1000, K, FENCE_HELD, 4992 }, /* an older one changes nothing */
		{ 0 } } },
	{ "restart: isolated from 1001, fenced", FENCE_RESTART, 0, {
		{ 1000, SENT, 0, K, -1, -1 },
		{ 1005, OK, 1000, K, FENCE_HELD, 3992 },
		{ 2000, SENT, 0, K, FENCE_HELD, 3992 },
		{ 3000, STEP, 0, RN, FENCE_LATE, 3992 },
		{ 3000, SENT, 0, K, FENCE_LATE, 3992 },
		{ 3991, STEP, 0, K, FENCE_LATE, 3992 },
		{ 3992, STEP, 0, ST, FENCE_FENCING, 3992 },
		{ 4100, STEP, 0, ST, FENCE_FENCING, 3992 },
		{ 4300, STOPPED, 0, FD, FENCE_STOPPED, -1 },
		{ 4400, OK, 3000, FD, FENCE_STOPPED, -1 },  /* too late: only a new lease ends it */
		{ 9000, GRANTED, 8990, K, FENCE_HELD, 11982 },
		{ 0 } } },
	{ "restart: lease revoked: fence at once", FENCE_RESTART, 0, {
		{ 1200, GONE, 0, ST, FENCE_FENCING, 1200 },
		{ 0 } } },
	{ "restart: a shorter TTL than assumed does not renew", FENCE_RESTART, 0, {
		{ 1000, SENT, 0, K, -1, -1 },
		{ 1001, OK_SHORT, 1000, K, FENCE_HELD, 2992 },
		{ 0 } } },
	{ "ride-through 10 s: isolation healed at 8 s", FENCE_RIDE_THROUGH, 10000, {
		{ 1000, SENT, 0, K, -1, -1 },
		{ 2000, SENT, 0, K, -1, -1 },
		{ 2992 + 100, STEP, 0, RN, FENCE_RIDING, -1 }, /* past restart's fence time */
		{ 6000, GONE, 0, RN, FENCE_RIDING, -1 },   /* expired as expected: keep riding */
		{ 8000, GRANTED, 7990, K, FENCE_HELD, -1 }, /* a new lease, VMs taken back */
		{ 0 } } },
	{ "ride-through 10 s: isolation lasts", FENCE_RIDE_THROUGH, 10000, {
		{ 6000, GONE, 0, RN, FENCE_RIDING, -1 },
		{ 12000, STEP, 0, RN, FENCE_RIDING, -1 },
		{ 13000, STEP, 0, ST, FENCE_FENCING, -1 },
		{ 13100, STOPPED, 0, FD, FENCE_STOPPED, -1 },
		{ 0 } } },
	{ "ride-through: revoked before the restart fence time: at once", FENCE_RIDE_THROUGH, 10000, {
		{ 1500, GONE, 0, ST, FENCE_FENCING, 1500 },
		{ 0 } } },
};

static void test_timelines(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < sizeof(timelines) / sizeof(timelines[0]); i++) {
		const struct timeline *tl = &timelines[i];
		struct fence_settings s = defaults();
		struct fence_state st;
		char err[300];

		s.policy = tl->policy;
		s.ride_through_ms = tl->ride_ms;
		s.fence_ms = 0;
		assert_int_equal(fence_settings_check(&s, err, sizeof(err)), 0);
		fence_init(&st, &s, 0);
		for (const struct tl_event *e = tl->ev; e->t; e++) {
			struct fence_decision d;

			switch (e->ev) {
			case SENT: fence_renew_sent(&st, e->t); break;
			case OK: fence_renew_ok(&st, e->sent, s.ttl_ms); break;
			case OK_SHORT: fence_renew_ok(&st, e->sent, s.ttl_ms - 1000); break;
			case GONE: fence_renew_gone(&st, e->t); break;
			case STOPPED: fence_stopped(&st, e->t); break;
			case GRANTED: fence_lease_granted(&st, e->sent); break;
			case STEP: break;
			}
			fence_step(&st, e->t, &d);
			if ((e->action >= 0 && (int)d.action != e->action) ||
			    (e->phase >= 0 && (int)d.phase != e->phase) ||
			    (e->fence_at >= 0 && (int64_t)d.fence_at != e->fence_at))
				fail_msg("%s, at %llu: %s/%s fence_at %llu, wanted %d/%d %lld (%s)", tl->name,
					 (unsigned long long)e->t, fence_action_name(d.action),
					 fence_phase_name(d.phase), (unsigned long long)d.fence_at, e->action,
					 e->phase, (long long)e->fence_at, d.reason);
			assert_true(strlen(d.reason) > 0);
			assert_true(d.next >= e->t);
			if (d.action == FENCE_STOP_BY_DEADLINE)
				assert_int_equal(d.deadline, d.fence_at + s.kill_ms);
			if (d.action == FENCE_RENEW_NOW)
				assert_true(d.renew != d.regrant);
			if (d.action == FENCE_KEEP_RUNNING || d.action == FENCE_RENEW_NOW)
				assert_true(d.next <= d.fence_at);
		}
	}
}

/* ---- the safety property over random timelines ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd64(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static double frand(void) /* [0, 1) */
{
	return (double)(rnd64() >> 11) / 9007199254740992.0;
}

/* How a trial goes. Times in real milliseconds (double); each clock runs at
 * rate r (local = offset + real * r), |r - 1| <= drift. */
struct world {
	double r_etcd, r_old, r_new;
	double off_old, off_new;
	double loss;                  /* probability a message is lost */
	double out_start, out_end;    /* an outage of the old owner's link */
	double d_max;                 /* one-way latency bound */
	double expiry_check;          /* etcd's lessor: revokes up to this long after expiry */
	double watch_delay;           /* the survivor hears of it up to this long after */
	bool worst;                   /* every delay at its worst, for the bound */
	double kill_factor;           /* actual kill time / kill_ms */
};

struct outcome {
	bool fenced;
	double dead;      /* real time the old owner's VMs were all gone */
	double expiry;    /* real time the lease expired in etcd */
	double start;     /* earliest real time the survivor may start them */
	int renewals, failures;
};

static uint64_t local(double real, double off, double r)
{
	/* A clock read floors, as clock_gettime to ms does (the epsilon keeps
	 * a wake-up computed for local time T from reading T - 1). */
	return (uint64_t)(off + real * r + 1e-6);
}

static double real_of(uint64_t loc, double off, double r)
{
	return ((double)loc - off) / r;
}

static bool link_up(const struct world *w, double t)
{
	return !(t >= w->out_start && t < w->out_end) && (w->worst || frand() >= w->loss);
}

#define MAXREPLIES 64

static void simulate(const struct fence_settings *s, const struct world *w, double horizon,
		     struct outcome *o)
{
	struct fence_state st;
	struct {
		double at;
		uint64_t sent;
		bool ok;
	} replies[MAXREPLIES];
	size_t nr = 0;
	double now = 0, wake = 0, expiry;

	memset(o, 0, sizeof(*o));
	/* The grant: sent at 0, etcd grants on arrival. */
	fence_init(&st, s, local(0, w->off_old, w->r_old));
	expiry = (w->worst ? 0 : frand() * w->d_max) + s->ttl_ms / w->r_etcd;
	/* Until the horizon, and past it until fenced if the lease expired. */
	while (now < horizon || expiry <= now) {
		/* The next event: a reply, or the owner's wake-up. */
		size_t next = nr;

		for (size_t i = 0; i < nr; i++)
			if (replies[i].at <= wake && (next == nr || replies[i].at < replies[next].at))
				next = i;
		if (next < nr) {
			now = replies[next].at;
			if (replies[next].ok)
				fence_renew_ok(&st, replies[next].sent, s->ttl_ms);
			else
				fence_renew_gone(&st, local(now, w->off_old, w->r_old));
			replies[next] = replies[--nr];
		} else {
			now = wake;
		}
		struct fence_decision d;
		uint64_t lnow = local(now, w->off_old, w->r_old);

		fence_step(&st, lnow, &d);
		if (d.action == FENCE_STOP_BY_DEADLINE) {
			/* Stopping takes up to kill_ms (real time). */
			o->fenced = true;
			o->dead = now + s->kill_ms * w->kill_factor;
			break;
		}
		if (d.renew && nr < MAXREPLIES) {
			double d1 = w->worst ? 0 : frand() * w->d_max;
			double d2 = w->worst ? 0 : frand() * w->d_max;
			double arrive = now + d1;

			fence_renew_sent(&st, lnow);
			if (link_up(w, now) && link_up(w, arrive)) {
				bool alive = arrive < expiry;

				if (alive) { /* etcd resets the TTL from when it sees it */
					double e = arrive + s->ttl_ms / w->r_etcd;

					expiry = e > expiry ? e : expiry;
				}
				if (link_up(w, arrive + d2)) {
					replies[nr].at = arrive + d2;
					replies[nr].sent = lnow;
					replies[nr].ok = alive;
					nr++;
					o->renewals += alive;
				}
			} else {
				o->failures++;
			}
		}
		/* Wake at d.next, late by up to the margin less the 2 ms that two
		 * clock reads (here and on the survivor) can lose to flooring. */
		double late = frand() * (s->margin_ms - 2.0);

		if (w->worst) /* renewals on time, the fence as late as allowed */
			late = d.next == d.fence_at ? s->margin_ms - 2.0 : 0;
		double at = real_of(d.next, w->off_old, w->r_old);

		wake = (at > now ? at : now + 0.001) + late;
		if (wake > horizon && !nr && expiry > wake)
			break;
	}
	o->expiry = expiry;
	/* The survivor: etcd revokes the lease at its next expiry check, the
	 * watch tells the survivor, which may start once fence_may_start says. */
	double seen = expiry + (w->worst ? 0 : frand() * w->expiry_check + frand() * w->watch_delay);
	uint64_t nb, lseen = local(seen, w->off_new, w->r_new);

	if (!fence_may_start(s, lseen, lseen, &nb)) {
		/* the clock read floors: the start comes when the clock shows nb */
	}
	o->start = real_of(nb, w->off_new, w->r_new);
	if (o->start < seen)
		o->start = seen;
}

static void random_world(const struct fence_settings *s, struct world *w, bool isolate)
{
	double rho = s->drift_ppm / 1e6;

	/* Clock rates anywhere in the bound, often at its ends. */
	w->r_etcd = 1 + rho * (rnd64() % 3 == 0 ? 1 : 2 * frand() - 1);
	w->r_old = 1 - rho * (rnd64() % 3 == 0 ? 1 : 2 * frand() - 1);
	w->r_new = 1 + rho * (rnd64() % 3 == 0 ? 1 : 2 * frand() - 1);
	w->off_old = frand() * 1e6;
	w->off_new = frand() * 1e6;
	w->loss = (rnd64() % 4 == 0) ? frand() * 0.9 : 0;
	w->d_max = frand() * 400;
	w->out_start = isolate ? frand() * 20000 : 1e18;
	w->out_end = isolate ? (rnd64() % 3 == 0 ? 1e18 : w->out_start + frand() * 40000) : 1e18;
	w->expiry_check = 500;
	w->watch_delay = 100;
	w->worst = false;
	w->kill_factor = rnd64() % 3 == 0 ? 1.0 : frand();
}

static void check_property(struct fence_settings s, int trials)
{
	char err[300];
	int fenced = 0;
	double slack = 1e18;

	assert_int_equal(fence_settings_check(&s, err, sizeof(err)), 0);
	for (int i = 0; i < trials; i++) {
		struct world w;
		struct outcome o;

		random_world(&s, &w, i % 8 != 0);
		simulate(&s, &w, 120000, &o);
		if (!o.fenced) {
			/* Never fenced: its lease lived through the horizon. */
			if (!(o.expiry > 120000))
				fail_msg("trial %d: not fenced, lease expired at %.3f (outage %.0f-%.0f)", i,
					 o.expiry, w.out_start, w.out_end);
			continue;
		}
		fenced++;
		slack = o.start - o.dead < slack ? o.start - o.dead : slack;
		if (!(o.dead < o.start))
			fail_msg("trial %d: VMs gone at %.3f, new owner may start at %.3f (lease expired "
				 "at %.3f)", i, o.dead, o.start, o.expiry);
	}
	fprintf(stderr, "ttl %u ride %u: %d of %d trials fenced, closest %.1f ms before a start\n",
		s.ttl_ms, s.policy == FENCE_RIDE_THROUGH ? s.ride_through_ms : 0, fenced, trials, slack);
	assert_true(fenced > trials / 4);
}

static void test_property_restart(void **unused)
{
	struct fence_settings s = defaults();

	(void)unused;
	check_property(s, 20000);
	/* Other settings: a long TTL, a slow kill, a large drift bound. */
	s = (struct fence_settings){ .ttl_ms = 15000, .renew_ms = 2000, .kill_ms = 4000,
				     .margin_ms = 1000, .drift_ppm = 20000 };
	check_property(s, 5000);
}

static void test_property_ride_through(void **unused)
{
	struct fence_settings s = defaults();

	(void)unused;
	s.policy = FENCE_RIDE_THROUGH;
	s.ride_through_ms = 30000;
	s.fence_ms = 0;
	check_property(s, 10000);
	s.ride_through_ms = 5000;
	s.fence_ms = 0;
	s.drift_ppm = 50000;
	check_property(s, 5000);
}

/* The random timelines find a fence time past the bound unsafe (forced in
 * without the check): the property test has teeth. */
static void test_property_detects_unsafe(void **unused)
{
	struct fence_settings s = defaults();
	int bad = 0;

	(void)unused;
	s.fence_ms += 300;
	for (int i = 0; i < 20000; i++) {
		struct world w;
		struct outcome o;

		random_world(&s, &w, true);
		simulate(&s, &w, 120000, &o);
		bad += o.fenced && !(o.dead < o.start);
	}
	fprintf(stderr, "fence_ms %u (300 past the bound): %d of 20000 trials unsafe\n", s.fence_ms, bad);
	assert_true(bad > 0);
}

/* No loss, no outage: never fenced. */
static void test_no_false_fence(void **unused)
{
	struct fence_settings s = defaults();

	(void)unused;
	for (int i = 0; i < 200; i++) {
		struct world w;
		struct outcome o;

		random_world(&s, &w, false);
		w.loss = 0;
		w.d_max = 300;
		simulate(&s, &w, 60000, &o);
		assert_false(o.fenced);
		assert_true(o.renewals >= 40);
	}
}

/* The worst case the argument allows, at the bound: the old owner's clock
 * slow, etcd's and the survivor's fast, keepalives arriving at once, every
 * wake-up late by the margin, the kill taking all of kill_ms, the survivor
 * told at once. Safe with fence_ms at its maximum; one past it (forced in
 * without the check) and the property fails: the test can see a violation. */
static void test_worst_case(void **unused)
{
	(void)unused;
	for (int policy = 0; policy < 2; policy++) {
		struct fence_settings s = defaults();
		struct world w = { .r_etcd = 1.001, .r_old = 0.999, .r_new = 1.001, .off_old = 0,
				   .off_new = 0, .out_start = 1500, .out_end = 1e18, .worst = true,
				   .kill_factor = 1.0 };
		struct outcome o;
		char err[300];

		s.policy = (enum fence_policy)policy;
		s.ride_through_ms = policy ? 20000 : 0;
		s.fence_ms = 0;
		assert_int_equal(fence_settings_check(&s, err, sizeof(err)), 0);
		simulate(&s, &w, 120000, &o);
		assert_true(o.fenced);
		assert_true(o.dead < o.start);
		if (!(o.start - o.dead < 10)) /* tight: the bound is the bound */
			fail_msg("policy %d: dead %.3f start %.3f expiry %.3f", policy, o.dead, o.start, o.expiry);
		s.fence_ms += 20;                   /* unsafe */
		simulate(&s, &w, 120000, &o);
		assert_true(o.fenced);
		assert_false(o.dead < o.start);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_defaults_for_ttl),
		cmocka_unit_test(test_settings_refused),
		cmocka_unit_test(test_ride_through_bound),
		cmocka_unit_test(test_timelines),
		cmocka_unit_test(test_property_restart),
		cmocka_unit_test(test_property_ride_through),
		cmocka_unit_test(test_property_detects_unsafe),
		cmocka_unit_test(test_no_false_fence),
		cmocka_unit_test(test_worst_case),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
