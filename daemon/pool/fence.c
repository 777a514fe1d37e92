/* fence.c: the lease state machine of a host and the survivors' start rule
 * (docs/pool.md, "Fencing: the timing argument"). */
#include "fence.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define PPM 1000000
/* etcd's lessor looks for expired leases every 500 ms (lessor.go,
 * expiredLeaseRetryInterval / the run loop's tick): a lease is revoked up to
 * that long after its TTL ran out. */
#define ETCD_EXPIRY_CHECK_MS 500
#define TTL_MIN_MS   2000       /* etcd's minimum TTL is 1.5 election timeouts: 1.5 s by default */
#define TTL_MAX_MS   3600000
#define RIDE_MAX_MS  3600000

typedef __int128 i128;

static const char *const action_names[] = {
	[FENCE_KEEP_RUNNING] = "keep-running",
	[FENCE_RENEW_NOW] = "renew-now",
	[FENCE_STOP_BY_DEADLINE] = "fence",
	[FENCE_FENCED] = "fenced",
};

static const char *const phase_names[] = {
	[FENCE_HELD] = "held",
	[FENCE_LATE] = "late",
	[FENCE_RIDING] = "riding-through",
	[FENCE_FENCING] = "fencing",
	[FENCE_STOPPED] = "fenced",
};

const char *fence_action_name(enum fence_action a)
{
	return (unsigned)a <= FENCE_FENCED ? action_names[a] : "?";
}

const char *fence_phase_name(enum fence_phase p)
{
	return (unsigned)p <= FENCE_STOPPED ? phase_names[p] : "?";
}

static uint64_t ride(const struct fence_settings *s)
{
	return s->policy == FENCE_RIDE_THROUGH ? s->ride_through_ms : 0;
}

void fence_settings_for_ttl(struct fence_settings *s, uint32_t ttl_ms)
{
	char err[200];

	fence_settings_default(s);
	if (ttl_ms >= FENCE_DEFAULT_TTL_MS) {
		s->ttl_ms = ttl_ms;
	} else {
		/* The defaults' shares of the default TTL: renew 1/5, kill
		 * 3/10, margin 1/10 (F about 0.59 T, two renewals before it). */
		s->ttl_ms = ttl_ms;
		s->renew_ms = ttl_ms / 5;
		s->kill_ms = ttl_ms * 3 / 10;
		s->margin_ms = ttl_ms / 10;
	}
	s->fence_ms = 0;
	if (fence_settings_check(s, err, sizeof(err)) != 0)
		s->fence_ms = 0; /* a TTL fence_settings_check refuses: the caller's check says why */
}

void fence_settings_default(struct fence_settings *s)
{
	char err[200];

	*s = (struct fence_settings){
		.ttl_ms = FENCE_DEFAULT_TTL_MS,
		.renew_ms = FENCE_DEFAULT_RENEW_MS,
		.kill_ms = FENCE_DEFAULT_KILL_MS,
		.margin_ms = FENCE_DEFAULT_MARGIN_MS,
		.drift_ppm = FENCE_DEFAULT_DRIFT_PPM,
		.policy = FENCE_RESTART,
	};
	if (fence_settings_check(s, err, sizeof(err)) != 0)
		s->fence_ms = 0; /* cannot happen: the defaults pass (tested) */
}

/* Both sides of the inequality as one fraction: F + R < num / den, with
 *   num = (P - d) * ((T + R) * P - (K + M) * (P + d)),  den = P * (P + d)
 * (P one million, d the drift in ppm), which is
 *   (F + R) / (1 - p) + K + M < (T + R) / (1 + p)   multiplied out. */
static void bound(const struct fence_settings *s, i128 *num, i128 *den)
{
	i128 d = s->drift_ppm, r = ride(s);

	*num = (PPM - d) * (((i128)s->ttl_ms + r) * PPM - ((i128)s->kill_ms + s->margin_ms) * (PPM + d));
	*den = (i128)PPM * (PPM + d);
}

int64_t fence_max_ms(const struct fence_settings *s)
{
	i128 num, den, ceil_q;

	bound(s, &num, &den);
	if (num <= 0)
		return -1;
	ceil_q = (num + den - 1) / den;           /* F + R <= ceil(num / den) - 1 */
	return (int64_t)(ceil_q - 1 - (i128)ride(s));
}

