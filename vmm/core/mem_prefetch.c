/* mem_prefetch.c: the restore prefetch thread and guest_mem_discard (see
 * mem_prefetch.h). */
#include "mem_prefetch.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mem_prefetch_priv.h"
#include "mem_uffd.h"
#include "state/memorder.h"
#include "vm.h"

static const char *const pf_state_names[] = { "running", "done", "stopped", "failed" };

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Populate [pg, pg+n) (n pages of one chunk), skipping given-back pages.
 * Called with pf->lock held. */
static void populate_chunk(struct mem_prefetch *pf, uint64_t pg, uint64_t n, bool write)
{
	uint64_t end = pg + n;

	while (pg < end) {
		uint64_t run = pg;
		int advice;

		while (pg < end && page_gone(pf, pg))
			pg++;
		atomic_fetch_add(&pf->skipped, pg - run);
		run = pg;
		while (pg < end && !page_gone(pf, pg))
			pg++;
		if (pg == run)
			continue;
		advice = atomic_load(&pf->willneed) ? MADV_WILLNEED
			 : write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;
		if (madvise(pf->m->host + run * PAGE, (pg - run) * PAGE, advice) < 0) {
			if (errno == EINVAL && advice != MADV_WILLNEED) {
				/* Before Linux 5.14: read-ahead is what is left. */
				atomic_store(&pf->willneed, true);
				pg = run;
				continue;
			}
			/* (ENOMEM: the memory cgroup is full, say.) The guest
			 * faults such pages in itself; a prefetch that keeps
			 * failing gives up. */
			atomic_store(&pf->last_err, errno);
			if (atomic_fetch_add(&pf->errors, 1) + 1 >= MEM_PREFETCH_MAX_ERRORS) {
				atomic_store(&pf->gave_up, true);
				atomic_store(&pf->stop, true);
				return;
			}
			continue;
		}
		atomic_fetch_add(write ? &pf->written : &pf->read, pg - run);
	}
}

/* Populate n pages from page pg in chunks; false once asked to stop. */
static bool populate(struct mem_prefetch *pf, uint64_t pg, uint64_t n, bool write)
{
	const uint64_t chunk = MEM_PREFETCH_CHUNK / PAGE;

	while (n) {
		uint64_t k = MIN(n, chunk - pg % chunk);

		if (atomic_load(&pf->stop))
			return false;
		pthread_mutex_lock(&pf->lock);
		populate_chunk(pf, pg, k, write);
		pthread_mutex_unlock(&pf->lock);
		pg += k;
		n -= k;
	}
	return !atomic_load(&pf->stop);
}

/* The file's data extents (SEEK_DATA/SEEK_HOLE) in pages [from, to),
 * write-populated (see mem_prefetch.h). Pages already present cost a
 * page-table walk. */
static bool populate_data(struct mem_prefetch *pf, uint64_t from, uint64_t to)
{
	const struct guest_mem *m = pf->m;
	uint64_t base = m->file_off, end = base + to * PAGE, pos = base + from * PAGE;

	while (pos < end) {
		off_t d = lseek(m->file_fd, (off_t)pos, SEEK_DATA), h;
		uint64_t first, last;

		if (d < 0)
			return errno == ENXIO; /* ENXIO: no data after pos */
		if ((uint64_t)d >= end)
			return true;
		h = lseek(m->file_fd, d, SEEK_HOLE);
		if (h < 0)
			return false;
		first = ((uint64_t)d - base) / PAGE;
		last = (MIN((uint64_t)h, end) - base + PAGE - 1) / PAGE;
		if (!populate(pf, first, last - first, true))
			return true; /* stopped */
		pos = (uint64_t)h;
	}
	return true;
}

