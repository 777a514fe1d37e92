/* mem_uffd.c: restored RAM filled through userfaultfd in 2 MiB blocks (see
 * mem_uffd.h). */
#include "mem_uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "mem_prefetch.h"
#include "mem_prefetch_priv.h"
#include "uffd_compat.h"
#include "vm.h"
#include "worker_exit.h"

#define BLOCK MEM_UFFD_BLOCK
#define BLOCK_PAGES (BLOCK / PAGE)

static void plan_build(struct mem_prefetch *pf);

bool guest_mem_uffd_wanted(void)
{
	const char *v = getenv("CELLA_RESTORE_FILL");

	return !v || strcmp(v, "populate") != 0;
}

/* A userfaultfd that also reports the kernel's own faults (KVM's): from
 * /dev/userfaultfd (Linux 6.1; its permissions decide) or the system call
 * (needs CAP_SYS_PTRACE unless vm.unprivileged_userfaultfd is 1). */
static int uffd_open(int given)
{
	int dev = given >= 0 ? given : open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), fd = -1;

	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		if (dev != given)
			close(dev);
	}
	if (fd < 0)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

/* A userfaultfd with UFFDIO_MOVE when the kernel has it (a failed
 * UFFDIO_API leaves the descriptor unusable: a second one then). */
static int uffd_create(int dev, bool *move)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
	int fd = uffd_open(dev);

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) == 0) {
		*move = true;
		return fd;
	}
	close(fd);
	fd = uffd_open(dev);
	if (fd < 0)
		return fd;
	api = (struct uffdio_api){ .api = UFFD_API };
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	*move = false;
	return fd;
}

/* Anonymous memory of `size` bytes at a 2 MiB boundary (huge pages need
 * it, and KVM maps 2 MiB only where guest and host addresses agree). */
void *guest_mem_map_aligned(uint64_t size)
{
	uint8_t *p = mmap(NULL, size + BLOCK, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (uint8_t *)ALIGN_UP((uintptr_t)p, BLOCK);
	if (a > p)
		munmap(p, (size_t)(a - p));
	munmap(a + size, (size_t)(p + size + BLOCK - (a + size)));
	madvise(a, size, MADV_HUGEPAGE);
	madvise(a, size, MADV_DONTDUMP);
	/* Nor in the KVM teardown child (vm_defer_kernel_teardown). */
	madvise(a, size, MADV_DONTFORK);
	return a;
}

static void uffd_release(struct mem_uffd *u, uint8_t *host, uint64_t size)
{
	if (u->fd >= 0)
		close(u->fd);
	if (u->wake_fd >= 0)
		close(u->wake_fd);
	if (u->staging)
		munmap(u->staging, BLOCK);
	if (host)
		munmap(host, size);
	free(u->page);
	free(u->filled);
	free(u);
}

int guest_mem_init_uffd(struct guest_mem *m, uint64_t size, int fd, uint64_t off, int dev)
{
	return guest_mem_init_uffd_at(m, size, fd, off, dev, NULL);
}

int guest_mem_init_uffd_at(struct guest_mem *m, uint64_t size, int fd, uint64_t off, int dev,
			   void *at)
{
	struct uffdio_register reg = { 0 };
	struct mem_uffd *u;
	struct stat st;
	uint8_t *host = NULL;
	int ret;

	memset(m, 0, sizeof(*m));
	m->memfd = m->file_fd = m->pagemap_fd = -1;
	if (size == 0 || size % BLOCK || off % PAGE)
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < off || (uint64_t)st.st_size - off < size)
		return -EINVAL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->wake_fd = -1;
	u->fd = uffd_create(dev, &u->move);
	if (u->fd < 0) {
		ret = u->fd;
		u->fd = -1;
		goto fail;
	}
	u->nblocks = size / BLOCK;
	u->filled = calloc((size_t)((u->nblocks + BITS - 1) / BITS), sizeof(unsigned long));
	u->page = aligned_alloc(PAGE, PAGE);
	u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	host = at ? at : guest_mem_map_aligned(size);
	u->staging = guest_mem_map_aligned(BLOCK);
	if (!u->filled || !u->page || u->wake_fd < 0 || !host || !u->staging) {
		ret = u->wake_fd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	reg.range.start = (uintptr_t)host;
	reg.range.len = size;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(u->fd, UFFDIO_REGISTER, &reg) < 0) {
		ret = -errno;
		goto fail;
	}
	if (!(reg.ioctls & (1ULL << _UFFDIO_COPY))) {
		ret = -ENOTSUP;
		goto fail;
	}
	atomic_store(&u->registered, true);
	m->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (m->file_fd < 0) {
		ret = -errno;
		goto fail;
	}
	m->host = host;
	m->file_off = off;
	m->size = size;
	m->low_size = size < MEM_HOLE_START ? size : MEM_HOLE_START;
	m->high_size = size - m->low_size;
	m->uffd = u;
	/* For a later save: which pages the guest has (guest_mem_populated). */
	m->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ret = guest_mem_prefetch_prepare(m);
	if (!ret) {
		m->prefetch->setup = true;
		ret = mem_uffd_thread_start(m->prefetch);
	}
	if (ret) {
		guest_mem_prefetch_free(m);
		close(m->file_fd);
		if (m->pagemap_fd >= 0)
			close(m->pagemap_fd);
		memset(m, 0, sizeof(*m));
		m->memfd = m->file_fd = m->pagemap_fd = -1;
		goto fail;
	}
	return 0;
fail:
	uffd_release(u, at ? NULL : host, size); /* closing the uffd unregisters `at` */
	return ret;
}