static bool safe(const struct fence_settings *s, uint64_t f)
{
	i128 num, den;

	bound(s, &num, &den);
	return ((i128)f + ride(s)) * den < num;
}

int fence_settings_check(struct fence_settings *s, char *err, size_t size)
{
#define REFUSE(...) do { snprintf(err, size, __VA_ARGS__); return -EINVAL; } while (0)
	int64_t max;

	if (size)
		err[0] = 0;
	if (s->ttl_ms < TTL_MIN_MS || s->ttl_ms > TTL_MAX_MS || s->ttl_ms % 1000)
		REFUSE("ttl_ms %u: the lease TTL must be whole seconds (etcd grants seconds), "
		       "from %u to %u ms", s->ttl_ms, TTL_MIN_MS, TTL_MAX_MS);
	if (s->renew_ms < 100 || s->renew_ms >= s->ttl_ms)
		REFUSE("renew_ms %u: keepalives must go at least every 100 ms and more often than the "
		       "TTL (%u ms)", s->renew_ms, s->ttl_ms);
	if (s->kill_ms == 0)
		REFUSE("kill_ms 0: stopping the HA VMs takes time; give its upper bound");
	if (s->drift_ppm > 100000)
		REFUSE("drift_ppm %u: a clock rate error bound above 100000 ppm (10%%) is not a clock",
		       s->drift_ppm);
	if (s->policy != FENCE_RESTART && s->policy != FENCE_RIDE_THROUGH)
		REFUSE("policy %d: restart or ride-through", (int)s->policy);
	if (s->policy == FENCE_RIDE_THROUGH && (s->ride_through_ms < 1000 || s->ride_through_ms > RIDE_MAX_MS))
		REFUSE("ride_through_ms %u: from 1000 to %u ms", s->ride_through_ms, RIDE_MAX_MS);
	max = fence_max_ms(s);
	if (max < 0)
		REFUSE("no safe fence time: with ttl_ms %u, kill_ms %u, margin_ms %u, drift_ppm %u and "
		       "ride-through %llu ms, a host could not stop its VMs before its lease expires "
		       "elsewhere; raise ttl_ms or lower kill_ms/margin_ms", s->ttl_ms, s->kill_ms,
		       s->margin_ms, s->drift_ppm, (unsigned long long)ride(s));
	if (s->fence_ms && !safe(s, s->fence_ms))
		REFUSE("fence_ms %u is unsafe: (fence + ride-through) / (1 - drift) + kill + margin "
		       "must stay below (ttl + ride-through) / (1 + drift); with ttl_ms %u, kill_ms %u, "
		       "margin_ms %u, drift_ppm %u it may be at most %lld", s->fence_ms, s->ttl_ms,
		       s->kill_ms, s->margin_ms, s->drift_ppm, (long long)max);
	uint64_t f = s->fence_ms ? s->fence_ms : (uint64_t)max;

	if (f < 2ull * s->renew_ms)
		REFUSE("renew_ms %u: two keepalives must fit before fencing starts (%llu ms after the "
		       "last renewal), or one lost packet fences the host; renew at most every %llu ms "
		       "or raise ttl_ms", s->renew_ms, (unsigned long long)f,
		       (unsigned long long)(f / 2));
	s->fence_ms = (uint32_t)f;
	return 0;
#undef REFUSE
}

uint64_t fence_failover_bound_ms(const struct fence_settings *s)
{
	uint64_t stretch = (uint64_t)s->ttl_ms + ride(s);

	/* The last keepalive went at most renew_ms before the death; etcd's
	 * TTL and the survivor's wait run on clocks up to drift_ppm fast or
	 * slow. */
	stretch += (stretch * s->drift_ppm + PPM - 1) / PPM;
	return s->renew_ms + stretch + ETCD_EXPIRY_CHECK_MS;
}

void fence_init(struct fence_state *st, const struct fence_settings *s, uint64_t sent_at)
{
	memset(st, 0, sizeof(*st));
	st->s = *s;
	fence_lease_granted(st, sent_at);
}

void fence_lease_granted(struct fence_state *st, uint64_t sent_at)
{
	st->last_ok_sent = sent_at;
	st->last_attempt = sent_at;
	st->lease_lost = false;
	st->fence_now_at = UINT64_MAX;
	st->stopped = false;
	st->stopped_at = 0;
}

