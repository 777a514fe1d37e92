/* migstream.c: migration stream records: encoding, and the receiving side's
 * parser, which validates every length and address before it uses it. */
#include "migrate/migstream.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mem.h"

static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

void mig_hdr_get(const uint8_t in[MIG_HDR_LEN], uint16_t *type, uint16_t *flags, uint32_t *len)
{
	*type = get16(in);
	*flags = get16(in + 2);
	*len = get32(in + 4);
}

void mig_hello_put(uint8_t out[MIG_HELLO_LEN], const struct mig_hello *h)
{
	memcpy(out, MIG_MAGIC, 8);
	put32(out + 8, h->version);
	put32(out + 12, h->page_size);
	put64(out + 16, h->ram_size);
	put64(out + 24, h->low_size);
	put32(out + 32, h->nr_vcpus);
	put32(out + 36, h->nr_disks);
	put64(out + 40, h->flags);
}

int mig_hello_get(const uint8_t *p, uint32_t len, struct mig_hello *h, char *why, size_t whylen)
{
	if (len != MIG_HELLO_LEN || memcmp(p, MIG_MAGIC, 8)) {
		snprintf(why, whylen, "not a cella migration stream (bad magic)");
		return -EINVAL;
	}
	memset(h, 0, sizeof(*h));
	h->version = get32(p + 8);
	h->page_size = get32(p + 12);
	h->ram_size = get64(p + 16);
	h->low_size = get64(p + 24);
	h->nr_vcpus = get32(p + 32);
	h->nr_disks = get32(p + 36);
	h->flags = get64(p + 40);
	if (h->version != MIG_VERSION) {
		snprintf(why, whylen, "stream version %u, this worker speaks %u", h->version,
			 MIG_VERSION);
		return -EPROTO;
	}
	if (h->page_size != MIG_PAGE_SIZE) {
		snprintf(why, whylen, "page size %u, expected %u", h->page_size, MIG_PAGE_SIZE);
		return -EINVAL;
	}
	if (h->flags & ~(uint64_t)MIG_FLAG_STORAGE) {
		snprintf(why, whylen, "unknown stream flags 0x%llx", (unsigned long long)h->flags);
		return -EINVAL;
	}
	return 0;
}

uint32_t mig_status_put(uint8_t *out, uint16_t type, int32_t status, uint64_t time_ns,
			const char *msg)
{
	size_t n = msg ? strnlen(msg, MIG_MSG_MAX) : 0;
	uint32_t off = 8;

	put32(out, (uint32_t)status);
	put32(out + 4, (uint32_t)n);
	if (type == MIG_REC_ACK) {
		put64(out + 8, time_ns);
		off = 16;
	}
	if (n)
		memcpy(out + off, msg, n);
	return off + (uint32_t)n;
}

int mig_status_get(const uint8_t *p, uint32_t len, uint16_t type, int32_t *status,
		   uint64_t *time_ns, char *msg, size_t msglen)
{
	uint32_t off = type == MIG_REC_ACK ? 16 : 8, n;

	if (len < off)
		return -EINVAL;
	*status = (int32_t)get32(p);
	n = get32(p + 4);
	if (n > MIG_MSG_MAX || n != len - off)
		return -EINVAL;
	if (time_ns)
		*time_ns = type == MIG_REC_ACK ? get64(p + 8) : 0;
	if (msglen) {
		size_t k = n < msglen - 1 ? n : msglen - 1;

		memcpy(msg, p + off, k);
		msg[k] = 0;
		/* The peer's text goes into our logs: keep it printable. */
		for (size_t i = 0; i < k; i++)
			if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] > 0x7e)
				msg[i] = '?';
	}
	return 0;
}

bool mig_page_is_zero(const void *page)
{
	const uint64_t *w = page;

	for (unsigned i = 0; i < MIG_PAGE_SIZE / 8; i += 8) {
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] |
		    w[i + 7])
			return false;
	}
	return true;
}

uint64_t mig_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void mig_rx_init(struct mig_rx *rx, struct guest_mem *mem, const struct mig_rx_ops *ops,
		 void *opaque)
{
	memset(rx, 0, sizeof(*rx));
	rx->mem = mem;
	rx->ops = ops;
	rx->opaque = opaque;
	rx->phase = MIG_RX_HELLO;
}

