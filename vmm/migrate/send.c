/* send.c: the source side of live migration: connect, pre-copy rounds,
 * auto-converge, stop-and-copy, ack; or give the VM back untouched. */
#include "migrate/migrate.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "migrate/dirty.h"
#include "migrate/migstream.h"
#include "migrate/send_priv.h"
#include "state/state.h"
#include "state/statefile.h"
#include "vm.h"

#define MIG_IO_TIMEOUT_MS 30000
#define MIG_DEFAULT_DOWNTIME_MS 30
#define MIG_DEFAULT_MAX_ROUNDS 30

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int fail(struct migration *m, int err, const char *fmt, ...) __printf(3, 4);
static int fail(struct migration *m, int err, const char *fmt, ...)
{
	va_list ap;

	if (m->error[0])
		return err; /* the first reason is the one that counts */
	va_start(ap, fmt);
	vsnprintf(m->error, sizeof(m->error), fmt, ap);
	va_end(ap);
	return err;
}

static void set_phase(struct migration *m, const char *phase)
{
	pthread_mutex_lock(&m->lock);
	m->phase = phase;
	pthread_mutex_unlock(&m->lock);
}

static uint64_t page_gpa(const struct vm *vm, uint64_t pg)
{
	return guest_mem_gpa_of(&vm->mem, pg * MIG_PAGE_SIZE);
}

/* --- page batches --------------------------------------------------- */

static int flush_pages(struct migration *m)
{
	struct mig_batch *b = &m->batch;
	uint32_t len;
	int ret;

	if (!b->n)
		return 0;
	/* The data was written after room for a full address list: close the
	 * gap so that it follows the n addresses. */
	if (b->n < MIG_PAGES_MAX)
		memmove(b->buf + 8 + (size_t)b->n * 8, b->buf + 8 + (size_t)MIG_PAGES_MAX * 8,
			(size_t)b->n * MIG_PAGE_SIZE);
	memcpy(b->buf, &b->n, 4); /* little-endian host (x86) */
	memset(b->buf + 4, 0, 4);
	len = 8 + b->n * (8 + MIG_PAGE_SIZE);
	ret = mig_conn_send_reserved(m->conn, MIG_REC_PAGES, len);
	if (ret)
		return fail(m, ret, "sending pages: %s", mig_conn_error(m->conn));
	m->pages_sent += b->n;
	b->n = 0;
	b->buf = NULL;
	return 0;
}

static int flush_zero(struct migration *m)
{
	struct mig_batch *b = &m->batch;
	int ret;

	if (!b->nzero)
		return 0;
	memcpy(b->zero, &b->nzero, 4);
	memset(b->zero + 4, 0, 4);
	ret = mig_conn_send(m->conn, MIG_REC_ZERO, b->zero, 8 + b->nzero * 8);
	if (ret)
		return fail(m, ret, "sending zero pages: %s", mig_conn_error(m->conn));
	m->zero_sent += b->nzero;
	b->nzero = 0;
	return 0;
}

/* Keep to max_bandwidth (bytes/s) by sleeping when ahead of it. */
static void rate_limit(struct migration *m)
{
	uint64_t sent, elapsed, due;

	if (!m->max_bw)
		return;
	sent = mig_conn_bytes_out(m->conn) - m->bw_bytes0;
	elapsed = mono_ns() - m->bw_t0;
	due = sent * 1000000000ull / m->max_bw;
	if (due > elapsed) {
		uint64_t ns = due - elapsed;
		struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };

		nanosleep(&ts, NULL);
	}
}

/* Queue page pg; zero pages as addresses only (skip_zero: not at all,
 * because the destination's RAM is still all zero in round 1). */
