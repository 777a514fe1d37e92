/* mem.c: guest RAM (memfd-backed, or a copy-on-write mapping of a state
 * file for restored VMs) and the bounds-checked guest address accessor. */
#include "mem.h"
#include "mem_prefetch.h"
#include "mem_uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>

#define PAGE_SIZE_4K 4096ULL

static void set_sizes(struct guest_mem *m, uint64_t size)
{
	m->size = size;
	m->low_size = size < MEM_HOLE_START ? size : MEM_HOLE_START;
	m->high_size = size - m->low_size;
}

int guest_mem_init(struct guest_mem *m, uint64_t size)
{
	void *p;

	memset(m, 0, sizeof(*m));
	m->memfd = m->file_fd = m->pagemap_fd = -1;
	if (size == 0 || size % MiB(2))
		return -EINVAL;
	m->memfd = memfd_create("cella-guest-ram", MFD_CLOEXEC);
	if (m->memfd < 0)
		return -errno;
	if (ftruncate(m->memfd, (off_t)size) < 0)
		goto fail;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->memfd, 0);
	if (p == MAP_FAILED)
		goto fail;
	/* Guest RAM may be backed by transparent huge pages; it never goes in core dumps. */
	madvise(p, size, MADV_HUGEPAGE);
	madvise(p, size, MADV_DONTDUMP);
	/* Nor in the KVM teardown child (vm_defer_kernel_teardown): fork
	 * stays cheap whatever the guest size. */
	madvise(p, size, MADV_DONTFORK);
	m->host = p;
	set_sizes(m, size);
	return 0;
fail: {
	int err = -errno;

	close(m->memfd);
	m->memfd = -1;
	return err;
}
}

int guest_mem_init_file(struct guest_mem *m, uint64_t size, int fd, uint64_t off)
{
	return guest_mem_init_file_at(m, size, fd, off, NULL);
}

int guest_mem_init_file_at(struct guest_mem *m, uint64_t size, int fd, uint64_t off, void *at)
{
	struct stat st;
	void *p;
	int err;

	memset(m, 0, sizeof(*m));
	m->memfd = m->file_fd = m->pagemap_fd = -1;
	if (size == 0 || size % MiB(2) || off % PAGE_SIZE_4K)
		return -EINVAL;
	/* A mapping past the end of the file would SIGBUS on first touch. */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < off ||
	    (uint64_t)st.st_size - off < size)
		return -EINVAL;
	m->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (m->file_fd < 0)
		return -errno;
	/* Over a reserved range: the KVM slots that point at it stay valid. */
	p = mmap(at, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_NORESERVE | (at ? MAP_FIXED : 0), m->file_fd, (off_t)off);
	if (p == MAP_FAILED) {
		err = -errno;
		close(m->file_fd);
		m->file_fd = -1;
		return err;
	}
	madvise(p, size, MADV_DONTDUMP);
	/* The teardown child must not keep the state file (and its lock). */
	madvise(p, size, MADV_DONTFORK);
	m->host = p;
	m->file_off = off;
	set_sizes(m, size);
	/* Which pages the guest has written since (private copies) is only
	 * in pagemap; a later save needs it, maybe from inside a sandbox. */
	m->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return 0;
}

void guest_mem_destroy(struct guest_mem *m)
{
	/* The prefetch thread works on the mapping: it ends first. */
	guest_mem_prefetch_free(m);
	guest_mem_uffd_free(m);
	free(m->dirty);
	if (m->host)
		munmap(m->host, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	if (m->file_fd >= 0)
		close(m->file_fd);
	if (m->pagemap_fd >= 0)
		close(m->pagemap_fd);
	memset(m, 0, sizeof(*m));
	m->memfd = m->file_fd = m->pagemap_fd = -1;
}

/* Mark in vec the pages of [base, base + npages pages) of fd that hold
 * data (SEEK_DATA/SEEK_HOLE: tmpfs and most file systems report holes). */
static int mark_file_data(int fd, uint64_t base, size_t npages, uint8_t *vec)
{
	uint64_t end = base + npages * PAGE_SIZE_4K, pos = base;

	while (pos < end) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA), h;

		if (d < 0)
			return errno == ENXIO ? 0 : -errno; /* ENXIO: no data after pos */
		if ((uint64_t)d >= end)
			return 0;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return -errno;
		for (uint64_t a = ALIGN_DOWN((uint64_t)d, PAGE_SIZE_4K);
		     a < MIN((uint64_t)h, end); a += PAGE_SIZE_4K)
			vec[(a - base) / PAGE_SIZE_4K] = 1;
		pos = (uint64_t)h;
	}
	return 0;
}

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)

