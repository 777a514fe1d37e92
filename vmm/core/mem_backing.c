/* mem_backing.c: guest RAM backings beyond the default memfd (see
 * mem_backing.h and docs/memory.md, "Page sharing" and "Backing options"). */
#include "mem_backing.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "mem_uffd.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

int config_json_memory(struct vm_config *c, json_t *v, char *err, size_t errlen)
{
	struct mem_backing_config next = c->memory;
	struct conf_err e;
	char why[200];

	if (conf_from_json(&conf_memory_schema, &next, v, "memory", &conf_worker_dialect, &e)) {
		conf_err_text(&e, err, errlen);
		return -EINVAL;
	}
	if (!conf_memory_valid(&next, why, sizeof(why))) {
		snprintf(err, errlen, "memory: %s", why);
		return -EINVAL;
	}
	c->memory = next;
	return 0;
}

/* The common tail of every backing: never in core dumps, nor in the KVM
 * teardown child (vm_defer_kernel_teardown). */
static void mem_advise_common(void *p, uint64_t size)
{
	madvise(p, size, MADV_DONTDUMP);
	madvise(p, size, MADV_DONTFORK);
}

/* Copy [off, off + size) of fd into RAM, skipping the file's holes (they
 * are zero already). 0 or -errno. */
static int mem_copy_from_file(struct guest_mem *m, int fd, uint64_t off, uint64_t size)
{
	uint64_t pos = off, end = off + size;

	while (pos < end) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA), h;

		if (d < 0)
			return errno == ENXIO ? 0 : -errno;
		if ((uint64_t)d >= end)
			return 0;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return -errno;
		for (uint64_t a = (uint64_t)d; a < MIN((uint64_t)h, end);) {
			ssize_t n = pread(fd, m->host + (a - off), MIN((uint64_t)h, end) - a, (off_t)a);

			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			a += (uint64_t)n;
		}
		pos = (uint64_t)h;
	}
	return 0;
}

/* 2 MiB hugetlb pages from a memfd. The mapping reserves every page at
 * mmap (no MAP_NORESERVE), so a host without enough free huge pages fails
 * here with a message instead of killing the guest with SIGBUS later. */
static int mem_init_huge(struct guest_mem *m, uint64_t size)
{
	uint64_t need = size / HUGEPAGE_SIZE, nfree = 0, total = 0;
	void *p;
	int err;

	memset(m, 0, sizeof(*m));
	m->memfd = m->file_fd = m->pagemap_fd = -1;
	if (size == 0 || size % HUGEPAGE_SIZE)
		return -EINVAL;
	if (conf_hugepages_available(&nfree, &total) == 0 && nfree < need) {
		log_err("memory.hugepages: %llu MiB of guest memory needs %llu huge pages of 2 MiB; "
			"the host has %llu free of %llu reserved (reserve more with "
			"/proc/sys/vm/nr_hugepages or hugepages= on the host's command line)",
			(unsigned long long)(size >> 20), (unsigned long long)need,
			(unsigned long long)nfree, (unsigned long long)total);
		return -ENOMEM;
	}
	m->memfd = memfd_create("cella-guest-ram-2m", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
	if (m->memfd < 0) {
		err = -errno;
		log_err("memory.hugepages: memfd_create(MFD_HUGETLB): %s", strerror(-err));
		return err;
	}
	if (ftruncate(m->memfd, (off_t)size) < 0)
		goto fail;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->memfd, 0);
	if (p == MAP_FAILED)
		goto fail;
	mem_advise_common(p, size);
	m->host = p;
	m->hugetlb = true;
	m->size = size;
	m->low_size = size < MEM_HOLE_START ? size : MEM_HOLE_START;
	m->high_size = size - m->low_size;
	return 0;
fail:
	err = -errno;
	log_err("memory.hugepages: cannot map %llu MiB of huge pages: %s (another process took "
		"the reserved pages?)", (unsigned long long)(size >> 20), strerror(-err));
	close(m->memfd);
	m->memfd = -1;
	return err;
}

/* Anonymous private memory, the only kind KSM merges (a MAP_SHARED memfd
 * is never scanned). Which pages hold data is found in pagemap, like the
 * private copies of a restored VM (guest_mem_populated). */