static int queue_page(struct migration *m, uint64_t pg, bool skip_zero, bool hole)
{
	struct mig_batch *b = &m->batch;
	const uint8_t *src = m->vm->mem.host + pg * MIG_PAGE_SIZE;
	uint64_t gpa = page_gpa(m->vm, pg);
	int ret;

	/* A hole (a page the guest gave back through its balloon) is a zero
	 * page that reading would allocate: sent as one without reading. */
	if (hole || mig_page_is_zero(src)) {
		if (skip_zero)
			return 0;
		memcpy(b->zero + 8 + (size_t)b->nzero * 8, &gpa, 8);
		if (++b->nzero == MIG_ZERO_MAX)
			return flush_zero(m);
		return 0;
	}
	if (!b->buf) {
		b->buf = mig_conn_reserve(m->conn, 8 + MIG_PAGES_MAX * (8 + MIG_PAGE_SIZE));
		if (!b->buf)
			return fail(m, -ENOMEM, "out of memory for a page batch");
	}
	memcpy(b->buf + 8 + (size_t)b->n * 8, &gpa, 8);
	memcpy(b->buf + 8 + (size_t)MIG_PAGES_MAX * 8 + (size_t)b->n * MIG_PAGE_SIZE, src,
	       MIG_PAGE_SIZE);
	if (++b->n == MIG_PAGES_MAX) {
		ret = flush_pages(m);
		if (ret)
			return ret;
		rate_limit(m);
	}
	return 0;
}

static int end_round(struct migration *m, uint64_t pages)
{
	uint8_t rec[16] = { 0 };
	uint32_t r = (uint32_t)m->round;
	int ret;

	if ((ret = flush_pages(m)) || (ret = flush_zero(m)))
		return ret;
	memcpy(rec, &r, 4);
	memcpy(rec + 8, &pages, 8);
	ret = mig_conn_send(m->conn, MIG_REC_ROUND, rec, sizeof(rec));
	if (ret)
		return fail(m, ret, "sending a round marker: %s", mig_conn_error(m->conn));
	return 0;
}

/* Round 1: all RAM that may hold data (memfd holes are skipped without
 * touching them; zero pages are not sent). */
static int send_all(struct migration *m)
{
	uint64_t npages = m->vm->mem.size / MIG_PAGE_SIZE, sent = 0;
	uint8_t vec[512];
	int ret;

	for (uint64_t pg = 0; pg < npages; pg += sizeof(vec)) {
		size_t n = (size_t)MIN((uint64_t)sizeof(vec), npages - pg);

		if (m->cancel)
			return fail(m, -ECANCELED, "cancelled");
		if (guest_mem_populated(&m->vm->mem, pg * MIG_PAGE_SIZE, n, vec))
			memset(vec, 1, n); /* unknown: read them all */
		for (size_t i = 0; i < n; i++) {
			if (!vec[i])
				continue;
			ret = queue_page(m, pg + i, true, false);
			if (ret)
				return ret;
			sent++;
		}
		pthread_mutex_lock(&m->lock);
		m->bytes = mig_conn_bytes_out(m->conn);
		pthread_mutex_unlock(&m->lock);
	}
	return end_round(m, sent);
}

/* A later round: the pages in the dirty bitmap, which it empties. */
static int send_dirty(struct migration *m)
{
	struct mig_dirty *d = &m->dirty;
	uint64_t sent = 0;
	int ret;

	for (size_t w = 0; w < d->words; w++) {
		unsigned long bits = d->bits[w];
		uint64_t first = (uint64_t)w * 8 * sizeof(long);
		uint8_t vec[8 * sizeof(long)];
		size_t n;

		d->bits[w] = 0;
		if (!bits)
			continue;
		/* Which of these pages are holes (given back to the host since
		 * they were dirtied): one lseek pair per data extent. */
		n = (size_t)MIN((uint64_t)sizeof(vec), m->vm->mem.size / MIG_PAGE_SIZE - first);
		if (guest_mem_populated(&m->vm->mem, first * MIG_PAGE_SIZE, n, vec))
			memset(vec, 1, sizeof(vec));
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzl(bits);

			bits &= bits - 1;
			ret = queue_page(m, first + b, false, b < n && !vec[b]);
			if (ret)
				return ret;
			sent++;
		}
		if (m->cancel)
			return fail(m, -ECANCELED, "cancelled");
	}
	return end_round(m, sent);
}

/* --- disks (include_storage) ---------------------------------------- */

