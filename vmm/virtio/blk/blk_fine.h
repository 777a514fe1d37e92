/* blk_fine.h: the in-memory 4 KiB dirty maps of live exports with grain
 * 4096 (docs/replica.md, "4 KiB change sets"). vd.lock held.
 *
 * The tracking file (disk/cbt.c) marks 64 KiB blocks and survives crashes;
 * a random 4 KiB write makes its whole block change. Beside it, the worker
 * keeps for at most two points (the `since` of the last fine export and the
 * point it started) a bitmap of 4 KiB units: for every unit a write,
 * discard or write-zeroes touched since the point's cut, and the units the
 * point started holding (what its export sent). A fine export since P sends
 * the units of P's map inside P's tracked blocks (a tracked block whose
 * units are all clear: the whole block, as the map never lags the file);
 * without P's map (the worker restarted, or P was made by a 64 KiB export)
 * it sends whole tracked blocks. The tracking file stays what crash
 * recovery reads: the maps only narrow what is sent while the worker that
 * made them runs. A third map holds the units written since the newest
 * point's cut, which its commit makes that point's map. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "cbt.h"

struct blk_fine;

/* Disks above this use 64 KiB sets (a map is disk size / 32768 bytes). */
#define BLK_FINE_MAX_DISK (1ULL << 40)

/* A new set of maps for a disk of `size` bytes: NULL (out of memory, or a
 * disk above BLK_FINE_MAX_DISK). */
struct blk_fine *blk_fine_new(uint64_t size);
void blk_fine_free(struct blk_fine *f);
/* [off, off + len) changed: marked in every map (f may be NULL). */
void blk_fine_mark(struct blk_fine *f, uint64_t off, uint64_t len);
/* The 4 KiB units to send since `since`, given its tracked 64 KiB blocks
 * `coarse` (nr_blocks bits): a calloc'ed bitmap of blk_fine_units() bits
 * (two bytes per 64 KiB block), or NULL (out of memory). *narrowed: since's
 * map was there. */
uint8_t *blk_fine_set(struct blk_fine *f, const char *since, const uint8_t *coarse,
		      uint64_t nr_blocks, bool *narrowed);
uint64_t blk_fine_units(const struct blk_fine *f);
/* Point `point` starts holding the units in `set` (a copy); every map but
 * `since`'s goes (at most two are kept). 0 or -ENOMEM (no map for point:
 * its exports send whole blocks). */
int blk_fine_start(struct blk_fine *f, const char *point, const char *since, const uint8_t *set);
/* Forget `point`'s map (a 64 KiB export restarted the point). */
void blk_fine_drop(struct blk_fine *f, const char *point);
/* `point`'s export was committed (the tracking file cleared the blocks in
 * `mask`, sent and not written since the cut): its map becomes the units
 * written since the cut (kept beside it from blk_fine_start on), or, where
 * that is not kept, loses the units of the blocks in `mask`. */
void blk_fine_commit(struct blk_fine *f, const char *point, const uint8_t *mask,
		     uint64_t nr_blocks);
/* Take the lowest run of set bits from *mask (a block's 16 units): its
 * first unit and length. false: *mask is 0. */
bool blk_fine_run(uint16_t *mask, unsigned *first, unsigned *n);
