/* blkx.h: the fixture shared by the live-export tests of virtio-blk
 * (test_blk_export.c, test_blk_fine.c): a raw image with change tracking
 * behind a device programmed by vdrv, guest writes that keep a model of
 * the disk, and the helpers that run an export, read its stream and
 * restore it onto an image. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "cbt.h"
#include "vdrv.h"
#include "virtio/blk/blk_ctl.h"

#define IMG_SIZE (8u << 20) /* 128 tracking blocks */
#define BLK      CBT_BLOCK
#define F_V1     (1ULL << VIRTIO_F_VERSION_1)
#define F_BLK    ((1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) | \
		  (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_DISCARD) |      \
		  (1ULL << VIRTIO_BLK_F_WRITE_ZEROES))

struct fixture {
	struct vdrv *d;
	struct device *dev;
	char path[64], cbt[80];
	uint8_t *model; /* what the disk holds, by the test's own account */
};

/* cmocka setup and teardown: a patterned image of IMG_SIZE with change
 * tracking as "blk0", the driver bound and running. */
int blkx_setup(void **state);
int blkx_teardown(void **state);

struct wreq {
	uint64_t status;
	uint16_t idx; /* used index once it completed */
};

/* Queue a write of `len` bytes of `byte` at `off` (not waited for). */
void blkx_write_start(struct fixture *f, struct wreq *w, uint64_t off, uint32_t len, uint8_t byte);
/* Whether a queued write has completed (its status byte was written). */
bool blkx_write_done(struct fixture *f, const struct wreq *w);
/* A write that completes; the model follows. */
void blkx_write_wait(struct fixture *f, uint64_t off, uint32_t len, uint8_t byte);
void blkx_sleep_ms(unsigned ms);

/* A pipe whose buffer holds one page: the export stalls on it at once. */
void blkx_small_pipe(int p[2]);
/* Start an export into `fd`; returns the device's result (its error printed). */
int blkx_export(struct fixture *f, const char *since, const char *point, unsigned max_copies,
		int fd, struct blk_export_status *st);
/* Everything until EOF (the worker closes the stream when it ends); malloc'd. */
uint8_t *blkx_read_stream(int fd, size_t *len);
/* Apply a stream with the disk library (what `cella disk restore` does)
 * onto the raw image `img`; returns 0 or the library's error. */
int blkx_apply(const char *img, const uint8_t *stream, size_t len, char point[CBT_NAME_MAX],
	       char since[CBT_NAME_MAX]);
/* A new zeroed image of IMG_SIZE; its path lives until the next call. */
char *blkx_zero_image(void);
/* Whether the image holds `want` (the first difference printed if not). */
bool blkx_image_equals(const char *img, const uint8_t *want);
/* Poll the export's state until it is `state`, failing after 5 s. */
void blkx_wait_state(struct fixture *f, const char *state);
/* Run a whole export (reader drains it) and return the stream. */
uint8_t *blkx_export_all(struct fixture *f, const char *since, const char *point, size_t *len);