static int rx_fail(struct mig_rx *rx, int err, const char *fmt, ...) __printf(3, 4);
static int rx_fail(struct mig_rx *rx, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rx->err, sizeof(rx->err), fmt, ap);
	va_end(ap);
	rx->phase = MIG_RX_FAILED;
	return err;
}

static const char *rec_name(uint16_t type)
{
	static const char *const names[] = { "?", "HELLO", "READY", "PAGES", "ZERO", "ROUND",
					     "DISK_DATA", "STATE", "COMPLETE", "ACK", "ERROR",
					     "SYNC", "DISKS", "DISK_ZERO" };

	return type <= MIG_REC_TYPE_MAX ? names[type] : "unknown";
}

int mig_rx_check_hdr(struct mig_rx *rx, uint16_t type, uint16_t flags, uint32_t len)
{
	uint32_t min = 0, max = 0;

	if (rx->phase == MIG_RX_FAILED || rx->phase == MIG_RX_COMPLETE)
		return rx_fail(rx, -EINVAL, "record after the end of the stream");
	if (flags)
		return rx_fail(rx, -EINVAL, "record type %u: flags 0x%x are not zero", type, flags);
	switch (type) {
	case MIG_REC_HELLO: min = max = MIG_HELLO_LEN; break;
	case MIG_REC_PAGES: min = 8 + 8 + MIG_PAGE_SIZE; max = 8 + MIG_PAGES_MAX * (8 + MIG_PAGE_SIZE); break;
	case MIG_REC_ZERO: min = 16; max = 8 + MIG_ZERO_MAX * 8; break;
	case MIG_REC_ROUND: min = max = 16; break;
	case MIG_REC_DISK_DATA: min = 16 + 512; max = 16 + MIG_DISK_DATA_MAX; break;
	case MIG_REC_STATE: min = 0; max = MIG_STATE_MAX; break;
	case MIG_REC_COMPLETE: min = max = 24; break;
	case MIG_REC_ERROR: min = 8; max = 8 + MIG_MSG_MAX; break;
	case MIG_REC_SYNC: min = max = 8; break;
	case MIG_REC_DISKS: min = 8; max = 8 + MIG_DISKS_MAX * 8; break;
	case MIG_REC_DISK_ZERO: min = max = 24; break;
	default:
		/* READY and ACK travel the other way. */
		return rx_fail(rx, -EINVAL, "unexpected record type %u (%s)", type, rec_name(type));
	}
	if (len < min || len > max)
		return rx_fail(rx, -EINVAL, "%s record of %u bytes (allowed %u to %u)",
			       rec_name(type), len, min, max);
	if (rx->phase == MIG_RX_HELLO && type != MIG_REC_HELLO && type != MIG_REC_ERROR)
		return rx_fail(rx, -EINVAL, "%s record before HELLO", rec_name(type));
	if (rx->phase != MIG_RX_HELLO && type == MIG_REC_HELLO)
		return rx_fail(rx, -EINVAL, "second HELLO record");
	return 0;
}

/* Check that gpa names one whole page of guest RAM and return it. */
static uint8_t *rx_page(struct mig_rx *rx, uint64_t gpa)
{
	if (gpa % MIG_PAGE_SIZE)
		return NULL;
	return guest_mem_ptr_any(rx->mem, gpa, MIG_PAGE_SIZE);
}

static int rx_pages(struct mig_rx *rx, const uint8_t *p, uint32_t len, bool zero)
{
	uint32_t n = get32(p), per = zero ? 8 : 8 + MIG_PAGE_SIZE;
	const uint8_t *data = p + 8 + (size_t)n * 8;

	if (get32(p + 4))
		return rx_fail(rx, -EINVAL, "page record: reserved field not zero");
	if (n == 0 || n > (zero ? MIG_ZERO_MAX : MIG_PAGES_MAX) || len != 8 + (uint64_t)n * per)
		return rx_fail(rx, -EINVAL, "page record: %u pages do not match its %u bytes", n,
			       len);
	if (rx->phase != MIG_RX_RAM)
		return rx_fail(rx, -EINVAL, "page record after the device state");
	/* Validate every address before writing any page. */
	for (uint32_t i = 0; i < n; i++) {
		uint64_t gpa = get64(p + 8 + (size_t)i * 8);

		if (!rx_page(rx, gpa))
			return rx_fail(rx, -EINVAL,
				       "page at gpa 0x%llx is not a whole page of guest RAM",
				       (unsigned long long)gpa);
	}
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *dst = rx_page(rx, get64(p + 8 + (size_t)i * 8));

		if (zero)
			memset(dst, 0, MIG_PAGE_SIZE);
		else
			memcpy(dst, data + (size_t)i * MIG_PAGE_SIZE, MIG_PAGE_SIZE);
	}
	if (zero)
		rx->zero_pages += n;
	else
		rx->pages += n;
	return 0;
}