void guest_mem_uffd_free(struct guest_mem *m)
{
	if (!m->uffd)
		return;
	/* RAM itself is unmapped by guest_mem_destroy. */
	uffd_release(m->uffd, NULL, 0);
	m->uffd = NULL;
}

static bool block_filled(const struct mem_uffd *u, uint64_t b)
{
	return __atomic_load_n(&u->filled[b / BITS], __ATOMIC_ACQUIRE) & (1UL << (b % BITS));
}

static void wake_range(struct mem_uffd *u, uint8_t *p, uint64_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)p, .len = len };

	ioctl(u->fd, UFFDIO_WAKE, &r);
}

/* Read [off, off + len) of RAM's bytes from the file into buf. The state
 * file is the VM's memory: one that cannot be read leaves nothing to run
 * (as a SIGBUS would with the file mapping), so the worker ends. */
static void read_file(struct mem_prefetch *pf, uint8_t *buf, uint64_t off, uint64_t len)
{
	const struct guest_mem *m = pf->m;

	for (uint64_t done = 0; done < len;) {
		ssize_t n = pread(m->file_fd, buf + done, len - done,
				  (off_t)(m->file_off + off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_err("restore: cannot read guest memory at offset %llu of the state file: "
				"%s; the VM cannot go on", (unsigned long long)(m->file_off + off + done),
				n < 0 ? strerror(errno) : "end of file");
			_exit(WORKER_EXIT_ERROR);
		}
		done += (uint64_t)n;
	}
}

/* Copy n pages from src to RAM offset off one by one: pages already in
 * place (EEXIST) are left as they are. Returns pages copied. */
static uint64_t copy_pages(struct mem_prefetch *pf, const uint8_t *src, uint64_t off, uint64_t n)
{
	struct mem_uffd *u = pf->m->uffd;
	uint64_t done = 0;

	for (uint64_t i = 0; i < n; i++) {
		struct uffdio_copy c = { .dst = (uintptr_t)(pf->m->host + off + i * PAGE),
					 .src = (uintptr_t)(src + i * PAGE), .len = PAGE };

		if (ioctl(u->fd, UFFDIO_COPY, &c) == 0)
			done++;
		else if (errno != EEXIST)
			atomic_fetch_add(&pf->errors, 1);
	}
	return done;
}

static bool page_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

/* Whether fewer than a quarter of the block's pages hold anything: such a
 * block is put in place page by page, its zero pages left out (they read
 * as zeros anyway), rather than cost a whole huge page of host memory. */
static bool block_sparse(const uint8_t *p)
{
	uint64_t data = 0;

	for (uint64_t i = 0; i < BLOCK_PAGES; i++)
		if (!page_zero(p + i * PAGE) && ++data >= BLOCK_PAGES / 4)
			return false;
	return true;
}

/* Put block b in place (called with pf->lock held): all of it with one
 * move (or copy), or page by page where some pages are given back or
 * already there, or where most are zeros (then the zero pages are left
 * out, but for the page at RAM offset `want`, the one a fault waits for;
 * UINT64_MAX: none). */
static void fill_block_locked(struct mem_prefetch *pf, uint64_t b, uint64_t want)
{
	struct mem_uffd *u = pf->m->uffd;
	uint64_t off = b * BLOCK, first = off / PAGE, done = 0;
	uint8_t *dst = pf->m->host + off;
	bool any_gone = false, sparse;

	for (uint64_t i = 0; i < BLOCK_PAGES && !any_gone; i++)
		any_gone = page_gone(pf, first + i);
	read_file(pf, u->staging, off, BLOCK);
	sparse = block_sparse(u->staging);
	if (!any_gone && !sparse) {
		if (u->move) {
			struct uffdio_move mv = { .dst = (uintptr_t)dst, .src = (uintptr_t)u->staging,
						  .len = BLOCK };

			if (ioctl(u->fd, UFFDIO_MOVE, &mv) == 0)
				done = BLOCK;
			else if (mv.move > 0)
				done = (uint64_t)mv.move;
		} else {
			struct uffdio_copy c = { .dst = (uintptr_t)dst, .src = (uintptr_t)u->staging,
						 .len = BLOCK };

			if (ioctl(u->fd, UFFDIO_COPY, &c) == 0)
				done = BLOCK;
			else if (c.copy > 0)
				done = (uint64_t)c.copy;
		}
		done = ALIGN_DOWN(done, PAGE);
		atomic_fetch_add(&pf->written, done / PAGE);
		if (done < BLOCK)
			atomic_fetch_add(&pf->written, copy_pages(pf, u->staging + done, off + done,
								  (BLOCK - done) / PAGE));
	} else {
		for (uint64_t i = 0; i < BLOCK_PAGES; i++) {
			if (page_gone(pf, first + i))
				atomic_fetch_add(&pf->skipped, 1);
			else if (!sparse || off + i * PAGE == want || !page_zero(u->staging + i * PAGE))
				atomic_fetch_add(&pf->written,
						 copy_pages(pf, u->staging + i * PAGE, off + i * PAGE, 1));
		}
	}
	__atomic_fetch_or(&u->filled[b / BITS], 1UL << (b % BITS), __ATOMIC_RELEASE);
	/* A fault on a page that was already there (or given back, left
	 * missing) is answered by its own event; those on pages put in place
	 * one by one are woken here. */
	if (done < BLOCK)
		wake_range(u, dst, BLOCK);
}

static void fill_block(struct mem_prefetch *pf, uint64_t b, uint64_t want)
{
	if (block_filled(pf->m->uffd, b))
		return;
	pthread_mutex_lock(&pf->lock);
	if (!block_filled(pf->m->uffd, b))
		fill_block_locked(pf, b, want);
	pthread_mutex_unlock(&pf->lock);
}

/* A fault on a page of a block already in place: a page the balloon gave
 * back since (zeros), or one put in place after the fault was reported. */
static void fill_page(struct mem_prefetch *pf, uint64_t off)
{
	struct mem_uffd *u = pf->m->uffd;
	uint8_t *dst = pf->m->host + off;
	int ret;

	pthread_mutex_lock(&pf->lock);
	if (page_gone(pf, off / PAGE)) {
		struct uffdio_zeropage z = { .range = { .start = (uintptr_t)dst, .len = PAGE } };

		ret = ioctl(u->fd, UFFDIO_ZEROPAGE, &z);
	} else {
		struct uffdio_copy c = { .dst = (uintptr_t)dst, .src = (uintptr_t)u->page,
					 .len = PAGE };

		read_file(pf, u->page, off, PAGE);
		ret = ioctl(u->fd, UFFDIO_COPY, &c);
	}
	if (ret < 0) {
		if (errno != EEXIST)
			atomic_fetch_add(&pf->errors, 1);
		wake_range(u, dst, PAGE);
	}
	pthread_mutex_unlock(&pf->lock);
}

/* Answer the faults the kernel has queued. The registered range is RAM
 * exactly, so an address outside it is a kernel surprise: counted and
 * logged once, never acted on. */
static void serve_faults(struct mem_prefetch *pf)
{
	struct mem_uffd *u = pf->m->uffd;
	struct uffd_msg msg[16];
	ssize_t n;

	while ((n = read(u->fd, msg, sizeof(msg))) > 0) {
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
			uint64_t a = msg[i].arg.pagefault.address, off;

			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (a < (uintptr_t)pf->m->host || a - (uintptr_t)pf->m->host >= pf->m->size) {
				if (atomic_fetch_add(&u->outside, 1) == 0)
					log_warn("restore: a fault at 0x%llx, outside guest RAM, ignored",
						 (unsigned long long)a);
				continue;
			}
			off = ALIGN_DOWN(a - (uintptr_t)pf->m->host, PAGE);
			atomic_fetch_add(&pf->faults, 1);
			if (!block_filled(u, off / BLOCK))
				fill_block(pf, off / BLOCK, off);
			else
				fill_page(pf, off);
		}
	}
}

