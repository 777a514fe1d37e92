/* statefile.h: the state file (docs/state-format.md) and the framed sections
 * it is made of.
 *
 * A section is: id (48 bytes, NUL-padded, [a-z0-9:._-]), version (u32),
 * CRC-32 of the payload (u32), payload length (u64), payload. The same
 * framing carries CPU, platform and device state in a state file and in the
 * migration stream: vm_state_save() (vm.h) writes a run of sections into a
 * state_writer, vm_state_load() reads them back with state_section_next().
 *
 * A state file is: a 128-byte header (magic "CELLASTF", format version,
 * flags, creation info, where the sections and the memory are, CRC-32 of the
 * header), the sections, zero padding to a 4 KiB boundary, then guest RAM as
 * one region of mem_size bytes (low RAM then RAM above 4 GiB, as struct
 * guest_mem lays it out), sparse: pages that are zero are holes. Restore
 * maps that region MAP_PRIVATE as the guest's RAM.
 *
 * Everything read from a file is untrusted: every length, count and offset is
 * checked; errors say which section ("state: section 'vcpu1' checksum
 * mismatch", "state: truncated in section 'ioapic'").
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct vm;
struct state_writer;
struct state_reader;

#define STATEFILE_MAGIC        "CELLASTF"
#define STATEFILE_VERSION      2  /* written by default */
#define STATEFILE_VERSION_MIN  1  /* oldest still loaded (see docs/state-format.md) */
#define STATEFILE_HEADER_SIZE  128
#define STATEFILE_V1_HEADER_SIZE 64
#define STATEFILE_MEM_ALIGN    4096
#define STATEFILE_FLAG_SPARSE  0x1u /* memory region has holes for zero pages */
/* Sanity bound on the sections (CPU, platform, devices): a few hundred KiB
 * in practice; a header claiming more is corrupt. */
#define STATEFILE_SECTIONS_MAX (64ULL << 20)

#define STATE_SECTION_ID_LEN   48
#define STATE_SECTION_HDR_SIZE (STATE_SECTION_ID_LEN + 4 + 4 + 8)

/* CRC-32 (zlib's crc32, ISO-HDLC polynomial) of buf, continuing from crc
 * (start with 0). */
uint32_t state_crc32(uint32_t crc, const void *buf, size_t len);

/* --- Sections ---------------------------------------------------------- */

/* Start a section: writes its header with length and checksum to be filled
 * by state_section_end(). Returns a mark to pass to state_section_end. An
 * id that is empty, too long or has other characters than [a-z0-9:._-]
 * makes the writer fail (-EINVAL). */
size_t state_section_begin(struct state_writer *w, const char *id, uint32_t version);
/* Close the section started at mark: patch its length and CRC-32. */
void state_section_end(struct state_writer *w, size_t mark);

struct state_section {
	char id[STATE_SECTION_ID_LEN];
	uint32_t version;
	const uint8_t *data; /* points into the reader's buffer */
	size_t len;
};

/* Read the next section from r, verifying its framing and checksum.
 * Returns 1 with *sec filled, 0 at the end of the stream, or -EINVAL with
 * "state: ..." naming the section in err. */
int state_section_next(struct state_reader *r, struct state_section *sec, char *err,
		       size_t errlen) __must_check;

/* --- State files ------------------------------------------------------- */

struct statefile_info {
	uint32_t version;      /* format version of the file */
	uint32_t flags;        /* STATEFILE_FLAG_* */
	uint64_t created_ns;   /* CLOCK_REALTIME at save (0 in version 1) */
	char creator[48];      /* "cella-vm 0.1.0" ("" in version 1) */
	uint32_t nr_vcpus;
	uint64_t mem_size;     /* guest RAM bytes */
	uint64_t sections_off, sections_len;
	uint64_t mem_off;      /* page aligned */
	uint64_t file_size;    /* at least mem_off + mem_size */
};

/* Parse and check a header (STATEFILE_HEADER_SIZE bytes, or fewer for a
 * version 1 file: pass what was read). 0, or -EINVAL with the reason in
 * err ("state: bad magic", "state: format version 3 is not supported (1 to
 * 2 are)", "state: header checksum mismatch", ...). file_size is the size
 * of the whole file, for the bounds checks. */
int statefile_parse_header(const uint8_t *buf, size_t len, uint64_t file_size,
			   struct statefile_info *out, char *err, size_t errlen) __must_check;

/* Build a header for `version` (2, or 1 for compatibility tests) into buf
 * (STATEFILE_HEADER_SIZE bytes); returns the header's size. */
size_t statefile_build_header(const struct statefile_info *in, uint8_t *buf);

/* Check a state image in memory: buf holds at least the header, the
 * sections and the padding (len bytes); file_size is the whole file's size
 * (the memory region is checked only for its bounds: it is not
 * checksummed, so that restore need not read it). What the fuzzer and the
 * unit tests drive. 0 or -EINVAL with err set. */
int statefile_check_buffer(const uint8_t *buf, size_t len, uint64_t file_size, char *err,
			   size_t errlen) __must_check;

struct statefile_save_opts {
	uint32_t version;  /* 0: STATEFILE_VERSION; 1 writes the legacy format */
	bool no_sync;      /* skip fsync (tests) */
	/* The write sample's ranks (memorder_sample.h), one byte per page of
	 * RAM, or NULL: written as the "mem-order" section (version 2 files). */
	const uint8_t *order_rank;
};

/* Write the complete state of a paused VM to fd (a regular file, truncated
 * first; the caller holds no lock on it): header, vm_state_save()'s
 * sections, memory with holes for zero pages, fsync. *bytes gets the
 * bytes of data written (not counting holes). 0 or -errno with err set. */
int statefile_save(struct vm *vm, int fd, const struct statefile_save_opts *opts,
		   uint64_t *bytes, char *err, size_t errlen) __must_check;

/* An opened state file: header checked, sections read and checksummed. */
struct statefile {
	int fd;                /* owned: closed by statefile_close */
	struct statefile_info info;
	uint8_t *sections;     /* the sections, sections_len bytes */
};

/* Open the state file on fd (takes ownership of fd, even on failure): read
 * and check the header and every section's framing and checksum; take a
 * shared lock (so a save cannot truncate a file a VM runs from). Reads no
 * guest memory. 0 or -errno with err set. */
int statefile_open(struct statefile *sf, int fd, char *err, size_t errlen) __must_check;
void statefile_close(struct statefile *sf);

/* The file's "mem-order" record (state/memorder.h), parsed and checked
 * against its RAM size: 0 with *out filled (empty when the file has none:
 * older files, or a save without a sample), or -EINVAL/-ENOMEM with err
 * set ("state: section 'mem-order': ..."). */
struct mem_order;
int statefile_mem_order(const struct statefile *sf, struct mem_order *out, char *err,
			size_t errlen) __must_check;

/* Load the file's CPU, platform and device state into vm, whose memory is
 * the file's (vm_create_restore) and whose devices and vCPUs exist
 * (vm_setup_restore). 0 or -errno (logged, naming the section). */
int statefile_load(struct vm *vm, struct statefile *sf) __must_check;
