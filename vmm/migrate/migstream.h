/* migstream.h: the live-migration stream: framed, versioned records (see
 * docs/migration.md), the encoder helpers of the sending side and the
 * validating parser of the receiving side.
 *
 * Every record is an 8-byte header, little-endian: u16 type, u16 flags (0),
 * u32 payload length, then the payload. The receiver checks the header
 * (type known, length within the type's bounds) before it reads a byte of
 * the payload, then checks every field, so a hostile or corrupted stream is
 * refused with a message and never writes outside guest RAM.
 *
 * The parser is transport-free (the TLS layer and the fuzz target both feed
 * it records) and needs no KVM: it writes pages through guest_mem_ptr() and
 * hands the device/CPU state blob and disk blocks to callbacks.
 */
#pragma once
#include <endian.h>
#include <string.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct guest_mem;

#define MIG_MAGIC          "CELLAMIG"
#define MIG_VERSION        1
#define MIG_PAGE_SIZE      4096u
#define MIG_HDR_LEN        8u
#define MIG_PAGES_MAX      256u           /* pages per PAGES record (1 MiB of data) */
#define MIG_ZERO_MAX       8192u          /* addresses per ZERO record */
#define MIG_STATE_MAX      (8u << 20)     /* device/CPU state blob */
#define MIG_DISK_DATA_MAX  (1u << 20)     /* bytes of disk data per DISK_DATA record */
#define MIG_MSG_MAX        512u           /* text in ACK / ERROR records */
#define MIG_DISKS_MAX      16u            /* disks in a DISKS record */
#define MIG_DISK_ZERO_MAX  (1ull << 30)   /* bytes per DISK_ZERO record */
#define MIG_REC_MAX        (MIG_STATE_MAX + 64u) /* largest payload of any record */

enum mig_rec_type {
	MIG_REC_HELLO = 1,     /* src->dst: magic, version, RAM layout, vCPUs, flags */
	MIG_REC_READY = 2,     /* dst->src: u32 status (0 or errno), u32 len, message */
	MIG_REC_PAGES = 3,     /* u32 n, u32 0, n x u64 gpa, n x 4096 bytes */
	MIG_REC_ZERO = 4,      /* u32 n, u32 0, n x u64 gpa: these pages are zero now */
	MIG_REC_ROUND = 5,     /* u32 round, u32 0, u64 pages in the round: end of a round */
	MIG_REC_DISK_DATA = 6, /* u32 disk, u32 0, u64 offset, data (multiple of 512) */
	MIG_REC_STATE = 7,     /* the device/CPU/platform state blob */
	MIG_REC_COMPLETE = 8,  /* u64 pause time (CLOCK_REALTIME ns), u64 rounds, u64 pages */
	MIG_REC_ACK = 9,       /* dst->src: u32 status, u32 len, u64 resume time ns, message */
	MIG_REC_ERROR = 10,    /* either way: u32 errno, u32 len, message; the stream ends */
	MIG_REC_SYNC = 11,     /* u64 token; the destination echoes it once it has applied
				* everything before it (the source drains the pipe
				* before it decides to stop the guest) */
	/* With include_storage (HELLO flag MIG_FLAG_STORAGE) only, so a
	 * version 1 receiver that refuses the flag never sees them: */
	MIG_REC_DISKS = 12,     /* u32 n, u32 0, n x u64 virtual size: right after READY */
	MIG_REC_DISK_ZERO = 13, /* u32 disk, u32 0, u64 offset, u64 length: reads as zero */
	MIG_REC_TYPE_MAX = 13,
};

#define MIG_HELLO_LEN      48u
#define MIG_FLAG_STORAGE   1u  /* disk contents follow in DISK_DATA records */

struct mig_hello {
	uint32_t version;
	uint32_t page_size;
	uint64_t ram_size, low_size;
	uint32_t nr_vcpus;
	uint32_t nr_disks;
	uint64_t flags;
};

