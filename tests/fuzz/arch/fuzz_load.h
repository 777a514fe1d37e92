/* fuzz_load.h: runs x86_load_kernel on a fuzz input through a memfd path,
 * into a small guest memory, with and without an initrd. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/x86.h"

#define FUZZ_GUEST_MEM (32ULL << 20)

static inline int fuzz_memfd(const void *data, size_t size, char *path, size_t pathlen)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	return fd;
}

static inline void fuzz_load(const uint8_t *data, size_t size)
{
	static const char initrd_bytes[4096 + 17];
	struct guest_mem mem;
	struct x86_boot_info bi;
	char kpath[64], ipath[64], err[256];
	int kfd, ifd;

	if (guest_mem_init(&mem, FUZZ_GUEST_MEM))
		abort();
	kfd = fuzz_memfd(data, size, kpath, sizeof(kpath));
	ifd = fuzz_memfd(initrd_bytes, sizeof(initrd_bytes), ipath, sizeof(ipath));
	/* Vary the initrd and command line with the input's length. */
	if (x86_load_kernel(&mem, kpath, (size & 1) ? ipath : NULL,
	                    (size & 2) ? "console=ttyS0" : NULL, &bi, err, sizeof(err)) == 0) {
		if (bi.mode != X86_BOOT_PVH && bi.mode != X86_BOOT_LINUX64 &&
		    bi.mode != X86_BOOT_LINUX32 && bi.mode != X86_BOOT_MULTIBOOT)
			abort();
		if (!bi.format || bi.entry >= (1ULL << 32))
			abort();
	} else if (!err[0]) {
		abort(); /* every failure explains itself */
	}
	close(kfd);
	close(ifd);
	guest_mem_destroy(&mem);
}
