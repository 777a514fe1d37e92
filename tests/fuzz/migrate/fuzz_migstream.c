/* fuzz_migstream.c: the live-migration receive parser (vmm/migrate/migstream.c)
 * on arbitrary bytes, writing into a small guest RAM: it must refuse bad
 * streams without crashing or writing outside guest memory (ASan watches
 * the guard pages around the mapping). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mem.h"
#include "migrate/migstream.h"

static int accept_hello(void *opaque, const struct mig_hello *h, char *why, size_t whylen)
{
	(void)opaque;
	(void)why;
	(void)whylen;
	return h->nr_vcpus <= 32 ? 0 : -22;
}

static int accept_state(void *opaque, const uint8_t *blob, uint32_t len, char *why,
			size_t whylen)
{
	volatile uint8_t sum = 0;

	(void)opaque;
	(void)why;
	(void)whylen;
	for (uint32_t i = 0; i < len; i++) /* touch every byte: ASan checks the bounds */
		sum ^= blob[i];
	return sum == 0xAA ? -22 : 0;
}

static int accept_disk(void *opaque, uint32_t disk, uint64_t off, const uint8_t *data,
		       uint32_t len, char *why, size_t whylen)
{
	(void)opaque;
	(void)disk;
	(void)off;
	(void)why;
	(void)whylen;
	return len && data[len - 1] == 0xEE ? -5 : 0;
}

static int accept_disks(void *opaque, uint32_t n, const uint64_t *sizes, char *why,
			size_t whylen)
{
	(void)opaque;
	(void)why;
	(void)whylen;
	/* Stand-in for the worker's check: at most 8 MiB per disk. */
	for (uint32_t i = 0; i < n; i++)
		if (sizes[i] > (8u << 20))
			return -22;
	return 0;
}

static int accept_disk_zero(void *opaque, uint32_t disk, uint64_t off, uint64_t len, char *why,
			    size_t whylen)
{
	(void)opaque;
	(void)disk;
	(void)why;
	(void)whylen;
	return off + len == 512 ? -5 : 0;
}

static const struct mig_rx_ops ops = { .hello = accept_hello, .state = accept_state,
				       .disk = accept_disk, .disks = accept_disks,
				       .disk_zero = accept_disk_zero };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_mem mem;
	struct mig_rx rx;

	/* 4 MiB of RAM: the seed streams are written for that layout. */
	if (guest_mem_init(&mem, 4u << 20))
		return 0;
	mig_rx_init(&rx, &mem, &ops, NULL);
	if (mig_rx_feed(&rx, data, size) < 0 && !rx.err[0])
		__builtin_trap(); /* every refusal must say why */
	guest_mem_destroy(&mem);
	return 0;
}
