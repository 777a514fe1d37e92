/* blk_ctl.h: what the control socket asks of a virtio-blk device (status,
 * set-qos, flush-disks, disk-switch, disk-export, resume after a storage failure). Each
 * call takes the device lock; call them from the I/O thread (the control
 * socket is served there) or with the I/O loop stopped. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "compiler.h"
#include "config.h"

struct vm;
struct device;

struct blk_status {
	char id[32];
	char path[256];
	const char *format;         /* "raw" or "qcow2" */
	struct disk_qos_config qos;
	char error[160];            /* "" unless storage failed */
	bool stalled;
	bool readonly;
	bool cbt;
	uint64_t qos_admitted;      /* requests the QoS buckets let through */
	uint64_t qos_delayed;       /* times a request had to wait for tokens */
};

/* The virtio-blk device whose id (configured, or "blk<index>") is `id`. */
struct device *virtio_blk_find(struct vm *vm, const char *id);
/* Iterate: the first blk device after `prev` (NULL: the first). */
struct device *virtio_blk_next(struct vm *vm, struct device *prev);
/* A live migration's destination, once the VM has arrived: take the image
 * locks its disks were opened without (vm_config.defer_disk_locks),
 * waiting for the source to let go (up to 2 s each). 0, or -errno with err. */
int virtio_blk_take_locks(struct vm *vm, char *err, size_t errlen);

void virtio_blk_get_status(struct device *dev, struct blk_status *st);
/* New limits (0 = unlimited); waiting requests are re-evaluated at once. */
void virtio_blk_set_qos(struct device *dev, const struct disk_qos_config *q);
/* Complete what is in flight and flush the disk (data, metadata, change
 * tracking). Returns 0 or -errno. */
int virtio_blk_flush(struct device *dev) __must_check;
/* Drain and flush, then put the qcow2 image on `fd` (whose backing file is
 * the current top image) on top of the open chain. Takes fd. Returns 0 or
 * -errno with the reason in err. */
int virtio_blk_switch(struct device *dev, int fd, char *err, size_t errlen) __must_check;
/* Live exports (blk_export.h, docs/storage.md "Live exports"). */
struct blk_export_args {
	const char *point;    /* the point the cut starts (required) */
	const char *since;    /* the point whose blocks are sent; NULL: every allocated block */
	unsigned max_copies;  /* blocks held for copy-before-write; 0: the default */
	/* Keep `point` holding the exported blocks when the stream ends, until
	 * virtio_blk_export_commit (the receiver stored it): false clears them
	 * when the worker has written the stream. */
	bool deferred_commit;
	/* End the export (cancelled) when its output takes nothing for this
	 * long (a reader that stopped reading); 0: BLK_EXPORT_STALL_MS. */
	uint32_t stall_ms;
	/* Stream bytes per second at most (a token bucket, 100 ms of burst);
	 * 0: as fast as the output takes them. */
	uint64_t max_bandwidth;
	/* 4096: cut the set at 4 KiB units where the worker's in-memory map
	 * of `since` allows (blk_fine.h; the header's block size says 4096);
	 * 0 or 65536: whole 64 KiB tracking blocks. */
	uint32_t grain;
};
#define BLK_EXPORT_STALL_MS   60000
#define BLK_EXPORT_STALL_MAX  3600000u
#define BLK_EXPORT_BW_MIN     (64u << 10)
#define BLK_EXPORT_COPIES     256   /* 16 MiB */
#define BLK_EXPORT_COPIES_MAX 16384 /* 1 GiB */
/* disk-export-group (blk_group.c): the n disk-export requests of exports
 * (each as disk-export takes it; fds[i] its output, taken) cut at one
 * instant of the guest, its vCPUs held across the cuts unless paused
 * already; all or none. The reply: {"ok", "exports": [disk-export's
 * replies], "held_us"} or {"ok": false, "error"}. I/O thread. */
#define VIRTIO_BLK_GROUP_MAX 8
json_t *virtio_blk_export_group(struct vm *vm, json_t *exports, int *fds, unsigned n);
/* disk-export's handler (blk_cmds.c): req as the command takes it, fd taken. */
json_t *virtio_blk_export_cmd(struct vm *vm, json_t *req, int fd);
struct blk_export_status {
	const char *state;    /* "none", "running", "done", "failed", "cancelled" */
	bool commit_pending;  /* done, deferred_commit, not committed yet */
	char point[32], since[32];
	char error[160];
	uint64_t blocks;        /* in the cut */
	uint64_t data_bytes;    /* their bytes in the stream */
	uint64_t stream_bytes;  /* the whole stream: header, extents, data, trailer */
	uint64_t sent;          /* stream bytes written so far */
	uint64_t copies;        /* blocks read early for a guest write */
	uint64_t waits;         /* guest requests that had to wait for the export */
	uint64_t cap_waits;     /* ... of which with the copies at their cap */
	uint64_t throttled;     /* times the stream waited for max_bandwidth */
	uint64_t max_bandwidth; /* bytes/s, 0: none */
	uint32_t stall_ms;
	unsigned held, max_copies;
	uint32_t grain;         /* the set's unit: 4096 or 65536 */
	bool narrowed;          /* grain 4096 with since's 4 KiB map (else whole blocks) */
};
/* Start an export of the disk to fd (taken, also on failure): the cut
 * happens before this returns, the stream goes on from the I/O loop.
 * 0 or -errno with the reason in err; st describes the cut. */
int virtio_blk_export(struct device *dev, const struct blk_export_args *a, int fd,
		      struct blk_export_status *st, char *err, size_t errlen) __must_check;
/* The receiver stored the stream of the last export to `point`, which ran
 * with deferred_commit: clear from `point` the blocks it sent that the guest
 * has not written since its cut. -ENOENT: no such export waits (a later
 * export or a restart dropped it: `point` keeps the blocks, which is safe). */
int virtio_blk_export_commit(struct device *dev, const char *point);
/* Cancel the running export: -ENOENT when none runs. */
int virtio_blk_export_cancel(struct device *dev);
/* The running export, or the last one. */
void virtio_blk_export_status(struct device *dev, struct blk_export_status *st);
bool virtio_blk_exporting(struct device *dev);

/* Retry a stalled disk now (the `resume` command does this first). */
void virtio_blk_retry(struct device *dev);

/* Live migration with storage (vmm/migrate/storage.c). */
struct disk;
/* Bytes the guest sees. */
uint64_t virtio_blk_size(struct device *dev);
/* Start (bits: one per (1 << shift)-byte block of the disk, owned by the
 * caller until it stops) or stop (bits NULL) marking the blocks that
 * writes, discards and write-zeroes change, as they complete. */
void virtio_blk_track(struct device *dev, unsigned long *bits, unsigned shift);
/* Run fn with the device lock held, with the open disk (the disk library
 * is not thread-safe: the I/O thread waits meanwhile); fn may also read and
 * clear the tracking bitmap then. -EIO when the disk has no image (a
 * failed disk-switch), else fn's result. */
int virtio_blk_with_disk(struct device *dev,
			 int (*fn)(void *opaque, struct disk *d),
			 void *opaque) __must_check;