/* Between disk chunks: cancellation, max_bandwidth, progress. */
static int disk_pace(void *opaque)
{
	struct migration *m = opaque;

	if (m->cancel)
		return -ECANCELED;
	rate_limit(m);
	pthread_mutex_lock(&m->lock);
	m->bytes = mig_conn_bytes_out(m->conn);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* all: every block (round 1); else the blocks written since the last look. */
static int send_disks(struct migration *m, bool all)
{
	char err[256] = "";
	int ret;

	if (!m->include_storage)
		return 0;
	ret = mig_storage_send(&m->storage, m->conn, all, disk_pace, m, err, sizeof(err));
	if (ret)
		return fail(m, ret, "%s", err[0] ? err : ret == -ECANCELED ? "cancelled"
								   : strerror(-ret));
	return 0;
}

/* Dirty RAM pages plus dirty disk blocks, in pages, for the estimates. */
static uint64_t dirty_pages(struct migration *m)
{
	uint64_t n = mig_dirty_count(&m->dirty);

	if (m->include_storage)
		n += mig_storage_dirty_bytes(&m->storage) / MIG_PAGE_SIZE;
	return n;
}

/* --- connection ------------------------------------------------------ */

static int connect_tcp(struct migration *m)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	char port[16];
	int fd = -1, ret;

	snprintf(port, sizeof(port), "%u", m->port);
	ret = getaddrinfo(m->host, port, &hints, &res);
	if (ret)
		return fail(m, -EHOSTUNREACH, "%s: %s", m->host, gai_strerror(ret));
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		ret = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fail(m, ret ? ret : -ECONNREFUSED, "cannot connect to %s:%u: %s", m->host,
			    m->port, strerror(ret ? -ret : ECONNREFUSED));
	return fd;
}

/* Read the destination's answer: a record of type want (READY, ACK) or an
 * ERROR. status/time/msg from its payload. */
static int read_answer(struct migration *m, uint16_t want, int32_t *status, uint64_t *time_ns,
		       char *msg, size_t msglen)
{
	uint8_t hdr[MIG_HDR_LEN], buf[16 + MIG_MSG_MAX];
	uint16_t type, flags;
	uint32_t len;
	int ret = mig_conn_read(m->conn, hdr, sizeof(hdr));

	if (ret)
		return fail(m, ret, "waiting for the destination: %s", mig_conn_error(m->conn));
	mig_hdr_get(hdr, &type, &flags, &len);
	if ((type != want && type != MIG_REC_ERROR) || flags || len > sizeof(buf))
		return fail(m, -EPROTO, "unexpected answer from the destination (record %u)", type);
	ret = mig_conn_read(m->conn, buf, len);
	if (ret)
		return fail(m, ret, "waiting for the destination: %s", mig_conn_error(m->conn));
	if (mig_status_get(buf, len, type, status, time_ns, msg, msglen))
		return fail(m, -EPROTO, "malformed answer from the destination");
	if (type == MIG_REC_ERROR && !*status)
		*status = EPROTO;
	return 0;
}

static int handshake(struct migration *m)
{
	uint8_t hello[MIG_HELLO_LEN];
	struct mig_hello h = {
		.version = MIG_VERSION,
		.page_size = MIG_PAGE_SIZE,
		.ram_size = m->vm->mem.size,
		.low_size = m->vm->mem.low_size,
		.nr_vcpus = m->vm->nr_vcpus,
		.nr_disks = m->include_storage ? m->storage.n
					       : m->vm->cfg ? m->vm->cfg->nr_disks : 0,
		.flags = m->include_storage ? MIG_FLAG_STORAGE : 0,
	};
	char msg[MIG_MSG_MAX + 1] = "";
	int32_t st = 0;
	char err[256] = "";
	struct mig_conn *conn;
	int fd = m->sock_fd, ret;

	m->sock_fd = -1;
	if (fd < 0 && (fd = connect_tcp(m)) < 0)
		return fd;
	ret = mig_conn_open(&conn, fd, false, &m->tls, MIG_IO_TIMEOUT_MS, err, sizeof(err));
	if (ret)
		return fail(m, ret, "%s", err);
	pthread_mutex_lock(&m->lock); /* migrate_destroy may abort it */
	m->conn = conn;
	pthread_mutex_unlock(&m->lock);
	if (m->cancel)
		return fail(m, -ECANCELED, "cancelled");
	log_info("migration: connected to %s", mig_conn_peer(m->conn));
	mig_hello_put(hello, &h);
	ret = mig_conn_send(m->conn, MIG_REC_HELLO, hello, sizeof(hello));
	if (ret)
		return fail(m, ret, "sending HELLO: %s", mig_conn_error(m->conn));
	ret = read_answer(m, MIG_REC_READY, &st, NULL, msg, sizeof(msg));
	if (ret)
		return ret;
	if (st)
		return fail(m, -ECONNREFUSED, "the destination refused: %s", msg);
	if (!m->include_storage)
		return 0;
	/* The disk list is answered like the HELLO: a refusal (sizes) comes
	 * back with its reason before any disk data is on its way. */
	if ((ret = mig_storage_send_list(&m->storage, m->conn, err, sizeof(err))))
		return fail(m, ret, "%s", err);
	ret = read_answer(m, MIG_REC_READY, &st, NULL, msg, sizeof(msg));
	if (ret)
		return ret;
	if (st)
		return fail(m, -ECONNREFUSED, "the destination refused the disks: %s", msg);
	return 0;
}

