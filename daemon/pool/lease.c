/* lease.c: this host's lease and HA fencing (docs/pool.md, "High
 * availability"). Two threads share fence.c's state machine under p->lock,
 * on CLOCK_BOOTTIME:
 * - the keepalive thread renews the lease every renew_ms (or, when it is
 *   gone or the host was fenced, asks for a new one) and, after each
 *   confirmed renewal, hands every HA worker its new deadline (the fence
 *   time) through the pool's HA calls;
 * - the watchdog never talks to etcd, so a keepalive stuck in a slow or
 *   unreachable member cannot delay it: at the fence time it stops every
 *   HA worker (SIGKILL, reaped) and records the host fenced.
 * The workers enforce the same deadline themselves (vmm/control/deadline.h),
 * for the case where cellad is dead or hung. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "pool_priv.h"

uint64_t pool_boot_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wait on p->wake for at most ms (lock held). The condition's clock is
 * CLOCK_MONOTONIC; waits are short and the caller reads CLOCK_BOOTTIME
 * again after each, so a suspend only makes one wait late. */
static void wait_ms(struct pool *p, uint64_t ms)
{
	struct timespec ts;

	if (ms > 250)
		ms = 250;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
	ts.tv_sec += (time_t)(ms / 1000u) + ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&p->wake, &p->lock, &ts);
}

static void pool_event(struct pool *p, const char *event, const char *detail)
{
	if (p->ev_fn)
		p->ev_fn(p->ev_opaque, event, detail);
}

/* A new lease (P/alive/HOST on it) in place of the one that is gone or was
 * fenced. Lock not held. */
static int regrant(struct pool *p)
{
	uint64_t sent = pool_boot_ms();
	int64_t lease = 0, old;
	int ret;

	/* The old lease goes first, and the owner keys still on it with it
	 * (etcd frozen, it may not have expired yet): once the new one is
	 * this host's, the HA thread binds the keys that name this host to it,
	 * and a fenced VM whose key it kept would be taken over by nobody and
	 * never started again. Gone, the keys go to whoever the pool picks,
	 * this host included, and the VM starts there. */
	pthread_mutex_lock(&p->lock);
	old = p->lease;
	pthread_mutex_unlock(&p->lock);
	if (old && (ret = etcd_lease_revoke(p->etcd, old)) && ret != -ENOENT) {
		log_warn("pool: cannot revoke host %s's old lease %lld: %s", p->host, (long long)old,
			 strerror(-ret));
		return ret;
	}
	ret = pool_member_put(p) ?: pool_alive_put(p, &lease);
	if (ret)
		return ret;
	pthread_mutex_lock(&p->lock);
	if (p->left || p->stopping) {
		pthread_mutex_unlock(&p->lock);
		if (etcd_lease_revoke(p->etcd, lease))
			log_debug("pool: cannot revoke lease");
		return 0;
	}
	p->lease = lease;
	fence_lease_granted(&p->fst, sent);
	pthread_mutex_unlock(&p->lock);
	log_info("pool: host %s alive again (lease %lld)", p->host, (long long)lease);
	return 0;
}

/* The lease's threads run ahead of the host's other work (guests, starts,
 * the API): a renewal that waits for the CPU is a host that fences itself
 * while healthy. Real-time round-robin at the lowest priority, as cluster
 * managers run their membership (corosync: SCHED_RR); they sleep or wait
 * for the network all but a moment of each period. Without the privilege,
 * the highest nice value allowed. */
static void lease_thread_priority(const char *what)
{
	struct sched_param sp = { .sched_priority = sched_get_priority_min(SCHED_RR) };
	int ret = pthread_setschedparam(pthread_self(), SCHED_RR, &sp);

	if (ret && setpriority(PRIO_PROCESS, (id_t)gettid(), -10) < 0)
		log_warn("pool: the %s thread runs at normal priority (%s): a loaded host may "
			 "renew its lease late", what, strerror(ret));
}

