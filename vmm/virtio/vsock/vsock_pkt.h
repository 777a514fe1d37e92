/* vsock_pkt.h: the virtio-vsock packet header (virtio 1.2, 5.10.6) and the
 * checks every packet the guest transmits must pass before the device acts
 * on it. Pure functions on bytes: the unit tests and the fuzzer call them
 * directly.
 *
 * Only stream sockets (VIRTIO_VSOCK_TYPE_STREAM) are offered: SEQPACKET is
 * a feature (bit 1) this device does not offer, so a SEQPACKET packet is
 * malformed. The host's CID is 2; the guest's is the device's (>= 3).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSOCK_HOST_CID     2u
#define VSOCK_HDR_LEN      44u
#define VSOCK_MAX_PAYLOAD  65536u /* per packet, both ways (Linux: 64 KiB) */

#define VSOCK_TYPE_STREAM  1u

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

#define VSOCK_SHUTDOWN_RCV  1u /* the sender will receive no more */
#define VSOCK_SHUTDOWN_SEND 2u /* the sender will send no more */

#define VSOCK_EVENT_TRANSPORT_RESET 0u

/* The header, host byte order. */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags;
	uint32_t buf_alloc, fwd_cnt;
};

/* Why a transmitted packet was dropped (counted per reason in the status). */
enum vsock_bad {
	VSOCK_OK = 0,
	VSOCK_BAD_SHORT,    /* fewer than 44 readable bytes, or writable buffers */
	VSOCK_BAD_SRC_CID,  /* not the guest's CID */
	VSOCK_BAD_DST_CID,  /* not the host */
	VSOCK_BAD_TYPE,     /* not STREAM */
	VSOCK_BAD_OP,       /* 0 or above CREDIT_REQUEST */
	VSOCK_BAD_LEN,      /* len disagrees with the payload, or data on a control op */
	VSOCK_BAD_FLAGS,    /* flags on an op that has none, unknown SHUTDOWN bits */
	VSOCK_BAD_CREDIT,   /* more data than the credit we gave, fwd_cnt past what we sent */
	VSOCK_BAD_MAX,
};

extern const char *const vsock_bad_names[VSOCK_BAD_MAX];

/* Decode 44 bytes (little-endian) into h. */
void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_LEN], struct vsock_hdr *h);
/* Encode h into 44 bytes. */
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_LEN]);

/* Check a packet the guest transmitted: header h followed by `payload`
 * readable bytes in the chain. Returns VSOCK_OK or the first failed check. */
enum vsock_bad vsock_hdr_check(const struct vsock_hdr *h, uint64_t guest_cid, size_t payload);

/* The host client's request line, without its newline: "CONNECT <port>"
 * (decimal, 0..4294967295, one space, nothing else). true and *port. */
bool vsock_parse_connect(const char *line, size_t len, uint32_t *port);

/* Credit the peer left us: buf_alloc - (sent - fwd_cnt), 0 when the peer's
 * counters claim more in flight than its buffer. */
static inline uint32_t vsock_peer_free(uint32_t buf_alloc, uint32_t fwd_cnt, uint32_t sent)
{
	uint32_t in_flight = sent - fwd_cnt;

	return in_flight >= buf_alloc ? 0 : buf_alloc - in_flight;
}