/* Every planned block is in place: what is still missing has no data in
 * the file, and reads as zeros once the range is a plain anonymous one. */
static void uffd_finish(struct mem_prefetch *pf)
{
	struct mem_uffd *u = pf->m->uffd;
	struct uffdio_range r = { .start = (uintptr_t)pf->m->host, .len = pf->m->size };

	serve_faults(pf);
	if (ioctl(u->fd, UFFDIO_UNREGISTER, &r) < 0) {
		log_warn("restore: cannot unregister guest memory from userfaultfd: %s; its faults "
			 "are still answered", strerror(errno));
		return;
	}
	atomic_store(&u->registered, false);
}

static void pf_log_end(struct mem_prefetch *pf, int state)
{
	static const char *const names[] = { "running", "done", "stopped", "failed" };

	atomic_store(&pf->ms, pf_ms_since(&pf->t0));
	log_info("restore prefetch %s: %llu pages in place (%llu guest faults answered), %llu "
		 "given back, in %llu ms (userfaultfd, %s)", names[state],
		 (unsigned long long)atomic_load(&pf->written),
		 (unsigned long long)atomic_load(&pf->faults),
		 (unsigned long long)atomic_load(&pf->skipped), (unsigned long long)atomic_load(&pf->ms),
		 pf->m->uffd->move ? "2 MiB moves" : "copies");
	atomic_store(&pf->state, state);
}