static void *prefetch_main(void *arg)
{
	struct mem_prefetch *pf = arg;
	uint64_t npages = pf->m->size / PAGE, head = 0;
	int state = PF_DONE;
	bool ok;

	prctl(PR_SET_NAME, "cella-prefetch", 0, 0, 0);
	if (vm_thread_seccomp(pf->filter)) {
		log_err("restore prefetch: cannot install its seccomp filter: %s", strerror(errno));
		atomic_store(&pf->state, PF_FAILED);
		return NULL;
	}
	/* Where the guest was writing last (the end of the record's last run):
	 * a guest that goes on from there gets the pages ahead of it first;
	 * then what it wrote before (it may come back to it), then the rest. */
	if (pf->order.nr_runs) {
		const struct mem_order_run *last = &pf->order.runs[pf->order.nr_runs - 1];

		head = last->first + last->count;
	}
	ok = populate_data(pf, head, npages);
	for (size_t i = 0; ok && i < pf->order.nr_runs && !atomic_load(&pf->stop); i++) {
		const struct mem_order_run *r = &pf->order.runs[i];

		populate(pf, r->first, r->count, r->flags & MEM_ORDER_WRITTEN);
	}
	if (ok && !atomic_load(&pf->stop))
		ok = populate_data(pf, 0, head);
	if (!ok) {
		log_warn("restore prefetch: cannot find the state file's data: %s", strerror(errno));
		state = PF_FAILED;
	}
	if (atomic_load(&pf->gave_up)) {
		log_warn("restore prefetch: giving up after %d errors (the last: %s); the guest "
			 "faults the rest in itself", MEM_PREFETCH_MAX_ERRORS,
			 strerror(atomic_load(&pf->last_err)));
		state = PF_FAILED;
	} else if (atomic_load(&pf->stop)) {
		state = PF_STOPPED;
	}
	atomic_store(&pf->ms, pf_ms_since(&pf->t0));
	log_info("restore prefetch %s: %llu pages written, %llu read, %llu given back, in %llu ms",
		 pf_state_names[state], (unsigned long long)atomic_load(&pf->written),
		 (unsigned long long)atomic_load(&pf->read),
		 (unsigned long long)atomic_load(&pf->skipped),
		 (unsigned long long)atomic_load(&pf->ms));
	atomic_store(&pf->state, state);
	return NULL;
}

int guest_mem_prefetch_prepare(struct guest_mem *m)
{
	struct mem_prefetch *pf;
	uint64_t npages = m->size / PAGE;

	if (m->file_fd < 0 || !m->host || m->prefetch)
		return 0;
	pf = calloc(1, sizeof(*pf));
	if (!pf)
		return -ENOMEM;
	pf->gone = calloc((size_t)((npages + BITS - 1) / BITS), sizeof(unsigned long));
	if (!pf->gone) {
		free(pf);
		return -ENOMEM;
	}
	pf->m = m;
	pthread_mutex_init(&pf->lock, NULL);
	m->prefetch = pf;
	return 0;
}

int guest_mem_prefetch_start(struct guest_mem *m, struct mem_order *order, const void *filter)
{
	struct mem_prefetch *pf;
	int ret = guest_mem_prefetch_prepare(m);

	pf = m->prefetch;
	if (m->uffd && pf)
		guest_mem_prefetch_setup_end(m);
	if (ret || !pf || pf->started)
		return ret;
	pf->filter = filter;
	if (order) {
		pf->order = *order;
		memset(order, 0, sizeof(*order));
	}
	atomic_store(&pf->state, PF_RUNNING);
	clock_gettime(CLOCK_MONOTONIC, &pf->t0);
	if (m->uffd) {
		ret = mem_uffd_plan(pf);
		if (!ret)
			ret = mem_uffd_thread_start(pf);
		if (ret) {
			/* Nobody would answer the guest's faults: fill it all now. */
			log_warn("restore: no fill thread (%s): reading all saved memory first",
				 strerror(-ret));
			mem_uffd_fill_all(pf);
		}
		return 0;
	}
	ret = -pthread_create(&pf->thread, NULL, prefetch_main, pf);
	if (ret) {
		mem_order_free(&pf->order);
		return ret;
	}
	pf->started = true;
	return 0;
}

