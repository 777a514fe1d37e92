/* acpi_aml.c: the AML writer behind acpi.c's DSDT (contracts in acpi_aml.h). */
#include <errno.h>
#include <string.h>

#include "arch/x86/acpi_aml.h"

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	a->buf = buf;
	a->cap = cap;
	a->len = 0;
	a->overflow = false;
}

int aml_error(const struct aml *a)
{
	return a->overflow ? -ENOSPC : 0;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		aml_byte(a, (uint8_t)(v >> (8 * i)));
}

static void aml_seg(struct aml *a, const char *s, size_t n)
{
	char seg[4] = { '_', '_', '_', '_' };

	memcpy(seg, s, n > 4 ? 4 : n);
	aml_bytes(a, seg, 4);
}

void aml_path(struct aml *a, const char *path)
{
	const char *p = path, *dot;
	unsigned nsegs = 1;

	if (*p == '\\') {
		aml_byte(a, AML_ROOT);
		p++;
	}
	for (const char *q = p; *q; q++)
		nsegs += *q == '.';
	if (!*p) {
		aml_byte(a, 0); /* NullName: the root itself */
		return;
	}
	if (nsegs == 2) {
		aml_byte(a, AML_DUAL);
	} else if (nsegs > 2) {
		aml_byte(a, AML_MULTI);
		aml_byte(a, (uint8_t)nsegs);
	}
	for (;;) {
		dot = strchr(p, '.');
		aml_seg(a, p, dot ? (size_t)(dot - p) : strlen(p));
		if (!dot)
			break;
		p = dot + 1;
	}
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO);
	} else if (v == 1) {
		aml_byte(a, AML_ONE);
	} else if (v <= 0xFF) {
		aml_byte(a, AML_BYTE);
		aml_le(a, v, 1);
	} else if (v <= 0xFFFF) {
		aml_byte(a, AML_WORD);
		aml_le(a, v, 2);
	} else if (v <= 0xFFFFFFFFu) {
		aml_byte(a, AML_DWORD);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD);
		aml_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	aml_byte(a, AML_STRING);
	aml_bytes(a, s, strlen(s) + 1);
}

static unsigned hexval(char c)
{
	if (c >= '0' && c <= '9')
		return (unsigned)(c - '0');
	if (c >= 'A' && c <= 'F')
		return (unsigned)(c - 'A' + 10);
	return 0;
}

void aml_eisaid(struct aml *a, const char *id)
{
	/* Three letters in 5 bits each ('A' = 1), then four hex digits. */
	unsigned c1 = (unsigned)(id[0] - '@') & 0x1f, c2 = (unsigned)(id[1] - '@') & 0x1f,
		 c3 = (unsigned)(id[2] - '@') & 0x1f;

	aml_byte(a, AML_DWORD);
	aml_byte(a, (uint8_t)((c1 << 2) | (c2 >> 3)));
	aml_byte(a, (uint8_t)(((c2 & 7) << 5) | c3));
	aml_byte(a, (uint8_t)((hexval(id[3]) << 4) | hexval(id[4])));
	aml_byte(a, (uint8_t)((hexval(id[5]) << 4) | hexval(id[6])));
}

size_t aml_pkg_begin(struct aml *a)
{
	return a->len;
}

void aml_pkg_end(struct aml *a, size_t start)
{
	size_t body = a->len - start, total;
	unsigned n;
	uint8_t enc[4];

	if (a->overflow)
		return;
	/* PkgLength counts itself: 1 byte up to 63, then 2, 3 or 4 bytes
	 * holding 4 + 8 * (n - 1) bits. */
	for (n = 1; n <= 4; n++) {
		total = body + n;
		if (n == 1 ? total < 0x40 : total < (1u << (4 + 8 * (n - 1))))
			break;
	}
	if (n > 4 || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	if (n == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
		for (unsigned i = 1; i < n; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	memmove(a->buf + start + n, a->buf + start, body);
	memcpy(a->buf + start, enc, n);
	a->len += n;
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME);
	aml_path(a, path);
}

size_t aml_device_begin(struct aml *a, const char *path)
{
	size_t start;

	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_DEVICE);
	start = aml_pkg_begin(a);
	aml_path(a, path);
	return start;
}

size_t aml_scope_begin(struct aml *a, const char *path)
{
	size_t start;

	aml_byte(a, AML_SCOPE);
	start = aml_pkg_begin(a);
	aml_path(a, path);
	return start;
}

size_t aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized)
{
	size_t start;

	aml_byte(a, AML_METHOD);
	start = aml_pkg_begin(a);
	aml_path(a, path);
	aml_byte(a, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
	return start;
}

void aml_io_region(struct aml *a, const char *name, uint16_t port, uint8_t len)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_REGION);
	aml_path(a, name);
	aml_byte(a, 0x01); /* SystemIO */
	aml_integer(a, port);
	aml_integer(a, len);
}

void aml_field(struct aml *a, const char *region, const char *field, unsigned bits)
{
	size_t start;

	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_FIELD);
	start = aml_pkg_begin(a);
	aml_path(a, region);
	aml_byte(a, 0x01); /* ByteAcc, NoLock, Preserve */
	aml_path(a, field);
	aml_byte(a, (uint8_t)bits); /* a PkgLength: one byte below 64 bits */
	aml_pkg_end(a, start);
}

size_t aml_resources_begin(struct aml *a, size_t *body)
{
	size_t start;

	aml_byte(a, AML_BUFFER);
	start = aml_pkg_begin(a);
	*body = a->len; /* the buffer size goes here once known */
	return start;
}

void aml_resources_end(struct aml *a, size_t start, size_t body)
{
	uint8_t size[3];
	size_t n, len;
	struct aml tmp;

	aml_byte(a, 0x79); /* End tag, checksum 0 ("treated as valid") */
	aml_byte(a, 0x00);
	if (a->overflow)
		return;
	len = a->len - body;
	aml_init(&tmp, size, sizeof(size));
	aml_integer(&tmp, len);
	n = tmp.len;
	if (n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memmove(a->buf + body + n, a->buf + body, len);
	memcpy(a->buf + body, size, n);
	a->len += n;
	aml_pkg_end(a, start);
}

void aml_res_io(struct aml *a, uint16_t port, uint8_t len)
{
	aml_byte(a, 0x47);
	aml_byte(a, 0x01); /* 16-bit decode */
	aml_le(a, port, 2);
	aml_le(a, port, 2);
	aml_byte(a, 0x00); /* alignment */
	aml_byte(a, len);
}

void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
	aml_byte(a, 0x22);
	aml_le(a, 1u << (irq & 15), 2);
}

void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len)
{
	aml_byte(a, 0x86);
	aml_le(a, 9, 2);
	aml_byte(a, 0x01); /* read-write */
	aml_le(a, base, 4);
	aml_le(a, len, 4);
}

void aml_res_interrupt_edge(struct aml *a, uint32_t gsi)
{
	aml_byte(a, 0x89);
	aml_le(a, 6, 2);
	aml_byte(a, 0x03); /* consumer, edge, active high, exclusive */
	aml_byte(a, 1);
	aml_le(a, gsi, 4);
}