void fence_renew_sent(struct fence_state *st, uint64_t sent_at)
{
	if (sent_at > st->last_attempt)
		st->last_attempt = sent_at;
}

void fence_renew_ok(struct fence_state *st, uint64_t sent_at, uint32_t ttl_ms)
{
	/* etcd reset the expiry to TTL after it received the keepalive, which
	 * was after sent_at: the lease lives at least ttl from sent_at on
	 * etcd's clock. Once gone or fenced, only a new lease counts. */
	if (st->lease_lost || st->stopped || ttl_ms < st->s.ttl_ms)
		return;
	if (sent_at > st->last_ok_sent)
		st->last_ok_sent = sent_at;
}

void fence_renew_gone(struct fence_state *st, uint64_t now)
{
	if (st->lease_lost)
		return;
	st->lease_lost = true;
	if (st->s.policy != FENCE_RIDE_THROUGH || now < st->last_ok_sent + st->s.fence_ms)
		st->fence_now_at = now;
}

void fence_stopped(struct fence_state *st, uint64_t now)
{
	st->stopped = true;
	st->stopped_at = now;
}

void fence_step(const struct fence_state *st, uint64_t now, struct fence_decision *d)
{
	const struct fence_settings *s = &st->s;
	uint64_t restart_fence = st->last_ok_sent + s->fence_ms;
	uint64_t fence_at = restart_fence + ride(s);
	uint64_t renew_at = st->last_attempt + s->renew_ms;

	memset(d, 0, sizeof(*d));
	if (st->fence_now_at < fence_at)
		fence_at = st->fence_now_at;
	d->fence_at = fence_at;
	d->deadline = fence_at + s->kill_ms;
	if (st->stopped) {
		d->action = FENCE_FENCED;
		d->phase = FENCE_STOPPED;
		d->regrant = true;
		d->next = now + s->renew_ms;
		snprintf(d->reason, sizeof(d->reason),
			 "HA VMs stopped %llu ms ago; a new lease is needed, and only VMs nobody took "
			 "over may start again here", (unsigned long long)(now - st->stopped_at));
		return;
	}
	if (now >= fence_at) {
		d->action = FENCE_STOP_BY_DEADLINE;
		d->phase = FENCE_FENCING;
		d->late_ms = (int64_t)(now - fence_at);
		d->next = now;
		if (st->fence_now_at == fence_at)
			snprintf(d->reason, sizeof(d->reason),
				 "the lease was revoked under this host: stop every HA VM by +%llu ms",
				 (unsigned long long)(d->deadline > now ? d->deadline - now : 0));
		else
			snprintf(d->reason, sizeof(d->reason),
				 "no renewal confirmed for %llu ms (fence after %llu): stop every HA VM by "
				 "+%llu ms%s", (unsigned long long)(now - st->last_ok_sent),
				 (unsigned long long)(fence_at - st->last_ok_sent),
				 (unsigned long long)(d->deadline > now ? d->deadline - now : 0),
				 d->late_ms > s->margin_ms ? " (LATE beyond the margin: safety at risk)" : "");
		return;
	}
	if (now >= renew_at) {
		d->action = FENCE_RENEW_NOW;
		d->renew = !st->lease_lost;
		d->regrant = st->lease_lost;
		renew_at = now + s->renew_ms;
	}
	d->next = renew_at < fence_at ? renew_at : fence_at;
	if (now >= restart_fence)
		d->phase = FENCE_RIDING;
	else if (now >= st->last_ok_sent + 2ull * s->renew_ms || st->lease_lost)
		d->phase = FENCE_LATE;
	else
		d->phase = FENCE_HELD;
	snprintf(d->reason, sizeof(d->reason), "%s: last renewal confirmed %llu ms ago, fence in %llu ms",
		 d->phase == FENCE_RIDING ? "isolated, riding through" :
		 d->phase == FENCE_LATE ? "renewals failing" : "lease held",
		 (unsigned long long)(now - st->last_ok_sent), (unsigned long long)(fence_at - now));
}

bool fence_may_start(const struct fence_settings *s, uint64_t seen_gone, uint64_t now,
		     uint64_t *not_before)
{
	uint64_t nb = seen_gone + ride(s);

	if (not_before)
		*not_before = nb;
	return now >= nb;
}
