/* vsock_pkt.c: virtio-vsock header coding and validation (vsock_pkt.h). */
#include <endian.h>
#include <string.h>

#include "virtio/vsock/vsock_pkt.h"

const char *const vsock_bad_names[VSOCK_BAD_MAX] = {
	[VSOCK_OK] = "ok",
	[VSOCK_BAD_SHORT] = "short",
	[VSOCK_BAD_SRC_CID] = "src_cid",
	[VSOCK_BAD_DST_CID] = "dst_cid",
	[VSOCK_BAD_TYPE] = "type",
	[VSOCK_BAD_OP] = "op",
	[VSOCK_BAD_LEN] = "len",
	[VSOCK_BAD_FLAGS] = "flags",
	[VSOCK_BAD_CREDIT] = "credit",
};

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return le16toh(v);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_LEN], struct vsock_hdr *h)
{
	h->src_cid = get64(raw + 0);
	h->dst_cid = get64(raw + 8);
	h->src_port = get32(raw + 16);
	h->dst_port = get32(raw + 20);
	h->len = get32(raw + 24);
	h->type = get16(raw + 28);
	h->op = get16(raw + 30);
	h->flags = get32(raw + 32);
	h->buf_alloc = get32(raw + 36);
	h->fwd_cnt = get32(raw + 40);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_LEN])
{
	put64(raw + 0, h->src_cid);
	put64(raw + 8, h->dst_cid);
	put32(raw + 16, h->src_port);
	put32(raw + 20, h->dst_port);
	put32(raw + 24, h->len);
	put16(raw + 28, h->type);
	put16(raw + 30, h->op);
	put32(raw + 32, h->flags);
	put32(raw + 36, h->buf_alloc);
	put32(raw + 40, h->fwd_cnt);
}

enum vsock_bad vsock_hdr_check(const struct vsock_hdr *h, uint64_t guest_cid, size_t payload)
{
	if (h->src_cid != guest_cid)
		return VSOCK_BAD_SRC_CID;
	if (h->dst_cid != VSOCK_HOST_CID)
		return VSOCK_BAD_DST_CID;
	if (h->type != VSOCK_TYPE_STREAM)
		return VSOCK_BAD_TYPE;
	if (h->op == VSOCK_OP_INVALID || h->op > VSOCK_OP_CREDIT_REQUEST)
		return VSOCK_BAD_OP;
	if (h->op == VSOCK_OP_RW) {
		/* The payload must be exactly what len says: a driver that
		 * claims more than it gave is lying; trailing bytes would be
		 * silently lost. */
		if (h->len == 0 || h->len > VSOCK_MAX_PAYLOAD || h->len != payload)
			return VSOCK_BAD_LEN;
	} else if (h->len != 0 || payload != 0) {
		return VSOCK_BAD_LEN;
	}
	if (h->op == VSOCK_OP_SHUTDOWN) {
		if (!h->flags || h->flags & ~(VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND))
			return VSOCK_BAD_FLAGS;
	} else if (h->flags) {
		return VSOCK_BAD_FLAGS;
	}
	return VSOCK_OK;
}

bool vsock_parse_connect(const char *line, size_t len, uint32_t *port)
{
	static const char verb[] = "CONNECT ";
	uint64_t v = 0;
	size_t i = sizeof(verb) - 1;

	if (len <= i || memcmp(line, verb, i))
		return false;
	if (len - i > 10)
		return false;
	for (; i < len; i++) {
		if (line[i] < '0' || line[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(line[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*port = (uint32_t)v;
	return true;
}