/* --- the rounds ------------------------------------------------------ */

/* After a sync: stop pre-copying when the dirty set fits the downtime at
 * the measured rate, or the round cap is reached; step the throttle up when
 * the guest keeps dirtying more than half of what the link moved. */
static bool converged(struct migration *m, uint64_t dirty, uint64_t round_ns,
		      uint64_t round_bytes)
{
	uint64_t rate = round_ns ? round_bytes * 1000000000ull / round_ns : 0;
	uint64_t need_ns = rate ? dirty * MIG_PAGE_SIZE * 1000000000ull / rate : UINT64_MAX;

	pthread_mutex_lock(&m->lock);
	m->rate = rate ? rate : m->rate;
	m->remaining = dirty;
	pthread_mutex_unlock(&m->lock);
	m->expected_ns = need_ns;
	if (dirty == 0 || need_ns <= (uint64_t)m->downtime_ms * 1000000ull / 2)
		return true; /* half the budget for the pages, half for state and ack */
	if (m->round >= m->max_rounds) {
		log_info("migration: %u rounds without converging; stopping with %llu pages left",
			 m->round, (unsigned long long)dirty);
		return true;
	}
	if (dirty * MIG_PAGE_SIZE * 2 > round_bytes) {
		if (++m->slow_rounds >= 2) {
			/* Aim straight at a throttle that leaves the guest dirtying
			 * half the link rate: the unthrottled dirty rate is the
			 * measured one over the share the vCPUs still run. */
			uint64_t run_pct = 100 - m->throttle;
			uint64_t d0 = round_ns ? dirty * MIG_PAGE_SIZE * 1000000000ull / round_ns *
						  100 / run_pct : 0;
			unsigned want = d0 > rate / 2 && d0 ? (unsigned)(100 - rate * 50 / d0) : 0;
			unsigned pct = MAX(m->throttle ? m->throttle + 10 : 20u, want);

			mig_throttle_set(m, MIN(pct, 95u));
			m->slow_rounds = 0;
		}
	} else {
		m->slow_rounds = 0;
	}
	return false;
}

/* Wait until the destination has applied everything sent so far: what
 * sits in socket buffers would otherwise be paid for during the downtime. */
static int drain(struct migration *m)
{
	uint8_t hdr[MIG_HDR_LEN], tok[8];
	uint64_t want = ++m->sync_token, got;
	uint16_t type, flags;
	uint32_t len;
	int ret;

	ret = mig_conn_send(m->conn, MIG_REC_SYNC, &want, sizeof(want));
	if (!ret)
		ret = mig_conn_read(m->conn, hdr, sizeof(hdr));
	if (ret)
		return fail(m, ret, "draining the stream: %s", mig_conn_error(m->conn));
	mig_hdr_get(hdr, &type, &flags, &len);
	if (type != MIG_REC_SYNC || flags || len != 8 || mig_conn_read(m->conn, tok, 8))
		return fail(m, -EPROTO, "unexpected answer from the destination (record %u)", type);
	memcpy(&got, tok, 8);
	return got == want ? 0 : fail(m, -EPROTO, "the destination echoed the wrong token");
}