static void *uffd_main(void *arg)
{
	struct mem_prefetch *pf = arg;
	struct mem_uffd *u = pf->m->uffd;
	bool stopped = false;

	prctl(PR_SET_NAME, pf->setup ? "cella-uffd" : "cella-prefetch", 0, 0, 0);
	/* No way out here: the guest's faults wait for this thread. */
	if (!pf->setup && vm_thread_seccomp(pf->filter))
		log_err("restore prefetch: cannot install its seccomp filter (%s); it runs under "
			"the worker's", strerror(errno));
	if (!pf->setup)
		plan_build(pf);
	while (!atomic_load(&pf->quit)) {
		struct pollfd p[2] = { { .fd = u->fd, .events = POLLIN },
				       { .fd = u->wake_fd, .events = POLLIN } };
		bool work;
		uint64_t v;

		if (!pf->setup && atomic_load(&pf->stop) && !stopped) {
			stopped = true; /* a migration: the faults are still answered */
			pf_log_end(pf, PF_STOPPED);
		}
		work = !pf->setup && !stopped && pf->next < pf->nplan;
		if (!pf->setup && !stopped && !work) {
			uffd_finish(pf);
			if (!atomic_load(&u->registered)) {
				pf_log_end(pf, PF_DONE);
				return NULL;
			}
			stopped = true;
			pf_log_end(pf, PF_FAILED);
		}
		if (poll(p, 2, work ? 0 : -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents & POLLIN)
			while (read(u->wake_fd, &v, sizeof(v)) > 0)
				;
		if (p[0].revents & POLLIN) {
			serve_faults(pf);
			continue;
		}
		if (work)
			fill_block(pf, pf->plan[pf->next++], UINT64_MAX);
	}
	return NULL;
}

int mem_uffd_thread_start(struct mem_prefetch *pf)
{
	int ret;

	atomic_store(&pf->quit, false);
	pf->joined = false;
	ret = -pthread_create(&pf->thread, NULL, uffd_main, pf);
	pf->started = !ret;
	return ret;
}

void mem_uffd_kick(struct mem_prefetch *pf)
{
	uint64_t one = 1;

	if (write(pf->m->uffd->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("restore prefetch: cannot wake its thread: %s", strerror(errno));
}

void mem_uffd_thread_quit_request(struct mem_prefetch *pf)
{
	if (!pf->started || pf->joined || atomic_load(&pf->quit))
		return;
	atomic_store(&pf->quit, true);
	mem_uffd_kick(pf);
}

void mem_uffd_thread_quit(struct mem_prefetch *pf)
{
	if (!pf->started || pf->joined)
		return;
	mem_uffd_thread_quit_request(pf);
	pthread_join(pf->thread, NULL);
	pf->joined = true;
}

static void plan_add(struct mem_prefetch *pf, unsigned long *listed, uint64_t b)
{
	if (b >= pf->m->uffd->nblocks || (listed[b / BITS] & (1UL << (b % BITS))))
		return;
	listed[b / BITS] |= 1UL << (b % BITS);
	pf->plan[pf->nplan++] = (uint32_t)b;
}

/* The blocks holding file data in RAM bytes [from, to); every block when
 * the file system cannot say. */
static void plan_data(struct mem_prefetch *pf, unsigned long *listed, uint64_t from, uint64_t to)
{
	const struct guest_mem *m = pf->m;
	uint64_t pos = m->file_off + from, end = m->file_off + to;

	while (pos < end) {
		off_t d = lseek(m->file_fd, (off_t)pos, SEEK_DATA), h;

		if (d < 0 && errno == ENXIO)
			return;
		h = d < 0 ? -1 : lseek(m->file_fd, d, SEEK_HOLE);
		if (h < 0) {
			for (uint64_t a = pos; a < end; a += BLOCK)
				plan_add(pf, listed, (a - m->file_off) / BLOCK);
			return;
		}
		if ((uint64_t)d >= end)
			return;
		for (uint64_t a = ALIGN_DOWN((uint64_t)d - m->file_off, BLOCK);
		     a < MIN((uint64_t)h, end) - m->file_off; a += BLOCK)
			plan_add(pf, listed, a / BLOCK);
		pos = (uint64_t)h;
	}
}

int mem_uffd_plan(struct mem_prefetch *pf)
{
	struct mem_uffd *u = pf->m->uffd;

	free(pf->plan);
	free(pf->listed);
	pf->plan = calloc((size_t)u->nblocks, sizeof(pf->plan[0]));
	pf->listed = calloc((size_t)((u->nblocks + BITS - 1) / BITS), sizeof(long));
	pf->nplan = pf->next = 0;
	return pf->plan && pf->listed ? 0 : -ENOMEM;
}

/* The order of mem_prefetch.h, by block: from where the guest was writing
 * last up, then what it wrote, then the rest. On the fill thread (a few
 * lseeks): the vCPUs do not wait for it. */
static void plan_build(struct mem_prefetch *pf)
{
	unsigned long *listed = pf->listed;
	uint64_t head = 0;

	if (pf->order.nr_runs) {
		const struct mem_order_run *last = &pf->order.runs[pf->order.nr_runs - 1];

		head = (last->first + last->count) * PAGE;
	}
	plan_data(pf, listed, ALIGN_DOWN(MIN(head, pf->m->size), BLOCK), pf->m->size);
	for (size_t i = 0; i < pf->order.nr_runs; i++) {
		const struct mem_order_run *r = &pf->order.runs[i];

		for (uint64_t b = r->first * PAGE / BLOCK; b <= (r->first + r->count - 1) * PAGE / BLOCK;
		     b++)
			plan_add(pf, listed, b);
	}
	plan_data(pf, listed, 0, MIN(head, pf->m->size));
}

void mem_uffd_fill_all(struct mem_prefetch *pf)
{
	if (pf->plan && pf->listed) {
		plan_build(pf);
		while (pf->next < pf->nplan)
			fill_block(pf, pf->plan[pf->next++], UINT64_MAX);
	} else {
		/* No memory for a plan: every block (those without data read
		 * zeros from the file's holes). */
		for (uint64_t b = 0; b < pf->m->uffd->nblocks; b++)
			fill_block(pf, b, UINT64_MAX);
	}
	uffd_finish(pf);
	pf_log_end(pf, atomic_load(&pf->m->uffd->registered) ? PF_FAILED : PF_DONE);
}
