/* images.h: the images of the storage locations (docs/disks.md, "Images
 * in cellad"): what the API's requests ask for, checked before anything is
 * opened (images_parse.c: pure, fuzzed by fuzz-images), and what images.c
 * (the listing: formats, sizes, chains, users) and images_ops.c (create,
 * resize, delete, and the convert and backup jobs) share. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "cerr.h"
#include "storage.h"

#define IMG_NAME_MAX   63
#define IMG_POINT_MAX  31
/* The largest virtual size accepted: 64 TiB (qcow2 with 64 KiB clusters
 * maps 2 PiB, but no disk here is meant to be that large). */
#define IMG_SIZE_MAX   (64ull << 40)
#define IMG_JOBS_KEPT  16  /* finished jobs shown after they end */

enum img_op { IMG_CREATE, IMG_RESIZE, IMG_CONVERT, IMG_BACKUP };

struct img_req {
	char location[IMG_NAME_MAX + 1]; /* create: where; convert, backup: the target's ("" same) */
	char name[IMG_NAME_MAX + 1];     /* create: the new image; convert, backup: the target */
	int fmt;                         /* enum disk_format, -1: not given */
	uint64_t size;                   /* 0: not given */
	char backing[IMG_NAME_MAX + 1];  /* create: an image of the same location, "" none */
	unsigned cluster_bits;           /* 0: the default */
	char point[IMG_POINT_MAX + 1], since[IMG_POINT_MAX + 1]; /* backup */
};

/* An image's name: one file name of a location, 1-63 of A-Z a-z 0-9 . _ -,
 * starting with a letter or digit (so never "..", never a path), and not
 * ending in ".cbt" (a tracking file's). */
bool img_name_valid(const char *s);
/* A size: a whole number of bytes, or a string "N" with an optional K, M,
 * G or T (binary) suffix; a multiple of 512 from 512 to IMG_SIZE_MAX.
 * 0, or -1 with e naming field. */
int img_parse_size(json_t *v, const char *field, uint64_t *out, struct cerr *e) __must_check;
/* The body of a create, resize, convert or backup: every field checked
 * (unknown ones refused), nothing opened. 0, or -1 with e. */
int img_parse(enum img_op op, json_t *body, struct img_req *rq, struct cerr *e) __must_check;
