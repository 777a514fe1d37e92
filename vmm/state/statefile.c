/* statefile.c: the state file's header and its checksummed sections: pure
 * functions over bytes (fuzzed by tests/fuzz/core/fuzz_statefile.c). The
 * file I/O (save, open, load) is in statefile_io.c. */
#include "state/statefile.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <linux/kvm.h>
#include <zlib.h>

#include "arch/x86/x86.h"
#include "config.h"
#include "state/memorder.h"
#include "state/state.h"

/* Header fields (docs/state-format.md). Version 2: */
#define H_MAGIC        0
#define H_VERSION      8
#define H2_HDR_SIZE    12
#define H2_FLAGS       16
#define H2_NR_VCPUS    20
#define H2_MEM_SIZE    24
#define H2_SECT_OFF    32
#define H2_SECT_LEN    40
#define H2_MEM_OFF     48
#define H2_CREATED     56
#define H2_CREATOR     64
#define H2_RESERVED    112
#define H2_CRC         124
/* Version 1 (no flags, creation info or header checksum): */
#define H1_NR_VCPUS    12
#define H1_MEM_SIZE    16
#define H1_SECT_OFF    24
#define H1_SECT_LEN    32
#define H1_MEM_OFF     40
#define H1_RESERVED    48

/* Section header: id, version, crc, length. */
#define S_VERSION (STATE_SECTION_ID_LEN)
#define S_CRC     (STATE_SECTION_ID_LEN + 4)
#define S_LEN     (STATE_SECTION_ID_LEN + 8)

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}
static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}
static void wr32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}
static void wr64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __printf(3, 4);
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

uint32_t state_crc32(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	/* zlib takes uInt lengths. */
	while (len) {
		uInt n = (uInt)MIN(len, (size_t)1 << 30);

		crc = (uint32_t)crc32(crc, p, n);
		p += n;
		len -= n;
	}
	return crc;
}

static bool id_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':' || c == '.' ||
	       c == '_' || c == '-';
}

/* A valid id: 1..47 allowed characters, then NULs to the end of the field. */
static bool id_valid(const uint8_t *f)
{
	size_t n = 0;

	while (n < STATE_SECTION_ID_LEN && f[n])
		if (!id_char_ok((char)f[n++]))
			return false;
	if (n == 0 || n == STATE_SECTION_ID_LEN)
		return false;
	for (size_t i = n; i < STATE_SECTION_ID_LEN; i++)
		if (f[i])
			return false;
	return true;
}

size_t state_section_begin(struct state_writer *w, const char *id, uint32_t version)
{
	uint8_t hdr[STATE_SECTION_HDR_SIZE] = { 0 };
	size_t n = strlen(id), mark = w->len;

	if (n >= STATE_SECTION_ID_LEN) {
		w->err = w->err ? w->err : -EINVAL;
		return mark;
	}
	memcpy(hdr, id, n);
	if (!id_valid(hdr) && !w->err)
		w->err = -EINVAL;
	wr32(hdr + S_VERSION, version);
	state_put_bytes(w, hdr, sizeof(hdr));
	return mark;
}

/* The checksum covers the section's id, version, length and payload. */
static uint32_t section_crc(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
	uint32_t crc = state_crc32(0, hdr, S_CRC);

	crc = state_crc32(crc, hdr + S_LEN, 8);
	return state_crc32(crc, payload, len);
}

void state_section_end(struct state_writer *w, size_t mark)
{
	uint8_t *hdr;
	size_t len;

	if (w->err || mark > w->len || w->len - mark < STATE_SECTION_HDR_SIZE)
		return;
	hdr = w->buf + mark;
	len = w->len - mark - STATE_SECTION_HDR_SIZE;
	wr64(hdr + S_LEN, len);
	wr32(hdr + S_CRC, section_crc(hdr, hdr + STATE_SECTION_HDR_SIZE, len));
}

int state_section_next(struct state_reader *r, struct state_section *sec, char *err,
		       size_t errlen)
{
	size_t left = r->len - r->pos;
	char prev[STATE_SECTION_ID_LEN + 16];
	const uint8_t *h = r->buf + r->pos;
	uint64_t len;

	if (sec->id[0])
		snprintf(prev, sizeof(prev), "after section '%.47s'", sec->id);
	else
		snprintf(prev, sizeof(prev), "at the first section");
	if (r->err)
		return fail(err, errlen, "state: stream error %s", prev);
	if (left == 0)
		return 0;
	if (left < STATE_SECTION_ID_LEN || !id_valid(h)) {
		if (left < STATE_SECTION_ID_LEN)
			return fail(err, errlen, "state: truncated %s", prev);
		return fail(err, errlen, "state: invalid section id %s", prev);
	}
	memcpy(sec->id, h, STATE_SECTION_ID_LEN);
	if (left < STATE_SECTION_HDR_SIZE)
		return fail(err, errlen, "state: truncated in section '%s'", sec->id);
	len = rd64(h + S_LEN);
	if (len > left - STATE_SECTION_HDR_SIZE)
		return fail(err, errlen, "state: truncated in section '%s' (%llu bytes, %zu left)",
			    sec->id, (unsigned long long)len, left - STATE_SECTION_HDR_SIZE);
	if (section_crc(h, h + STATE_SECTION_HDR_SIZE, len) != rd32(h + S_CRC))
		return fail(err, errlen, "state: section '%s' checksum mismatch", sec->id);
	sec->version = rd32(h + S_VERSION);
	sec->data = h + STATE_SECTION_HDR_SIZE;
	sec->len = (size_t)len;
	r->pos += STATE_SECTION_HDR_SIZE + (size_t)len;
	return 1;
}