static void *keepalive_thread(void *arg)
{
	struct pool *p = arg;
	uint64_t last_regrant = 0;
	bool failing = false;

	lease_thread_priority("lease keepalive");
	pthread_mutex_lock(&p->lock);
	while (!p->stopping && !p->left) {
		struct fence_decision d;
		uint64_t now = pool_boot_ms(), sent;
		int64_t lease = p->lease, ttl = 0;
		bool fenced;
		int ret;

		fence_step(&p->fst, now, &d);
		fenced = d.action == FENCE_FENCED;
		if (d.action != FENCE_RENEW_NOW &&
		    !(fenced && now >= last_regrant + p->fst.s.renew_ms)) {
			wait_ms(p, d.next > now ? d.next - now : 1);
			continue;
		}
		sent = pool_boot_ms();
		fence_renew_sent(&p->fst, sent);
		pthread_mutex_unlock(&p->lock);
		if (d.renew && lease) {
			ret = etcd_lease_keepalive(p->ka, lease, &ttl);
		} else {
			ret = -ENOENT;
		}
		if (ret == -ENOENT && d.renew) {
			pthread_mutex_lock(&p->lock);
			fence_renew_gone(&p->fst, pool_boot_ms());
			pthread_mutex_unlock(&p->lock);
			log_warn("pool: host %s's lease %lld is gone", p->host, (long long)lease);
		}
		/* Once fenced, a new lease. Riding through with the lease
		 * gone (it expired while the host still runs its HA VMs, and
		 * their owner keys went with it): a new lease with every
		 * owner key taken back at once if nobody took one (retake.c),
		 * else the host rides on to its fence time and stops them
		 * there, before survivors may start them. */
		if (ret == -ENOENT && fenced) {
			last_regrant = pool_boot_ms();
			ret = regrant(p);
		} else if (ret == -ENOENT && d.regrant && p->fst.s.policy == FENCE_RIDE_THROUGH) {
			ret = pool_retake(p);
			if (ret == -ETIMEDOUT || ret == -EEXIST || ret == -E2BIG)
				ret = -ENOENT; /* counted as the lease gone, not etcd away */
		} else if (!ret) {
			uint64_t until;

			const struct pool_ha_ops *ha;
			void *opaque;

			pthread_mutex_lock(&p->lock);
			fence_renew_ok(&p->fst, sent, ttl > UINT32_MAX / 1000 ? UINT32_MAX : (uint32_t)ttl * 1000u);
			fence_step(&p->fst, pool_boot_ms(), &d);
			ha = p->ha;
			opaque = p->ha_opaque;
			pthread_mutex_unlock(&p->lock);
			until = d.fence_at * 1000000u;
			if ((d.action == FENCE_KEEP_RUNNING || d.action == FENCE_RENEW_NOW) && ha &&
			    ha->extend)
				ha->extend(opaque, until);
		}
		atomic_fetch_add(ret ? &p->ctr.renew_failures : &p->ctr.renewals, 1);
		if (ret && ret != -ENOENT && !failing)
			log_warn("pool: cannot renew host %s's lease: %s", p->host, strerror(-ret));
		failing = ret && ret != -ENOENT;
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void *watchdog_thread(void *arg)
{
	struct pool *p = arg;
	enum fence_phase seen = FENCE_HELD;

	lease_thread_priority("fence watchdog");
	pthread_mutex_lock(&p->lock);
	while (!p->stopping && !p->left) {
		struct fence_decision d;
		uint64_t now = pool_boot_ms();

		fence_step(&p->fst, now, &d);
		if (d.phase != seen) {
			log_warn("pool: host %s: lease %s (%s)", p->host, fence_phase_name(d.phase),
				 d.reason);
			p->phase = d.phase;
			if (d.phase == FENCE_LATE || d.phase == FENCE_RIDING) {
				pthread_mutex_unlock(&p->lock);
				pool_event(p, "pool-host-isolated", p->host);
				pthread_mutex_lock(&p->lock);
			} else if (d.phase == FENCE_HELD && seen != FENCE_HELD) {
				pthread_mutex_unlock(&p->lock);
				pool_event(p, "pool-host-rejoined", p->host);
				pthread_mutex_lock(&p->lock);
			}
			seen = d.phase;
		}
		if (d.action == FENCE_STOP_BY_DEADLINE) {
			char reason[sizeof(d.reason)];
			uint64_t done;

			const struct pool_ha_ops *ha = p->ha;
			void *opaque = p->ha_opaque;

			snprintf(reason, sizeof(reason), "%s", d.reason);
			pthread_mutex_unlock(&p->lock);
			log_warn("pool: host %s fences itself: %s", p->host, reason);
			done = ha && ha->fence ? ha->fence(opaque, reason) : pool_boot_ms();
			pthread_mutex_lock(&p->lock);
			fence_stopped(&p->fst, done);
			atomic_fetch_add(&p->ctr.fences, 1);
			if (done > d.deadline)
				log_err("pool: HA VMs gone %llu ms past the fencing deadline",
					(unsigned long long)(done - d.deadline));
			else
				log_info("pool: HA VMs gone %llu ms before the fencing deadline",
					 (unsigned long long)(d.deadline - done));
			continue;
		}
		wait_ms(p, d.next > now ? d.next - now : 1);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int pool_lease_start(struct pool *p)
{
	int ret;

	fence_init(&p->fst, &p->conf.fence, p->lease_sent);
	if ((ret = -pthread_create(&p->thread, NULL, keepalive_thread, p)))
		return ret;
	p->thread_started = true;
	if ((ret = -pthread_create(&p->watchdog, NULL, watchdog_thread, p)))
		return ret;
	p->watchdog_started = true;
	return pool_ha_start(p);
}

void pool_lease_stop(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	if (p->thread_started)
		pthread_join(p->thread, NULL);
	if (p->watchdog_started)
		pthread_join(p->watchdog, NULL);
	pool_ha_stop(p);
	p->thread_started = p->watchdog_started = false;
}

void pool_set_ha(struct pool *p, const struct pool_ha_ops *ops, void *opaque)
{
	pthread_mutex_lock(&p->lock);
	p->ha = ops;
	p->ha_opaque = opaque;
	pthread_mutex_unlock(&p->lock);
}

void pool_keep_lease(struct pool *p, bool keep)
{
	pthread_mutex_lock(&p->lock);
	p->keep_lease = keep;
	pthread_mutex_unlock(&p->lock);
}

uint64_t pool_ha_deadline_ns(struct pool *p)
{
	struct fence_decision d;

	pthread_mutex_lock(&p->lock);
	if (!p->etcd) {
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	fence_step(&p->fst, pool_boot_ms(), &d);
	pthread_mutex_unlock(&p->lock);
	return d.action == FENCE_FENCED ? 1 : d.fence_at * 1000000u;
}