void guest_mem_prefetch_stop(struct guest_mem *m)
{
	struct mem_prefetch *pf = m->prefetch;

	if (!pf || !pf->started || pf->joined)
		return;
	atomic_store(&pf->stop, true);
	if (m->uffd) {
		/* The thread goes on answering the guest's faults. */
		if (!pf->setup)
			mem_uffd_kick(pf);
		return;
	}
	pthread_join(pf->thread, NULL);
	pf->joined = true;
}

void guest_mem_prefetch_setup_ending(struct guest_mem *m)
{
	struct mem_prefetch *pf = m->prefetch;

	if (!m->uffd || !pf || !pf->setup)
		return;
	mem_uffd_thread_quit_request(pf);
}

void guest_mem_prefetch_setup_end(struct guest_mem *m)
{
	struct mem_prefetch *pf = m->prefetch;

	if (!m->uffd || !pf || !pf->setup)
		return;
	mem_uffd_thread_quit(pf);
	pf->setup = false;
	pf->started = pf->joined = false;
	atomic_store(&pf->stop, false);
}

void guest_mem_prefetch_free(struct guest_mem *m)
{
	struct mem_prefetch *pf = m->prefetch;

	if (!pf)
		return;
	if (m->uffd)
		mem_uffd_thread_quit(pf);
	else
		guest_mem_prefetch_stop(m);
	pthread_mutex_destroy(&pf->lock);
	mem_order_free(&pf->order);
	free(pf->plan);
	free(pf->listed);
	free(pf->gone);
	free(pf);
	m->prefetch = NULL;
}

bool guest_mem_prefetch_finished(const struct guest_mem *m)
{
	return !m->prefetch || !m->prefetch->started ||
	       atomic_load(&m->prefetch->state) != PF_RUNNING;
}

json_t *guest_mem_prefetch_json(const struct guest_mem *m)
{
	struct mem_prefetch *pf = m->prefetch;
	int state;

	if (!pf || !pf->started)
		return NULL;
	state = atomic_load(&pf->state);
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I}", "state",
			 pf_state_names[state], "recorded_pages", (json_int_t)pf->order.pages,
			 "written_pages", (json_int_t)atomic_load(&pf->written),
			 "read_pages", (json_int_t)atomic_load(&pf->read),
			 "skipped_pages", (json_int_t)atomic_load(&pf->skipped),
			 "errors", (json_int_t)atomic_load(&pf->errors),
			 "ms", (json_int_t)(state == PF_RUNNING ? pf_ms_since(&pf->t0)
					    : atomic_load(&pf->ms)),
			 "method", m->uffd ? "userfaultfd" : atomic_load(&pf->willneed) ? "willneed"
				   : "populate", "faults", (json_int_t)atomic_load(&pf->faults));
}

static int discard(struct guest_mem *m, uint64_t off, uint64_t len)
{
	if (m->memfd >= 0)
		return fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				 (off_t)len) ? -errno : 0;
	/* A restored VM's file mapping: drop the private copy; the page reads
	 * as the state file's bytes again (the guest gave its content up). */
	return madvise(m->host + off, len, MADV_DONTNEED) ? -errno : 0;
}

int guest_mem_discard(struct guest_mem *m, uint64_t off, uint64_t len)
{
	struct mem_prefetch *pf = m->prefetch;
	int ret;

	if (!len || off > m->size || len > m->size - off || !m->host)
		return -EINVAL;
	if (!pf)
		return discard(m, off, len);
	pthread_mutex_lock(&pf->lock);
	for (uint64_t pg = off / PAGE; pg < (off + len + PAGE - 1) / PAGE; pg++)
		pf->gone[pg / BITS] |= 1UL << (pg % BITS);
	ret = discard(m, off, len);
	pthread_mutex_unlock(&pf->lock);
	return ret;
}