/* Pages of the mapping that are present or swapped out: the private
 * copies the guest made (and file pages it read, which are data anyway). */
static int mark_pagemap(const struct guest_mem *m, uint64_t off, size_t npages, uint8_t *vec)
{
	uint64_t ent[512];
	uintptr_t first = ((uintptr_t)m->host + off) / PAGE_SIZE_4K;

	for (size_t i = 0; i < npages;) {
		size_t n = MIN(npages - i, ARRAY_SIZE(ent));
		ssize_t got = pread(m->pagemap_fd, ent, n * sizeof(ent[0]),
				    (off_t)((first + i) * sizeof(ent[0])));

		if (got != (ssize_t)(n * sizeof(ent[0])))
			return got < 0 ? -errno : -EIO;
		for (size_t j = 0; j < n; j++)
			if (ent[j] & (PM_PRESENT | PM_SWAPPED))
				vec[i + j] = 1;
		i += n;
	}
	return 0;
}

int guest_mem_populated(const struct guest_mem *m, uint64_t off, size_t npages, uint8_t *vec)
{
	if (off % PAGE_SIZE_4K || off > m->size || npages > (m->size - off) / PAGE_SIZE_4K)
		return -EINVAL;
	memset(vec, 0, npages);
	if (m->memfd >= 0)
		return mark_file_data(m->memfd, off, npages, vec);
	if (m->file_fd < 0 && m->pagemap_fd >= 0)
		return mark_pagemap(m, off, npages, vec); /* anonymous RAM (memory.merge) */
	if (m->file_fd < 0) {
		memset(vec, 1, npages); /* unknown backing: assume data */
		return 0;
	}
	if (m->pagemap_fd < 0) {
		/* No pagemap: mincore finds resident pages, but not swapped-out
		 * private copies; refuse rather than lose guest data. */
		return -ENOTSUP;
	}
	{
		int ret = mark_file_data(m->file_fd, m->file_off + off, npages, vec);

		return ret ? ret : mark_pagemap(m, off, npages, vec);
	}
}

/* Whether every block of [off, off + len) of the hot-pluggable region is
 * plugged. The bitmap changes under the device's lock only; a word read
 * here is atomic, and a race with an unplug is the guest's own doing. */
static bool hp_plugged(const struct guest_mem *m, uint64_t off, uint64_t len)
{
	const unsigned long *map = __atomic_load_n(&m->hp_plugged, __ATOMIC_ACQUIRE);
	const unsigned bits = 8 * sizeof(unsigned long);

	if (!map || !m->hp_block)
		return false;
	for (uint64_t b = off / m->hp_block; b <= (off + (len ? len - 1 : 0)) / m->hp_block; b++)
		if (!((__atomic_load_n(&map[b / bits], __ATOMIC_RELAXED) >> (b % bits)) & 1))
			return false;
	return true;
}

static void *mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len, bool any)
{
	if (!m->host)
		return NULL;
	if (gpa < m->low_size) {
		if (len > m->low_size - gpa)
			return NULL;
		return m->host + gpa;
	}
	if (gpa >= MEM_4G && gpa - MEM_4G < m->high_size) {
		uint64_t off = gpa - MEM_4G;

		if (len > m->high_size - off)
			return NULL;
		return m->host + m->low_size + off;
	}
	if (m->hp_size && gpa >= m->hp_base && gpa - m->hp_base < m->hp_size) {
		uint64_t off = gpa - m->hp_base;

		if (len > m->hp_size - off || (!any && !hp_plugged(m, off, len)))
			return NULL;
		return m->host + m->low_size + m->high_size + off;
	}
	return NULL;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	return mem_ptr(m, gpa, len, false);
}