static int precopy(struct migration *m)
{
	char err[200];
	int ret;

	ret = mig_dirty_start(&m->dirty, m->vm, err, sizeof(err));
	if (ret)
		return fail(m, ret, "%s", err);
	m->bw_t0 = mono_ns();
	m->bw_bytes0 = mig_conn_bytes_out(m->conn);
	set_phase(m, "precopy");
	for (;;) {
		uint64_t t0 = mono_ns(), b0 = mig_conn_bytes_out(m->conn), dirty;

		pthread_mutex_lock(&m->lock);
		m->round++;
		pthread_mutex_unlock(&m->lock);
		ret = send_disks(m, m->round == 1);
		if (!ret)
			ret = m->round == 1 ? send_all(m) : send_dirty(m);
		if (ret)
			return ret;
		ret = mig_dirty_sync(&m->dirty, err, sizeof(err));
		if (ret)
			return fail(m, ret, "%s", err);
		dirty = dirty_pages(m);
		pthread_mutex_lock(&m->lock);
		m->bytes = mig_conn_bytes_out(m->conn);
		pthread_mutex_unlock(&m->lock);
		log_debug("migration: round %u: %llu bytes in %llu ms, %llu pages dirty", m->round,
			  (unsigned long long)(mig_conn_bytes_out(m->conn) - b0),
			  (unsigned long long)((mono_ns() - t0) / 1000000),
			  (unsigned long long)dirty);
		if (!converged(m, dirty, mono_ns() - t0, mig_conn_bytes_out(m->conn) - b0))
			continue;
		/* Looks done: drain the pipe, then look again at what the guest
		 * dirtied meanwhile; stop only if that still fits. */
		if ((ret = drain(m)))
			return ret;
		ret = mig_dirty_sync(&m->dirty, err, sizeof(err));
		if (ret)
			return fail(m, ret, "%s", err);
		dirty = dirty_pages(m);
		if (m->round >= m->max_rounds || dirty == 0 ||
		    (m->rate && dirty * MIG_PAGE_SIZE * 1000000000ull / m->rate <=
					(uint64_t)m->downtime_ms * 1000000ull / 2))
			return 0;
		log_debug("migration: %llu pages dirtied while draining: another round",
			  (unsigned long long)dirty);
	}
}

/* Pause, last pages, state, COMPLETE, ack. On success the VM stays paused. */
static int stop_and_copy(struct migration *m)
{
	struct state_writer w;
	uint8_t rec[24];
	uint64_t rounds, pages, t_saved, t_pages, t_sent, last_pages, last_disk;
	char err[200], msg[MIG_MSG_MAX + 1] = "";
	int32_t st = 0;
	int ret;

	set_phase(m, "stop-and-copy");
	m->was_paused = vm_paused(m->vm);
	vm_pause(m->vm);
	m->paused = true;
	m->pause_ns = mig_realtime_ns();
	m->pause_mono = mono_ns();
	/* Throttle off, but its thread is joined only after the ack: it may
	 * be in the middle of a 10 ms sleep, which is not downtime to pay. */
	atomic_store(&m->vm->throttle_pct, 0);
	m->throttle_quit = true;
	if (vm_exiting(m->vm))
		return fail(m, -ECANCELED, "the VM is ending");
	/* Device back ends quiesce inside the save; the pages their last
	 * completions wrote are in the sync after it. */
	state_writer_init(&w);
	ret = vm_state_save(m->vm, &w);
	if (!ret)
		ret = state_writer_error(&w);
	if (ret) {
		state_writer_free(&w);
		return fail(m, ret, "saving the device state: %s", strerror(-ret));
	}
	t_saved = mono_ns();
	if (w.len > MIG_STATE_MAX) {
		state_writer_free(&w);
		return fail(m, -EFBIG, "device state of %zu bytes is too large", w.len);
	}
	m->round++;
	last_pages = m->pages_sent + m->zero_sent;
	last_disk = m->storage.data_bytes;
	ret = mig_dirty_sync(&m->dirty, err, sizeof(err));
	if (ret)
		fail(m, ret, "%s", err);
	else if (!(ret = send_disks(m, false))) /* quiesced: every write is marked */
		ret = send_dirty(m);
	last_pages = m->pages_sent + m->zero_sent - last_pages;
	last_disk = m->storage.data_bytes - last_disk;
	t_pages = mono_ns();
	if (!ret) {
		ret = mig_conn_send(m->conn, MIG_REC_STATE, w.buf, (uint32_t)w.len);
		if (ret)
			fail(m, ret, "sending the device state: %s", mig_conn_error(m->conn));
	}
	m->state_bytes = w.len;
	state_writer_free(&w);
	if (ret)
		return ret;
	rounds = m->round;
	pages = m->pages_sent;
	memcpy(rec, &m->pause_ns, 8);
	memcpy(rec + 8, &rounds, 8);
	memcpy(rec + 16, &pages, 8);
	ret = mig_conn_send(m->conn, MIG_REC_COMPLETE, rec, sizeof(rec));
	if (ret)
		return fail(m, ret, "sending COMPLETE: %s", mig_conn_error(m->conn));
	t_sent = mono_ns();
	set_phase(m, "waiting-ack");
	ret = read_answer(m, MIG_REC_ACK, &st, &m->resume_ns, msg, sizeof(msg));
	if (ret)
		return ret;
	/* Where the downtime went (the destination logs its own share). */
	log_info("migration: stop-and-copy: device state %.1f ms (%llu bytes), last %llu pages "
		 "and %llu disk bytes %.1f ms, state and COMPLETE sent %.1f ms, ack after %.1f ms",
		 (double)(t_saved - m->pause_mono) / 1e6, (unsigned long long)m->state_bytes,
		 (unsigned long long)last_pages, (unsigned long long)last_disk,
		 (double)(t_pages - t_saved) / 1e6,
		 (double)(t_sent - t_pages) / 1e6, (double)(mono_ns() - t_sent) / 1e6);
	if (st)
		return fail(m, -st > 0 ? -EPROTO : -st, "the destination failed: %s", msg);
	return 0;
}

