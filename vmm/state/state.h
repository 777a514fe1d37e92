/* state.h: byte-stream writer and reader for device and platform save/load.
 *
 * Little-endian, no padding. Errors are sticky: after an overflow or a short
 * read every later call does nothing and state_*_error() reports -ENOMEM or
 * -EINVAL, so a save/load function can check once at the end.
 * Each device writes its own section version first and refuses versions it
 * does not know.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct state_writer {
	uint8_t *buf;
	size_t len, cap;
	int err;
};

struct state_reader {
	const uint8_t *buf;
	size_t len, pos;
	int err;
};

void state_writer_init(struct state_writer *w);
void state_writer_free(struct state_writer *w);
void state_put_u8(struct state_writer *w, uint8_t v);
void state_put_u16(struct state_writer *w, uint16_t v);
void state_put_u32(struct state_writer *w, uint32_t v);
void state_put_u64(struct state_writer *w, uint64_t v);
void state_put_bytes(struct state_writer *w, const void *p, size_t n);
int state_writer_error(const struct state_writer *w) __must_check;

void state_reader_init(struct state_reader *r, const void *buf, size_t len);
uint8_t state_get_u8(struct state_reader *r);
uint16_t state_get_u16(struct state_reader *r);
uint32_t state_get_u32(struct state_reader *r);
uint64_t state_get_u64(struct state_reader *r);
void state_get_bytes(struct state_reader *r, void *p, size_t n);
/* Mark the stream invalid (e.g. a field out of range). */
void state_reader_fail(struct state_reader *r);
int state_reader_error(const struct state_reader *r) __must_check;