void *guest_mem_ptr_any(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	return mem_ptr(m, gpa, len, true);
}

int guest_mem_set_hotplug(struct guest_mem *m, uint64_t hp_size)
{
	uint64_t boot;

	if (hp_size % MiB(2) || hp_size >= m->size)
		return -EINVAL;
	boot = m->size - hp_size;
	m->low_size = boot < MEM_HOLE_START ? boot : MEM_HOLE_START;
	m->high_size = boot - m->low_size;
	m->hp_size = hp_size;
	m->hp_base = hp_size ? ALIGN_UP(MEM_4G + m->high_size, GiB(1)) : 0;
	return 0;
}

unsigned guest_mem_slots(const struct guest_mem *m, struct guest_mem_slot s[GUEST_MEM_MAX_SLOTS])
{
	unsigned n = 0;

	s[n++] = (struct guest_mem_slot){ 0, 0, m->low_size, 0 };
	if (m->high_size)
		s[n++] = (struct guest_mem_slot){ 1, MEM_4G, m->high_size, m->low_size };
	if (m->hp_size)
		s[n++] = (struct guest_mem_slot){ 2, m->hp_base, m->hp_size,
						  m->low_size + m->high_size };
	return n;
}

uint64_t guest_mem_gpa_of(const struct guest_mem *m, uint64_t off)
{
	if (off < m->low_size)
		return off;
	off -= m->low_size;
	if (off < m->high_size)
		return MEM_4G + off;
	return m->hp_base + (off - m->high_size);
}

bool guest_mem_is_ram(const struct guest_mem *m, uint64_t gpa)
{
	return guest_mem_ptr(m, gpa, 1) != NULL;
}

int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, size_t len)
{
	const void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, size_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}

#define DIRTY_BITS (8 * sizeof(unsigned long))

int guest_mem_dirty_enable(struct guest_mem *m, bool on)
{
	if (on && !m->dirty) {
		size_t words = (size_t)((m->size / 4096 + DIRTY_BITS - 1) / DIRTY_BITS);

		m->dirty = calloc(words, sizeof(unsigned long));
		if (!m->dirty)
			return -ENOMEM;
	}
	__atomic_store_n(&m->dirty_on, on, __ATOMIC_SEQ_CST);
	return 0;
}

void guest_mem_mark_dirty(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (!len || !__atomic_load_n(&m->dirty_on, __ATOMIC_ACQUIRE))
		return;
	guest_mem_mark_dirty_host(m, guest_mem_ptr(m, gpa, len), len);
}

void guest_mem_mark_dirty_host(const struct guest_mem *m, const void *hp, uint64_t len)
{
	const uint8_t *p = hp;
	uint64_t first, last;

	if (!p || !len || !__atomic_load_n(&m->dirty_on, __ATOMIC_ACQUIRE) || p < m->host ||
	    (uint64_t)(p - m->host) >= m->size || len > m->size - (uint64_t)(p - m->host))
		return;
	first = (uint64_t)(p - m->host) / 4096;
	last = ((uint64_t)(p - m->host) + len - 1) / 4096;
	/* Called after the write: a harvest that clears the bit first sees
	 * the new contents when it copies the page. */
	for (uint64_t pg = first; pg <= last; pg++)
		__atomic_fetch_or(&m->dirty[pg / DIRTY_BITS], 1UL << (pg % DIRTY_BITS),
				  __ATOMIC_SEQ_CST);
}

void guest_mem_dirty_harvest(struct guest_mem *m, unsigned long *out)
{
	size_t words = (size_t)((m->size / 4096 + DIRTY_BITS - 1) / DIRTY_BITS);

	if (!m->dirty)
		return;
	for (size_t i = 0; i < words; i++)
		if (__atomic_load_n(&m->dirty[i], __ATOMIC_RELAXED))
			out[i] |= __atomic_exchange_n(&m->dirty[i], 0, __ATOMIC_SEQ_CST);
}