static void *migrate_thread(void *arg)
{
	struct migration *m = arg;
	struct mig_conn *conn;
	uint64_t one = 1;
	int ret;

	pthread_setname_np(pthread_self(), "migrate");
	set_phase(m, "connecting");
	ret = vm_thread_seccomp(m->vm->migration_filter);
	if (ret)
		fail(m, ret, "seccomp: %s", strerror(-ret));
	if (!ret && m->include_storage) {
		char err[200];

		/* Tracking starts before anything is read: no write is missed. */
		ret = mig_storage_start(&m->storage, m->vm, err, sizeof(err));
		if (ret)
			fail(m, ret, "include_storage: %s", err);
	}
	if (!ret)
		ret = handshake(m);
	if (!ret)
		ret = precopy(m);
	if (!ret && !m->cancel)
		ret = stop_and_copy(m);
	if (!ret && m->cancel)
		ret = fail(m, -ECANCELED, "cancelled");
	m->total_ns = mono_ns() - m->t0;
	mig_throttle_set(m, 0);
	/* Done with the disks either way (on success the VM stays paused). */
	mig_storage_stop(&m->storage);
	if (ret) {
		/* Not acknowledged: the VM goes on here as if nothing happened. */
		mig_dirty_stop(&m->dirty);
		if (m->conn) {
			uint8_t p[8 + MIG_MSG_MAX];

			if (mig_conn_send(m->conn, MIG_REC_ERROR, p,
					  mig_status_put(p, MIG_REC_ERROR, -ret, 0, m->error)))
				log_debug("migration: cannot tell the destination");
		}
		if (m->paused && !m->was_paused)
			vm_resume(m->vm);
		if (m->paused)
			log_info("migration failed after %llu ms paused; the VM runs on here",
				 (unsigned long long)((mono_ns() - m->pause_mono) / 1000000));
	}
	m->result = ret;
	pthread_mutex_lock(&m->lock);
	conn = m->conn;
	m->conn = NULL;
	pthread_mutex_unlock(&m->lock);
	mig_conn_close(conn);
	set_phase(m, ret ? "failed" : "completed");
	if (write(m->done_fd, &one, sizeof(one)) != sizeof(one))
		log_warn("migration: cannot signal the I/O loop");
	return NULL;
}

/* --- control side ---------------------------------------------------- */