/* Header encode/decode (8 bytes). */
static inline void mig_hdr_put(uint8_t out[MIG_HDR_LEN], uint16_t type, uint32_t len)
{
	/* Inline: the TLS module (cella-tls.so) frames records without the rest. */
	uint16_t t = htole16(type), f = 0;
	uint32_t l = htole32(len);

	memcpy(out, &t, 2);
	memcpy(out + 2, &f, 2);
	memcpy(out + 4, &l, 4);
}
void mig_hdr_get(const uint8_t in[MIG_HDR_LEN], uint16_t *type, uint16_t *flags, uint32_t *len);
/* Encode a HELLO payload (MIG_HELLO_LEN bytes). */
void mig_hello_put(uint8_t out[MIG_HELLO_LEN], const struct mig_hello *h);
/* Decode and check magic and version. 0 or -EINVAL (why filled). */
int mig_hello_get(const uint8_t *p, uint32_t len, struct mig_hello *h, char *why,
		  size_t whylen) __must_check;

/* Receiver callbacks. */
struct mig_rx_ops {
	/* The HELLO arrived; check it against this VM. 0 or -errno (why). */
	int (*hello)(void *opaque, const struct mig_hello *h, char *why, size_t whylen);
	/* The state blob (len <= MIG_STATE_MAX). 0 or -errno (why). */
	int (*state)(void *opaque, const uint8_t *blob, uint32_t len, char *why, size_t whylen);
	/* Disk data for disk `disk` (< hello.nr_disks) at byte `off`, inside the
	 * size the DISKS record announced (checked before the call); NULL:
	 * refused. */
	int (*disk)(void *opaque, uint32_t disk, uint64_t off, const uint8_t *data, uint32_t len,
		    char *why, size_t whylen);
	/* The source's disks: n (== hello.nr_disks) virtual sizes; check them
	 * against this VM's disks. NULL: refused. */
	int (*disks)(void *opaque, uint32_t n, const uint64_t *sizes, char *why, size_t whylen);
	/* [off, off + len) of disk `disk` reads as zero (checked like disk). */
	int (*disk_zero)(void *opaque, uint32_t disk, uint64_t off, uint64_t len, char *why,
			 size_t whylen);
};

enum mig_rx_phase { MIG_RX_HELLO, MIG_RX_RAM, MIG_RX_STATE_DONE, MIG_RX_COMPLETE, MIG_RX_FAILED };

struct mig_rx {
	struct guest_mem *mem;
	const struct mig_rx_ops *ops;
	void *opaque;
	enum mig_rx_phase phase;
	struct mig_hello hello;
	uint64_t pages, zero_pages, disk_bytes, disk_zero_bytes, bytes;
	bool disks_known;                     /* the DISKS record was accepted */
	uint64_t disk_size[MIG_DISKS_MAX];    /* from it */
	uint32_t rounds;
	uint64_t pause_ns; /* from COMPLETE */
	int peer_errno;    /* from an ERROR record */
	char err[256];     /* why the stream was refused */
};

void mig_rx_init(struct mig_rx *rx, struct guest_mem *mem, const struct mig_rx_ops *ops,
		 void *opaque);
/* Check a record header before reading its payload: known type, flags 0,
 * length within the type's bounds. 0 or -EINVAL (rx->err). */
int mig_rx_check_hdr(struct mig_rx *rx, uint16_t type, uint16_t flags, uint32_t len) __must_check;
/* Apply one record whose header passed mig_rx_check_hdr. Returns 0, 1 when
 * the stream is complete (COMPLETE received), or -errno (rx->err says why;
 * -ECONNABORTED when the peer sent ERROR). */
int mig_rx_record(struct mig_rx *rx, uint16_t type, const uint8_t *p, uint32_t len) __must_check;
/* Parse a whole byte buffer of records (the fuzz target). Same returns;
 * -EPIPE when it ends inside a record. */
int mig_rx_feed(struct mig_rx *rx, const uint8_t *buf, size_t len) __must_check;

/* A status record payload (READY, ACK, ERROR): u32 status, u32 len, [u64
 * time for ACK], message. put returns the payload length. */
uint32_t mig_status_put(uint8_t *out, uint16_t type, int32_t status, uint64_t time_ns,
			const char *msg);
int mig_status_get(const uint8_t *p, uint32_t len, uint16_t type, int32_t *status,
		   uint64_t *time_ns, char *msg, size_t msglen) __must_check;

/* True when the 4 KiB page is all zero. */
bool mig_page_is_zero(const void *page);
/* CLOCK_REALTIME in ns: the timestamps exchanged for the downtime. */
uint64_t mig_realtime_ns(void);