static int rx_hello(struct mig_rx *rx, const uint8_t *p, uint32_t len)
{
	char why[200];
	int ret = mig_hello_get(p, len, &rx->hello, why, sizeof(why));

	if (ret)
		return rx_fail(rx, ret, "%s", why);
	if (rx->hello.ram_size != rx->mem->size || rx->hello.low_size != rx->mem->low_size)
		return rx_fail(rx, -EINVAL,
			       "source has %llu MiB of RAM (%llu below 3 GiB), this VM %llu MiB",
			       (unsigned long long)(rx->hello.ram_size >> 20),
			       (unsigned long long)(rx->hello.low_size >> 20),
			       (unsigned long long)(rx->mem->size >> 20));
	if (rx->ops && rx->ops->hello) {
		why[0] = 0;
		ret = rx->ops->hello(rx->opaque, &rx->hello, why, sizeof(why));
		if (ret)
			return rx_fail(rx, ret, "%s", why[0] ? why : "refused by this worker");
	}
	rx->phase = MIG_RX_RAM;
	return 0;
}

/* DISKS: the source's disk sizes, once, before any disk data. */
static int rx_disks(struct mig_rx *rx, const uint8_t *p, uint32_t len)
{
	uint32_t n = get32(p);
	char why[200] = "";
	int ret;

	if (!(rx->hello.flags & MIG_FLAG_STORAGE) || !rx->ops || !rx->ops->disks)
		return rx_fail(rx, -EINVAL, "disk list in a stream without storage");
	if (rx->phase != MIG_RX_RAM || rx->disks_known)
		return rx_fail(rx, -EINVAL, "disk list out of order");
	if (get32(p + 4) || n > MIG_DISKS_MAX || n != rx->hello.nr_disks || len != 8 + n * 8)
		return rx_fail(rx, -EINVAL, "disk list: %u disks do not match its %u bytes or the "
			       "HELLO's %u disks", n, len, rx->hello.nr_disks);
	for (uint32_t i = 0; i < n; i++) {
		rx->disk_size[i] = get64(p + 8 + (size_t)i * 8);
		if (rx->disk_size[i] % 512)
			return rx_fail(rx, -EINVAL, "disk %u: size %llu is not a multiple of 512", i,
				       (unsigned long long)rx->disk_size[i]);
	}
	ret = rx->ops->disks(rx->opaque, n, rx->disk_size, why, sizeof(why));
	if (ret)
		return rx_fail(rx, ret, "disks refused: %s", why[0] ? why : "they do not match");
	rx->disks_known = true;
	return 0;
}

/* DISK_DATA and DISK_ZERO: the range must lie inside the announced disk. */
static int rx_disk(struct mig_rx *rx, const uint8_t *p, uint32_t len, bool zero)
{
	uint32_t disk = get32(p);
	uint64_t off = get64(p + 8), n = zero ? get64(p + 16) : len - 16;
	char why[200] = "";
	int ret;

	if (!rx->disks_known || !rx->ops || !(zero ? !!rx->ops->disk_zero : !!rx->ops->disk))
		return rx_fail(rx, -EINVAL, "disk data before the disk list, or without storage");
	if (rx->phase != MIG_RX_RAM)
		return rx_fail(rx, -EINVAL, "disk data after the device state");
	if (get32(p + 4) || disk >= rx->hello.nr_disks || !n || n % 512 || off % 512 ||
	    (zero && n > MIG_DISK_ZERO_MAX) || off > rx->disk_size[disk] ||
	    n > rx->disk_size[disk] - off)
		return rx_fail(rx, -EINVAL, "disk %s: disk %u offset 0x%llx length %llu invalid",
			       zero ? "zero range" : "data", disk, (unsigned long long)off,
			       (unsigned long long)n);
	ret = zero ? rx->ops->disk_zero(rx->opaque, disk, off, n, why, sizeof(why))
		   : rx->ops->disk(rx->opaque, disk, off, p + 16, (uint32_t)n, why, sizeof(why));
	if (ret)
		return rx_fail(rx, ret, "disk %u: %s", disk, why[0] ? why : "write refused");
	if (zero)
		rx->disk_zero_bytes += n;
	else
		rx->disk_bytes += n;
	return 0;
}