size_t statefile_build_header(const struct statefile_info *in, uint8_t *buf)
{
	memset(buf, 0, STATEFILE_HEADER_SIZE);
	memcpy(buf + H_MAGIC, STATEFILE_MAGIC, 8);
	wr32(buf + H_VERSION, in->version);
	if (in->version == 1) {
		wr32(buf + H1_NR_VCPUS, in->nr_vcpus);
		wr64(buf + H1_MEM_SIZE, in->mem_size);
		wr64(buf + H1_SECT_OFF, in->sections_off);
		wr64(buf + H1_SECT_LEN, in->sections_len);
		wr64(buf + H1_MEM_OFF, in->mem_off);
		return STATEFILE_V1_HEADER_SIZE;
	}
	wr32(buf + H2_HDR_SIZE, STATEFILE_HEADER_SIZE);
	wr32(buf + H2_FLAGS, in->flags);
	wr32(buf + H2_NR_VCPUS, in->nr_vcpus);
	wr64(buf + H2_MEM_SIZE, in->mem_size);
	wr64(buf + H2_SECT_OFF, in->sections_off);
	wr64(buf + H2_SECT_LEN, in->sections_len);
	wr64(buf + H2_MEM_OFF, in->mem_off);
	wr64(buf + H2_CREATED, in->created_ns);
	memcpy(buf + H2_CREATOR, in->creator, strnlen(in->creator, sizeof(in->creator) - 1));
	wr32(buf + H2_CRC, state_crc32(0, buf, H2_CRC));
	return STATEFILE_HEADER_SIZE;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

static int parse_v2(const uint8_t *buf, size_t len, struct statefile_info *o, char *err,
		    size_t errlen)
{
	if (len < STATEFILE_HEADER_SIZE)
		return fail(err, errlen, "state: truncated in the header");
	if (rd32(buf + H2_CRC) != state_crc32(0, buf, H2_CRC))
		return fail(err, errlen, "state: header checksum mismatch");
	if (rd32(buf + H2_HDR_SIZE) != STATEFILE_HEADER_SIZE)
		return fail(err, errlen, "state: header size %u, expected %u",
			    rd32(buf + H2_HDR_SIZE), STATEFILE_HEADER_SIZE);
	if (!all_zero(buf + H2_RESERVED, H2_CRC - H2_RESERVED) ||
	    !memchr(buf + H2_CREATOR, 0, sizeof(o->creator)))
		return fail(err, errlen, "state: header has garbage in reserved fields");
	o->flags = rd32(buf + H2_FLAGS);
	if (o->flags & ~STATEFILE_FLAG_SPARSE)
		return fail(err, errlen, "state: unknown header flags 0x%x", o->flags);
	o->nr_vcpus = rd32(buf + H2_NR_VCPUS);
	o->mem_size = rd64(buf + H2_MEM_SIZE);
	o->sections_off = rd64(buf + H2_SECT_OFF);
	o->sections_len = rd64(buf + H2_SECT_LEN);
	o->mem_off = rd64(buf + H2_MEM_OFF);
	o->created_ns = rd64(buf + H2_CREATED);
	memcpy(o->creator, buf + H2_CREATOR, sizeof(o->creator));
	return 0;
}

static int parse_v1(const uint8_t *buf, size_t len, struct statefile_info *o, char *err,
		    size_t errlen)
{
	if (len < STATEFILE_V1_HEADER_SIZE)
		return fail(err, errlen, "state: truncated in the header");
	if (!all_zero(buf + H1_RESERVED, STATEFILE_V1_HEADER_SIZE - H1_RESERVED))
		return fail(err, errlen, "state: header has garbage in reserved fields");
	o->nr_vcpus = rd32(buf + H1_NR_VCPUS);
	o->mem_size = rd64(buf + H1_MEM_SIZE);
	o->sections_off = rd64(buf + H1_SECT_OFF);
	o->sections_len = rd64(buf + H1_SECT_LEN);
	o->mem_off = rd64(buf + H1_MEM_OFF);
	return 0;
}

int statefile_parse_header(const uint8_t *buf, size_t len, uint64_t file_size,
			   struct statefile_info *o, char *err, size_t errlen)
{
	uint64_t hdr_size, sect_end;
	int ret;

	memset(o, 0, sizeof(*o));
	if (len < 12)
		return fail(err, errlen, "state: truncated in the header (%zu bytes)", len);
	if (memcmp(buf + H_MAGIC, STATEFILE_MAGIC, 8))
		return fail(err, errlen, "state: not a cella state file (bad magic)");
	o->version = rd32(buf + H_VERSION);
	if (o->version < STATEFILE_VERSION_MIN || o->version > STATEFILE_VERSION)
		return fail(err, errlen, "state: format version %u is not supported (%d to %d are)",
			    o->version, STATEFILE_VERSION_MIN, STATEFILE_VERSION);
	ret = o->version == 1 ? parse_v1(buf, len, o, err, errlen) : parse_v2(buf, len, o, err, errlen);
	if (ret)
		return ret;
	hdr_size = o->version == 1 ? STATEFILE_V1_HEADER_SIZE : STATEFILE_HEADER_SIZE;
	o->file_size = file_size;
	/* 0 vCPUs: a device-only state (unit tests); a worker refuses it. */
	if (o->nr_vcpus > CONFIG_MAX_CPUS)
		return fail(err, errlen, "state: header: %u vCPUs (at most %d)", o->nr_vcpus,
			    CONFIG_MAX_CPUS);
	if (o->mem_size == 0 || o->mem_size % MiB(2))
		return fail(err, errlen, "state: header: memory size %llu is not a multiple of 2 MiB",
			    (unsigned long long)o->mem_size);
	if (o->sections_off != hdr_size || o->sections_len > STATEFILE_SECTIONS_MAX)
		return fail(err, errlen, "state: header: sections at %llu, %llu bytes: out of range",
			    (unsigned long long)o->sections_off,
			    (unsigned long long)o->sections_len);
	sect_end = o->sections_off + o->sections_len;
	if (o->mem_off != ALIGN_UP(sect_end, (uint64_t)STATEFILE_MEM_ALIGN))
		return fail(err, errlen, "state: header: memory offset %llu, expected %llu",
			    (unsigned long long)o->mem_off,
			    (unsigned long long)ALIGN_UP(sect_end, (uint64_t)STATEFILE_MEM_ALIGN));
	if (sect_end > file_size)
		return fail(err, errlen, "state: truncated in the sections (file is %llu bytes)",
			    (unsigned long long)file_size);
	if (o->mem_off > file_size || file_size - o->mem_off < o->mem_size)
		return fail(err, errlen, "state: truncated in the memory region (file is %llu bytes, "
			    "needs %llu)", (unsigned long long)file_size,
			    (unsigned long long)(o->mem_off + o->mem_size));
	return 0;
}

/* Payload checks that need no KVM, per section kind. */
static int check_payload(const struct state_section *s, uint64_t mem_size, char *err,
			 size_t errlen)
{
	struct state_reader r;
	char why[160] = "";
	int ret = 0;

	state_reader_init(&r, s->data, s->len);
	if (!strncmp(s->id, "vcpu", 4))
		ret = x86_vcpu_state_load(-1, -1, &r, why, sizeof(why));
	else if (!strcmp(s->id, "pic-master"))
		ret = x86_irqchip_load(-1, KVM_IRQCHIP_PIC_MASTER, &r, why, sizeof(why));
	else if (!strcmp(s->id, "pic-slave"))
		ret = x86_irqchip_load(-1, KVM_IRQCHIP_PIC_SLAVE, &r, why, sizeof(why));
	else if (!strcmp(s->id, "ioapic"))
		ret = x86_irqchip_load(-1, KVM_IRQCHIP_IOAPIC, &r, why, sizeof(why));
	else if (!strcmp(s->id, "pit"))
		ret = x86_pit_load(-1, &r, why, sizeof(why));
	else if (!strcmp(s->id, "clock"))
		ret = x86_clock_load(-1, &r, why, sizeof(why));
	else if (!strcmp(s->id, MEM_ORDER_SECTION)) {
		struct mem_order o;

		ret = mem_order_parse(s->data, s->len, mem_size, &o, why, sizeof(why));
		mem_order_free(&o);
	}
	if (ret)
		return fail(err, errlen, "state: section '%s': %s", s->id, why);
	return 0;
}

int statefile_check_buffer(const uint8_t *buf, size_t len, uint64_t file_size, char *err,
			   size_t errlen)
{
	struct statefile_info info;
	struct state_section sec = { .id = "" };
	struct state_reader r;
	int ret;

	ret = statefile_parse_header(buf, len, file_size, &info, err, errlen);
	if (ret)
		return ret;
	if (info.mem_off > len)
		return fail(err, errlen, "state: truncated in the sections (%zu bytes given)", len);
	state_reader_init(&r, buf + info.sections_off, (size_t)info.sections_len);
	while ((ret = state_section_next(&r, &sec, err, errlen)) == 1)
		if ((ret = check_payload(&sec, info.mem_size, err, errlen)))
			return ret;
	if (ret)
		return ret;
	if (!all_zero(buf + info.sections_off + info.sections_len,
		      (size_t)(info.mem_off - info.sections_off - info.sections_len)))
		return fail(err, errlen, "state: garbage between the sections and the memory region");
	return 0;
}
