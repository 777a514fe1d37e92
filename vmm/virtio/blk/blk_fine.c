/* blk_fine.c: in-memory 4 KiB dirty maps for live exports (blk_fine.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/blk/blk_fine.h"

#define FINE_MAPS 2
#define PER_BLOCK (CBT_BLOCK / CBT_FINE_BLOCK) /* 16 units: two bytes */

struct fine_map {
	char point[CBT_NAME_MAX]; /* "" : free */
	uint8_t *bits;
};

struct blk_fine {
	uint64_t size, units, bytes; /* bytes: a map, two per 64 KiB block */
	struct fine_map m[FINE_MAPS];
	/* The units written since the newest point's cut (its export's
	 * commit makes them the point's map: exactly what changed since). */
	struct fine_map cut;
};

_Static_assert(PER_BLOCK == 16, "a block's units are two bytes of a map");

struct blk_fine *blk_fine_new(uint64_t size)
{
	struct blk_fine *f;

	if (!size || size > BLK_FINE_MAX_DISK)
		return NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->size = size;
	f->units = (size + CBT_FINE_BLOCK - 1) >> CBT_FINE_BITS;
	f->bytes = ((size + CBT_BLOCK - 1) >> CBT_BLOCK_BITS) * 2;
	return f;
}

static void map_clear(struct fine_map *m)
{
	free(m->bits);
	m->bits = NULL;
	m->point[0] = 0;
}

void blk_fine_free(struct blk_fine *f)
{
	if (!f)
		return;
	for (unsigned i = 0; i < FINE_MAPS; i++)
		map_clear(&f->m[i]);
	map_clear(&f->cut);
	free(f);
}

uint64_t blk_fine_units(const struct blk_fine *f)
{
	return f->units;
}

static void set_range(uint8_t *bits, uint64_t first, uint64_t last)
{
	for (uint64_t u = first; u <= last;) {
		if (!(u & 7) && u + 7 <= last) {
			bits[u / 8] = 0xff;
			u += 8;
			continue;
		}
		bits[u / 8] |= (uint8_t)(1u << (u & 7));
		u++;
	}
}

void blk_fine_mark(struct blk_fine *f, uint64_t off, uint64_t len)
{
	uint64_t first, last;

	if (!f || !len || off >= f->size)
		return;
	if (len > f->size - off)
		len = f->size - off;
	first = off >> CBT_FINE_BITS;
	last = (off + len - 1) >> CBT_FINE_BITS;
	for (unsigned i = 0; i < FINE_MAPS; i++)
		if (f->m[i].bits)
			set_range(f->m[i].bits, first, last);
	if (f->cut.bits)
		set_range(f->cut.bits, first, last);
}

static struct fine_map *find(struct blk_fine *f, const char *point)
{
	for (unsigned i = 0; point && point[0] && i < FINE_MAPS; i++)
		if (f->m[i].bits && !strcmp(f->m[i].point, point))
			return &f->m[i];
	return NULL;
}

uint8_t *blk_fine_set(struct blk_fine *f, const char *since, const uint8_t *coarse,
		      uint64_t nr_blocks, bool *narrowed)
{
	struct fine_map *m = find(f, since);
	uint8_t *set = calloc(1, f->bytes ? f->bytes : 1);

	*narrowed = m != NULL;
	if (!set)
		return NULL;
	if (nr_blocks > f->bytes / 2)
		nr_blocks = f->bytes / 2;
	for (uint64_t b = 0; b < nr_blocks; b++) {
		if (!(coarse[b / 8] & (1u << (b & 7))))
			continue;
		if (m && (m->bits[2 * b] | m->bits[2 * b + 1])) {
			set[2 * b] = m->bits[2 * b];
			set[2 * b + 1] = m->bits[2 * b + 1];
		} else {
			/* No map, or none of the block's units marked while
			 * the file has it: the whole block. */
			set[2 * b] = set[2 * b + 1] = 0xff;
		}
	}
	/* Units past the disk's end. */
	for (uint64_t u = f->units; u < f->bytes * 8; u++)
		set[u / 8] &= (uint8_t) ~(1u << (u & 7));
	return set;
}

void blk_fine_drop(struct blk_fine *f, const char *point)
{
	struct fine_map *m;

	if (f && (m = find(f, point)))
		map_clear(m);
	if (f && point && !strcmp(f->cut.point, point))
		map_clear(&f->cut);
}

int blk_fine_start(struct blk_fine *f, const char *point, const char *since, const uint8_t *set)
{
	struct fine_map *keep = find(f, since), *slot = NULL;
	uint8_t *bits = malloc(f->bytes ? f->bytes : 1);

	if (keep && !strcmp(keep->point, point))
		keep = NULL; /* restarted: its old map goes */

	for (unsigned i = 0; i < FINE_MAPS; i++)
		if (&f->m[i] != keep)
			map_clear(&f->m[i]);
	map_clear(&f->cut);
	if (!bits)
		return -ENOMEM;
	for (unsigned i = 0; i < FINE_MAPS && !slot; i++)
		if (!f->m[i].bits)
			slot = &f->m[i];
	memcpy(bits, set, f->bytes);
	slot->bits = bits;
	snprintf(slot->point, sizeof(slot->point), "%s", point);
	/* Without it a commit keeps a block's sent units where the block
	 * changed after the cut (more sent again, nothing lost). */
	if ((f->cut.bits = calloc(1, f->bytes ? f->bytes : 1)))
		snprintf(f->cut.point, sizeof(f->cut.point), "%s", point);
	return 0;
}

void blk_fine_commit(struct blk_fine *f, const char *point, const uint8_t *mask,
		     uint64_t nr_blocks)
{
	struct fine_map *m = f ? find(f, point) : NULL;

	if (!m)
		return;
	if (f->cut.bits && !strcmp(f->cut.point, point)) {
		/* The point kept what it sent: now only what changed since. */
		memcpy(m->bits, f->cut.bits, f->bytes);
		map_clear(&f->cut);
		return;
	}
	if (nr_blocks > f->bytes / 2)
		nr_blocks = f->bytes / 2;
	for (uint64_t b = 0; b < nr_blocks; b++)
		if (mask[b / 8] & (1u << (b & 7)))
			m->bits[2 * b] = m->bits[2 * b + 1] = 0;
}

bool blk_fine_run(uint16_t *mask, unsigned *first, unsigned *n)
{
	unsigned i = 0, k;

	if (!*mask)
		return false;
	while (!(*mask & (1u << i)))
		i++;
	for (k = i; k < 16 && (*mask & (1u << k)); k++)
		*mask &= (uint16_t) ~(1u << k);
	*first = i;
	*n = k - i;
	return true;
}