int mig_rx_record(struct mig_rx *rx, uint16_t type, const uint8_t *p, uint32_t len)
{
	char why[200] = "";
	int ret;

	rx->bytes += MIG_HDR_LEN + (uint64_t)len;
	switch (type) {
	case MIG_REC_HELLO:
		return rx_hello(rx, p, len);
	case MIG_REC_PAGES:
		return rx_pages(rx, p, len, false);
	case MIG_REC_ZERO:
		return rx_pages(rx, p, len, true);
	case MIG_REC_ROUND:
		if (get32(p + 4) || get32(p) != rx->rounds + 1)
			return rx_fail(rx, -EINVAL, "round marker %u out of order (after %u)",
				       get32(p), rx->rounds);
		rx->rounds++;
		return 0;
	case MIG_REC_DISK_DATA:
		return rx_disk(rx, p, len, false);
	case MIG_REC_DISK_ZERO:
		return rx_disk(rx, p, len, true);
	case MIG_REC_DISKS:
		return rx_disks(rx, p, len);
	case MIG_REC_STATE:
		if (rx->phase != MIG_RX_RAM)
			return rx_fail(rx, -EINVAL, "second device state record");
		/* Without the disk list no disk content came: do not run the
		 * guest on empty disks. */
		if ((rx->hello.flags & MIG_FLAG_STORAGE) && !rx->disks_known)
			return rx_fail(rx, -EINVAL, "device state before the disk list");
		if (rx->ops && rx->ops->state &&
		    (ret = rx->ops->state(rx->opaque, p, len, why, sizeof(why))))
			return rx_fail(rx, ret, "device state refused: %s", why[0] ? why : "invalid");
		rx->phase = MIG_RX_STATE_DONE;
		return 0;
	case MIG_REC_COMPLETE:
		if (rx->phase != MIG_RX_STATE_DONE)
			return rx_fail(rx, -EINVAL, "COMPLETE before the device state");
		rx->pause_ns = get64(p);
		rx->phase = MIG_RX_COMPLETE;
		return 1;
	case MIG_REC_SYNC:
		if (rx->phase != MIG_RX_RAM)
			return rx_fail(rx, -EINVAL, "SYNC after the device state");
		return 0; /* the caller echoes it */
	case MIG_REC_ERROR: {
		int32_t st = 0;
		char msg[MIG_MSG_MAX + 1];

		if (mig_status_get(p, len, type, &st, NULL, msg, sizeof(msg)))
			return rx_fail(rx, -EINVAL, "malformed ERROR record");
		rx->peer_errno = st;
		return rx_fail(rx, -ECONNABORTED, "the source gave up: %s", msg);
	}
	default:
		return rx_fail(rx, -EINVAL, "unexpected record type %u", type);
	}
}

int mig_rx_feed(struct mig_rx *rx, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		uint16_t type, flags;
		uint32_t n;
		int ret;

		if (len - off < MIG_HDR_LEN)
			return rx_fail(rx, -EPIPE, "stream ends inside a record header");
		mig_hdr_get(buf + off, &type, &flags, &n);
		off += MIG_HDR_LEN;
		ret = mig_rx_check_hdr(rx, type, flags, n);
		if (ret)
			return ret;
		if (len - off < n)
			return rx_fail(rx, -EPIPE, "stream ends inside a %s record", rec_name(type));
		ret = mig_rx_record(rx, type, buf + off, n);
		off += n;
		if (ret)
			return ret;
	}
	return rx->phase == MIG_RX_COMPLETE ? 1 : 0;
}