static void on_done(void *opaque, uint32_t events)
{
	struct migration *m = opaque;
	uint64_t v;
	json_t *rep;

	(void)events;
	if (read(m->done_fd, &v, sizeof(v)) != sizeof(v))
		return;
	evloop_del(m->vm->loop, m->done_fd);
	pthread_join(m->thread, NULL);
	m->thread_started = false;
	if (m->result) {
		log_err("migration failed: %s", m->error);
		rep = json_pack("{s:b, s:s}", "ok", 0, "error", m->error);
	} else {
		uint64_t down = m->resume_ns > m->pause_ns ? m->resume_ns - m->pause_ns : 0;

		m->downtime_ns = down;
		log_info("migration: completed in %llu ms, %u rounds, %llu bytes, downtime %.3f ms",
			 (unsigned long long)(m->total_ns / 1000000), m->round,
			 (unsigned long long)m->bytes, (double)down / 1e6);
		rep = json_pack("{s:b, s:I, s:f, s:i, s:I, s:I, s:I}", "ok", 1, "total_ms",
				(json_int_t)(m->total_ns / 1000000), "downtime_ms",
				(double)down / 1e6, "rounds", (int)m->round, "bytes",
				(json_int_t)m->bytes, "pages", (json_int_t)m->pages_sent,
				"zero_pages", (json_int_t)m->zero_sent);
		if (rep && m->include_storage) {
			json_object_set_new(rep, "disk_bytes",
					    json_integer((json_int_t)m->storage.data_bytes));
			json_object_set_new(rep, "disk_zero_bytes",
					    json_integer((json_int_t)m->storage.zero_bytes));
		}
	}
	m->running = false;
	m->done(m->opaque, rep, m->result == 0);
}

bool migrate_running(const struct migration *m)
{
	return m && m->running;
}

json_t *migrate_progress(struct migration *m)
{
	json_t *j;

	pthread_mutex_lock(&m->lock);
	j = json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:i, s:I}", "phase", m->phase, "round",
		      (int)m->round, "ram_bytes", (json_int_t)m->vm->mem.size, "bytes",
		      (json_int_t)m->bytes, "remaining_pages", (json_int_t)m->remaining,
		      "rate_bps", (json_int_t)m->rate, "throttle_pct", (int)m->throttle,
		      "elapsed_ms", (json_int_t)((mono_ns() - m->t0) / 1000000));
	if (j && m->error[0])
		json_object_set_new(j, "error", json_string(m->error));
	if (j && m->include_storage) /* read unlocked: a progress figure */
		json_object_set_new(j, "disk_bytes", json_integer((json_int_t)m->storage.data_bytes));
	pthread_mutex_unlock(&m->lock);
	return j;
}

void migrate_destroy(struct migration *m)
{
	if (!m)
		return;
	if (m->thread_started) {
		m->cancel = true;
		pthread_mutex_lock(&m->lock);
		mig_conn_abort(m->conn); /* blocked reads and writes fail now */
		pthread_mutex_unlock(&m->lock);
		pthread_join(m->thread, NULL);
		evloop_del(m->vm->loop, m->done_fd);
	}
	mig_throttle_stop(m);
	mig_dirty_stop(&m->dirty);
	mig_storage_stop(&m->storage);
	if (m->sock_fd >= 0)
		close(m->sock_fd);
	if (m->done_fd >= 0)
		close(m->done_fd);
	free(m->batch.zero);
	mig_params_free(m);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

int migrate_start(struct migration **out, struct vm *vm, json_t *req, int sock_fd,
		  migrate_done_fn done, void *opaque, char *err, size_t errlen)
{
	struct migration *m = calloc(1, sizeof(*m));
	int ret;

	if (!m) {
		if (sock_fd >= 0)
			close(sock_fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->vm = vm;
	m->sock_fd = sock_fd;
	m->done = done;
	m->opaque = opaque;
	m->phase = "starting";
	m->t0 = mono_ns();
	m->downtime_ms = MIG_DEFAULT_DOWNTIME_MS;
	m->max_rounds = MIG_DEFAULT_MAX_ROUNDS;
	m->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->batch.zero = malloc(8 + (size_t)MIG_ZERO_MAX * 8);
	ret = mig_params_parse(m, req, err, errlen);
	if (!ret && (m->done_fd < 0 || !m->batch.zero)) {
		snprintf(err, errlen, "out of resources: %s", strerror(errno));
		ret = -ENOMEM;
	}
	if (!ret && (ret = evloop_add(vm->loop, m->done_fd, EPOLLIN, on_done, m)))
		snprintf(err, errlen, "cannot watch the migration: %s", strerror(-ret));
	if (!ret) {
		m->running = true;
		ret = -pthread_create(&m->thread, NULL, migrate_thread, m);
		if (ret) {
			m->running = false;
			evloop_del(vm->loop, m->done_fd);
			snprintf(err, errlen, "cannot start the migration thread: %s", strerror(-ret));
		}
	}
	if (ret) {
		migrate_destroy(m);
		return ret;
	}
	m->thread_started = true;
	*out = m;
	return 0;
}
