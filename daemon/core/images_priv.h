/* images_priv.h: what images.c (the scan: every image of the storage
 * locations, its chain and its users) and images_ops.c (the changes and
 * the jobs) share. */
#pragma once
#include <pthread.h>

#include "images.h"
#include "sup_priv.h"

struct disk;

struct img_rec {
	const struct storage_loc *loc;
	char name[IMG_NAME_MAX + 1];
	dev_t dev;
	ino_t ino;
	int fmt;                 /* enum disk_format; -1: not an image */
	const char *kind;        /* "image", "incremental" (a backup file), "unreadable" */
	char err[200];           /* unreadable: why */
	uint64_t size, file_bytes, allocated;
	char backing[4096];      /* as the header names it, "" none */
	int bidx;                /* the backing file's record, -1: none or elsewhere */
	bool backing_missing;
	bool tracking;           /* NAME.cbt beside it */
	char point[32], since[32]; /* an incremental's */
	bool in_use_active;      /* a running (active) VM's chain holds it */
	bool top_of_cbt_disk;    /* the top image of a VM disk with cbt on */
	json_t *used_by;         /* [{vm, disk, state, layer}] */
	json_t *checkpoints;     /* [{vm, checkpoint, disk}] */
	json_t *backing_of;      /* names of the images above it */
};

struct img_scan {
	struct img_rec *r;
	size_t n, cap;
};

/* A running or recently ended convert or backup (images_ops.c). */
struct img_job {
	char id[48];
	char kind[16];           /* "convert", "backup" */
	char phase[16];          /* "begun", "copying", "syncing", "done", "failed" */
	char location[IMG_NAME_MAX + 1], image[IMG_NAME_MAX + 1];
	char target_location[IMG_NAME_MAX + 1], target[IMG_NAME_MAX + 1];
	uint64_t done, total;
	bool running, cancel;
	char error[384];
	int64_t started_at, ended_at;
	struct img_job *next;
};

/* Whether a caller with role sees location l (viewers: what operators use). */
bool img_loc_visible(const struct storage_loc *l, enum role role);
/* Every image of the visible locations (only loc when not NULL), with its
 * chain and its users. 0, or -1 with e. img_scan_free frees it. */
int img_scan(struct sup *s, enum role role, const struct storage_loc *loc, struct img_scan *sc,
	     struct cerr *e);
void img_scan_free(struct img_scan *sc);
/* The record of image name (in location, "" any visible one): its index,
 * or -1 with e (no such location or image; a name in several locations). */
int img_find(struct sup *s, const struct img_scan *sc, enum role role, const char *location,
	     const char *name, struct cerr *e);
json_t *img_rec_json(struct sup *s, const struct img_scan *sc, size_t i);
/* The jobs as JSON (s->img_lock taken here); the job of an image (as
 * source or target) when not NULL. */
json_t *img_jobs_json(struct sup *s, const char *location, const char *name);
json_t *img_job_json(const struct img_job *j);

/* images_ops.c, for images_job.c */
int img_find_for_change(struct sup *s, enum role role, const char *location, const char *name,
			struct img_scan *sc, struct cerr *e);
int img_refuse_job(struct sup *s, const char *location, const char *name, struct cerr *e);
const struct storage_loc *img_writable_loc(struct sup *s, enum role role, const char *name,
					   const char *field, struct cerr *e);
int img_open_image(struct sup *s, enum role role, const struct img_rec *r, unsigned flags,
		   struct disk **d, struct cerr *e);
void img_unlink_target(const struct storage_loc *l, const char *name, dev_t dev, ino_t ino);
void img_name_in(char *msg, size_t len, const char *proc, const char *shown);