static int mem_init_anon(struct guest_mem *m, uint64_t size)
{
	void *p;

	memset(m, 0, sizeof(*m));
	m->memfd = m->file_fd = m->pagemap_fd = -1;
	if (size == 0 || size % HUGEPAGE_SIZE)
		return -EINVAL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	mem_advise_common(p, size);
	m->host = p;
	m->size = size;
	m->low_size = size < MEM_HOLE_START ? size : MEM_HOLE_START;
	m->high_size = size - m->low_size;
	m->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return 0;
}

/* Anonymous private memory in transparent huge pages where the host's THP
 * setting allows (enabled "always" or "madvise"): 2 MiB pages without a
 * hugetlb reservation, as the restore path's RAM (mem_uffd.c) and QEMU's
 * default RAM get. Where the host's shmem THP is "never", the default memfd
 * cannot have them, and the host's copies out of guest RAM (a tap write of
 * each transmitted frame) walk 4 KiB pages: about 30 % dearer per byte
 * (docs/benchmarks.md). Which pages hold data is found in pagemap. */
static int mem_init_thp(struct guest_mem *m, uint64_t size)
{
	int ret = mem_init_anon(m, size);

	if (!ret && madvise(m->host, size, MADV_HUGEPAGE) < 0)
		log_warn("memory.thp: madvise(MADV_HUGEPAGE): %s (4 KiB pages)", strerror(errno));
	return ret;
}

/* Fault every page in now, writable: the guest never waits for a host
 * page fault (first touches cost ~14 us each on nested hosts). A kernel
 * before 5.14 lacks MADV_POPULATE_WRITE: touch each page instead. */
static int mem_prealloc(struct guest_mem *m)
{
	uint64_t step = m->hugetlb ? HUGEPAGE_SIZE : 4096;

	if (madvise(m->host, m->size, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	for (uint64_t off = 0; off < m->size; off += step) {
		volatile uint8_t *b = m->host + off;

		*b = *b;
	}
	return 0;
}

int guest_mem_init_backing(struct guest_mem *m, const struct mem_backing_config *b,
			   uint64_t size, int mem_fd, uint64_t mem_off, int uffd_dev,
			   void *at)
{
	int ret;

	if (at && (mem_fd < 0 || (b && (b->hugepages || b->prealloc || b->merge))))
		return -EINVAL; /* vm_prep_fits keeps these from here */

	if (b && b->hugepages) {
		ret = mem_init_huge(m, size);
		if (!ret && mem_fd >= 0) {
			ret = mem_copy_from_file(m, mem_fd, mem_off, size);
			if (ret)
				log_err("memory.hugepages: cannot copy the saved memory: %s",
					strerror(-ret));
		}
	} else if (mem_fd >= 0) {
		/* Anonymous huge-page RAM filled through userfaultfd where this
		 * process may have one (not with prealloc, which populates
		 * everything at once, nor merge: KSM splits huge pages). */
		ret = -EPERM;
		if (!(b && (b->prealloc || b->merge)) && guest_mem_uffd_wanted()) {
			ret = guest_mem_init_uffd_at(m, size, mem_fd, mem_off, uffd_dev, at);
			if (ret)
				log_info("restore: no userfaultfd (%s): the state file is mapped "
					 "copy-on-write", strerror(-ret));
		}
		if (ret)
			ret = guest_mem_init_file_at(m, size, mem_fd, mem_off, at);
	} else if (b && b->merge) {
		ret = mem_init_anon(m, size);
	} else if (b && b->thp) {
		ret = mem_init_thp(m, size);
	} else {
		ret = guest_mem_init(m, size);
	}
	if (ret || !b)
		return ret;
	/* A restored VM's private copies are anonymous pages: KSM merges them
	 * too (the state file's own pages are page cache, shared anyway). */
	if (b->merge && madvise(m->host, m->size, MADV_MERGEABLE) < 0) {
		ret = -errno;
		log_err("memory.merge: madvise(MADV_MERGEABLE): %s (a kernel without KSM?)",
			strerror(-ret));
		return ret;
	}
	if (b->prealloc && (ret = mem_prealloc(m))) {
		log_err("memory.prealloc: cannot populate %llu MiB: %s",
			(unsigned long long)(m->size >> 20), strerror(-ret));
		return ret;
	}
	return 0;
}
