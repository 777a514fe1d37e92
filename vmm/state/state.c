/* state.c: little-endian byte-stream writer/reader for save and load. */
#include "state/state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void state_writer_init(struct state_writer *w)
{
	memset(w, 0, sizeof(*w));
}

void state_writer_free(struct state_writer *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

void state_put_bytes(struct state_writer *w, const void *p, size_t n)
{
	if (w->err)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		uint8_t *nb;

		while (cap < w->len + n)
			cap *= 2;
		nb = realloc(w->buf, cap);
		if (!nb) {
			w->err = -ENOMEM;
			return;
		}
		w->buf = nb;
		w->cap = cap;
	}
	if (n)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void put_le(struct state_writer *w, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	state_put_bytes(w, b, n);
}

void state_put_u8(struct state_writer *w, uint8_t v)
{
	put_le(w, v, 1);
}
void state_put_u16(struct state_writer *w, uint16_t v)
{
	put_le(w, v, 2);
}
void state_put_u32(struct state_writer *w, uint32_t v)
{
	put_le(w, v, 4);
}
void state_put_u64(struct state_writer *w, uint64_t v)
{
	put_le(w, v, 8);
}

int state_writer_error(const struct state_writer *w)
{
	return w->err;
}

void state_reader_init(struct state_reader *r, const void *buf, size_t len)
{
	r->buf = buf;
	r->len = len;
	r->pos = 0;
	r->err = 0;
}

void state_get_bytes(struct state_reader *r, void *p, size_t n)
{
	if (r->err || n > r->len - r->pos) {
		r->err = -EINVAL;
		memset(p, 0, n);
		return;
	}
	memcpy(p, r->buf + r->pos, n);
	r->pos += n;
}

static uint64_t get_le(struct state_reader *r, unsigned n)
{
	uint8_t b[8];
	uint64_t v = 0;

	state_get_bytes(r, b, n);
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

uint8_t state_get_u8(struct state_reader *r)
{
	return (uint8_t)get_le(r, 1);
}
uint16_t state_get_u16(struct state_reader *r)
{
	return (uint16_t)get_le(r, 2);
}
uint32_t state_get_u32(struct state_reader *r)
{
	return (uint32_t)get_le(r, 4);
}
uint64_t state_get_u64(struct state_reader *r)
{
	return get_le(r, 8);
}

void state_reader_fail(struct state_reader *r)
{
	r->err = -EINVAL;
}

int state_reader_error(const struct state_reader *r)
{
	return r->err;
}
