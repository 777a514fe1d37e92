/* memorder.c: the "mem-order" section (memorder.h): built from a sample's
 * per-page ranks at save, parsed and checked at restore. Pure: no I/O. */
#include "state/memorder.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/state.h"
#include "state/statefile.h"

#define HDR_LEN 16u
#define RUN_LEN 16u

void mem_order_write(struct state_writer *w, const uint8_t *rank, uint64_t npages)
{
	uint64_t count[MEM_ORDER_MAX_RANK + 1] = { 0 };
	/* Where each rank's pages lie, so that each rank's pass scans only
	 * that span (a sequential writer's rounds are narrow ones). */
	uint64_t lo[MEM_ORDER_MAX_RANK + 1], hi[MEM_ORDER_MAX_RANK + 1] = { 0 };
	size_t mark, at;
	uint64_t runs = 0;

	for (unsigned r = 0; r <= MEM_ORDER_MAX_RANK; r++)
		lo[r] = npages;
	for (uint64_t p = 0; p < npages; p++) {
		uint8_t r = rank[p];

		count[r]++;
		lo[r] = MIN(lo[r], p);
		hi[r] = p + 1;
	}
	if (count[0] == npages)
		return;
	mark = state_section_begin(w, MEM_ORDER_SECTION, MEM_ORDER_VERSION);
	state_put_u32(w, MEM_ORDER_PAGE_SHIFT);
	state_put_u32(w, 0);
	at = w->len;
	state_put_u64(w, 0); /* patched below */
	for (unsigned r = 1; r <= MEM_ORDER_MAX_RANK && runs < MEM_ORDER_MAX_RUNS; r++) {
		if (!count[r])
			continue;
		for (uint64_t p = lo[r]; p < hi[r] && runs < MEM_ORDER_MAX_RUNS;) {
			uint64_t q = p;

			if (rank[p] != r) {
				p++;
				continue;
			}
			while (q < hi[r] && rank[q] == r && q - p < UINT32_MAX)
				q++;
			state_put_u64(w, p);
			state_put_u32(w, (uint32_t)(q - p));
			state_put_u32(w, MEM_ORDER_WRITTEN);
			runs++;
			p = q;
		}
	}
	if (!w->err) {
		uint64_t le = htole64(runs);

		memcpy(w->buf + at, &le, sizeof(le));
	}
	state_section_end(w, mark);
}

static int bad(char *err, size_t errlen, const char *fmt, ...) __printf(3, 4);
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, errlen, "%s: ", MEM_ORDER_SECTION);

	va_start(ap, fmt);
	if (n > 0 && (size_t)n < errlen)
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

#define BITS (8 * sizeof(unsigned long))

int mem_order_parse(const uint8_t *data, size_t len, uint64_t mem_size, struct mem_order *out,
		    char *err, size_t errlen)
{
	uint64_t npages = mem_size >> MEM_ORDER_PAGE_SHIFT, nr;
	unsigned long *seen = NULL;
	struct state_reader r;
	uint32_t shift, rsvd;

	memset(out, 0, sizeof(*out));
	state_reader_init(&r, data, len);
	shift = state_get_u32(&r);
	rsvd = state_get_u32(&r);
	nr = state_get_u64(&r);
	if (state_reader_error(&r))
		return bad(err, errlen, "truncated header (%zu bytes)", len);
	if (shift != MEM_ORDER_PAGE_SHIFT)
		return bad(err, errlen, "page shift %u, expected %u", shift, MEM_ORDER_PAGE_SHIFT);
	if (rsvd)
		return bad(err, errlen, "reserved field is 0x%x, expected 0", rsvd);
	if (nr > MEM_ORDER_MAX_RUNS)
		return bad(err, errlen, "%llu runs (at most %u)", (unsigned long long)nr,
			   MEM_ORDER_MAX_RUNS);
	if ((len - HDR_LEN) != nr * RUN_LEN)
		return bad(err, errlen, "%llu runs need %llu bytes, the section has %zu",
			   (unsigned long long)nr, (unsigned long long)(HDR_LEN + nr * RUN_LEN), len);
	if (npages == 0 || mem_size % (1ULL << MEM_ORDER_PAGE_SHIFT))
		return bad(err, errlen, "RAM size %llu is not whole pages",
			   (unsigned long long)mem_size);
	if (nr == 0)
		return 0;
	out->runs = calloc((size_t)nr, sizeof(*out->runs));
	seen = calloc((size_t)((npages + BITS - 1) / BITS), sizeof(*seen));
	if (!out->runs || !seen) {
		free(seen);
		mem_order_free(out);
		snprintf(err, errlen, "%s: out of memory", MEM_ORDER_SECTION);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < nr; i++) {
		struct mem_order_run *run = &out->runs[i];

		run->first = state_get_u64(&r);
		run->count = state_get_u32(&r);
		run->flags = state_get_u32(&r);
		if (run->count == 0 || run->first >= npages || run->count > npages - run->first) {
			bad(err, errlen, "run %llu (pages %llu+%u) is outside the %llu pages of RAM",
			    (unsigned long long)i, (unsigned long long)run->first, run->count,
			    (unsigned long long)npages);
			goto fail;
		}
		if (run->flags & ~MEM_ORDER_WRITTEN) {
			bad(err, errlen, "run %llu has unknown flags 0x%x", (unsigned long long)i,
			    run->flags);
			goto fail;
		}
		for (uint64_t p = run->first; p < run->first + run->count; p++) {
			unsigned long bit = 1UL << (p % BITS);

			if (seen[p / BITS] & bit) {
				bad(err, errlen, "run %llu overlaps an earlier run (page %llu)",
				    (unsigned long long)i, (unsigned long long)p);
				goto fail;
			}
			seen[p / BITS] |= bit;
		}
		out->pages += run->count;
		out->nr_runs++;
	}
	free(seen);
	return 0;
fail:
	free(seen);
	mem_order_free(out);
	return -EINVAL;
}

void mem_order_free(struct mem_order *o)
{
	free(o->runs);
	memset(o, 0, sizeof(*o));
}
