/* fuzz_virtq.c: the input lays out a descriptor table, avail ring and
 * indirect tables in a small guest memory; pop and push until the queue is
 * empty or broken. Guest RAM is a plain heap buffer of exactly RAM_SIZE
 * bytes, so AddressSanitizer catches any access outside it.
 *
 * Input: [0] queue size (low 7 bits; bit 7 set: used as is, else 1 << (b & 7))
 *        [1] bit 0 EVENT_IDX, bit 1 INDIRECT_DESC
 *        [2..3] starting avail/used index (LE)
 *        [4..9] desc / avail / used addresses, LE u16 each (x 2 for more reach)
 *        [10..] guest memory contents from address 0
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "virtio/virtq.h"

#define RAM_SIZE 0x10000

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_mem mem = { .memfd = -1 };
	struct virtq vq;
	struct virtq_chain *c;
	struct virtq_error err;
	uint8_t *ram;

	if (size < 10)
		return 0;
	ram = calloc(1, RAM_SIZE);
	c = malloc(sizeof(*c));
	if (!ram || !c)
		abort();
	memcpy(ram, data + 10, size - 10 < RAM_SIZE ? size - 10 : RAM_SIZE);
	mem.host = ram;
	mem.size = mem.low_size = RAM_SIZE;

	memset(&vq, 0, sizeof(vq));
	vq.num_max = VIRTQ_NUM_MAX;
	vq.num = (data[0] & 0x80) ? (data[0] & 0x7f) : (uint16_t)(1u << (data[0] & 7));
	vq.event_idx = data[1] & 1;
	vq.indirect = data[1] & 2;
	vq.desc_gpa = (uint64_t)le16(data + 4) * 2;
	vq.avail_gpa = (uint64_t)le16(data + 6) * 2;
	vq.used_gpa = (uint64_t)le16(data + 8) * 2;
	if (virtq_activate(&vq, &mem, &err) == 0) {
		vq.last_avail_idx = vq.used_idx = le16(data + 2);
		/* Each pop consumes an avail entry, so this terminates; the cap
		 * only bounds the work per input. */
		for (unsigned i = 0; i < 4u * vq.num + 4; i++) {
			uint32_t sum = 0;
			int ret = virtq_pop(&vq, c, &err);

			if (ret <= 0)
				break;
			/* Touch every byte the chain claims, as a device would. */
			for (unsigned s = 0; s < c->nr_out + c->nr_in; s++) {
				uint8_t *p = c->iov[s].iov_base;
				size_t n = c->iov[s].iov_len;

				if (virtq_chain_seg_writable(c, s)) {
					memset(p, 0x5a, n);
				} else {
					sum += p[0] + p[n - 1];
				}
			}
			virtq_push(&vq, c->head, c->in_len + (sum & 1));
			(void)virtq_need_notify(&vq);
			if (i % 3 == 0)
				(void)virtq_has_avail(&vq);
		}
	}
	free(c);
	free(ram);
	return 0;
}
