/* virtio.c: virtio-mmio transport, command-line device discovery and split
 * virtqueues (virtio 1.x, 2.7). All runs in ring 3; each register access
 * is a VM exit, the rings are plain shared memory. */
#include "virtio.h"

static uint32_t reg_read(struct virtio_dev *d, uint32_t off) { return mmio_read32(d->base + off); }
static void reg_write(struct virtio_dev *d, uint32_t off, uint32_t v) { mmio_write32(d->base + off, v); }

/* Parses "<size>@<base>:<irq>[:<id>]". */
static bool parse_mmio_spec(const char *s, struct virtio_dev *d)
{
	char buf[64];
	size_t n = strlen(s);
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, s, n + 1);
	char *at = strchr(buf, '@');
	if (!at)
		return false;
	*at = '\0';
	char *colon = strchr(at + 1, ':');
	if (!colon)
		return false;
	*colon = '\0';
	char *colon2 = strchr(colon + 1, ':');
	if (colon2)
		*colon2 = '\0';
	uint64_t irq;
	if (!parse_u64(buf, &d->size) || !parse_u64(at + 1, &d->base) || !parse_u64(colon + 1, &irq))
		return false;
	d->irq = (uint32_t)irq;
	return d->size >= 0x100 && d->base && d->base < 0x100000000ull;
}

int virtio_devices(struct virtio_dev *devs, int max)
{
	static const char key[] = "virtio_mmio.device=";
	const char *line = cmdline();
	int n = 0;
	while (*line && n < max) {
		while (*line == ' ')
			line++;
		const char *end = line;
		while (*end && *end != ' ')
			end++;
		char word[96];
		size_t len = (size_t)(end - line);
		if (len > sizeof(key) - 1 && len < sizeof(word) && !strncmp(line, key, sizeof(key) - 1)) {
			memcpy(word, line, len);
			word[len] = '\0';
			struct virtio_dev *d = &devs[n];
			memset(d, 0, sizeof(*d));
			if (!parse_mmio_spec(word + sizeof(key) - 1, d)) {
				printf("virtio: cannot parse '%s'\n", word);
			} else if (reg_read(d, VIRTIO_MMIO_MAGIC) != 0x74726976) {
				printf("virtio: no virtio-mmio magic at 0x%lx\n", d->base);
			} else {
				d->version = reg_read(d, VIRTIO_MMIO_VERSION);
				d->device_id = reg_read(d, VIRTIO_MMIO_DEVICE_ID);
				if (d->device_id)	/* 0: placeholder slot */
					n++;
			}
		}
		line = end;
	}
	return n;
}

bool virtio_find(uint32_t device_id, int index, struct virtio_dev *out)
{
	struct virtio_dev devs[VIRTIO_MAX_DEVS];
	int n = virtio_devices(devs, VIRTIO_MAX_DEVS);
	for (int i = 0; i < n; i++) {
		if (devs[i].device_id != device_id)
			continue;
		if (index-- == 0) {
			*out = devs[i];
			return true;
		}
	}
	return false;
}

void virtio_reset(struct virtio_dev *d)
{
	reg_write(d, VIRTIO_MMIO_STATUS, 0);
	for (int i = 0; i < 1000 && reg_read(d, VIRTIO_MMIO_STATUS); i++)
		cpu_relax();
}

uint32_t virtio_status(struct virtio_dev *d)
{
	return reg_read(d, VIRTIO_MMIO_STATUS);
}

void virtio_begin(struct virtio_dev *d, uint64_t wanted)
{
	if (d->version != 2)
		fail("virtio-mmio at 0x%lx: version %u, only version 2 (virtio 1.x) is supported",
		     d->base, d->version);
	virtio_reset(d);
	reg_write(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	reg_write(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	reg_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint64_t offered = reg_read(d, VIRTIO_MMIO_DEVICE_FEATURES);
	reg_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	offered |= (uint64_t)reg_read(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	if (!(offered & VIRTIO_F_VERSION_1))
		fail("virtio device %u at 0x%lx does not offer VERSION_1 (features 0x%lx)",
		     d->device_id, d->base, offered);
	d->features = offered & (wanted | VIRTIO_F_VERSION_1);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->features);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
	reg_write(d, VIRTIO_MMIO_STATUS,
		  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	if (!(reg_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK))
		fail("virtio device %u at 0x%lx rejected features 0x%lx", d->device_id, d->base,
		     d->features);
}

void virtio_driver_ok(struct virtio_dev *d)
{
	reg_write(d, VIRTIO_MMIO_STATUS,
		  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			  VIRTIO_STATUS_DRIVER_OK);
}

uint32_t virtio_ack_interrupt(struct virtio_dev *d)
{
	uint32_t isr = reg_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
	if (isr)
		reg_write(d, VIRTIO_MMIO_INTERRUPT_ACK, isr);
	return isr;
}

uint8_t virtio_cfg8(struct virtio_dev *d, uint32_t off) { return mmio_read8(d->base + VIRTIO_MMIO_CONFIG + off); }
uint16_t virtio_cfg16(struct virtio_dev *d, uint32_t off) { return *(volatile uint16_t *)(d->base + VIRTIO_MMIO_CONFIG + off); }
uint32_t virtio_cfg32(struct virtio_dev *d, uint32_t off) { return mmio_read32(d->base + VIRTIO_MMIO_CONFIG + off); }

uint64_t virtio_cfg64(struct virtio_dev *d, uint32_t off)
{
	uint32_t gen, lo, hi;
	do {
		gen = reg_read(d, VIRTIO_MMIO_CONFIG_GENERATION);
		lo = virtio_cfg32(d, off);
		hi = virtio_cfg32(d, off + 4);
	} while (gen != reg_read(d, VIRTIO_MMIO_CONFIG_GENERATION));
	return (uint64_t)hi << 32 | lo;
}

void virtq_init(struct virtq *q, struct virtio_dev *d, uint16_t index, uint16_t max_size)
{
	reg_write(d, VIRTIO_MMIO_QUEUE_SEL, index);
	if (reg_read(d, VIRTIO_MMIO_QUEUE_READY))
		fail("virtio device %u queue %u already ready after reset", d->device_id, index);
	uint32_t max = reg_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (!max)
		fail("virtio device %u has no queue %u", d->device_id, index);
	uint16_t size = 1;
	while (size * 2 <= max && size * 2 <= max_size)
		size *= 2;
	memset(q, 0, sizeof(*q));
	q->dev = d;
	q->index = index;
	q->size = size;
	q->desc = mem_alloc(16ull * size, 4096);
	q->avail = mem_alloc(6 + 2ull * size, 4096);
	q->used = mem_alloc(6 + 8ull * size, 4096);
	q->cookies = mem_alloc(sizeof(void *) * size, 8);
	q->chain_len = mem_alloc(sizeof(uint16_t) * size, 8);
	for (uint16_t i = 0; i < size; i++)
		q->desc[i].next = (uint16_t)(i + 1);
	q->num_free = size;

	reg_write(d, VIRTIO_MMIO_QUEUE_NUM, size);
	uint64_t a = (uintptr_t)q->desc, b = (uintptr_t)q->avail, c = (uintptr_t)q->used;
	reg_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)a);
	reg_write(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(a >> 32));
	reg_write(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)b);
	reg_write(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(b >> 32));
	reg_write(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)c);
	reg_write(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(c >> 32));
	reg_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
}

bool virtq_add(struct virtq *q, const struct vq_buf *bufs, int n, void *cookie)
{
	if (n <= 0 || n > q->num_free)
		return false;
	uint16_t head = q->free_head, i = head, last = head;
	for (int k = 0; k < n; k++) {
		volatile struct vring_desc *d = &q->desc[i];
		d->addr = (uint64_t)(uintptr_t)bufs[k].addr;
		d->len = bufs[k].len;
		d->flags = (uint16_t)((bufs[k].device_writes ? VRING_DESC_F_WRITE : 0) |
				      (k + 1 < n ? VRING_DESC_F_NEXT : 0));
		last = i;
		i = d->next;
	}
	q->free_head = q->desc[last].next;
	q->num_free = (uint16_t)(q->num_free - n);
	q->cookies[head] = cookie;
	q->chain_len[head] = (uint16_t)n;
	q->avail->ring[q->avail_idx % q->size] = head;
	barrier();	/* x86 keeps stores in order; the compiler must too */
	q->avail_idx++;
	q->avail->idx = q->avail_idx;
	return true;
}

void virtq_kick(struct virtq *q)
{
	__asm__ volatile("mfence" ::: "memory");
	reg_write(q->dev, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

bool virtq_get(struct virtq *q, uint32_t *len, void **cookie)
{
	if (q->used->idx == q->last_used)
		return false;
	barrier();
	volatile struct vring_used_elem *e = &q->used->ring[q->last_used % q->size];
	uint32_t head = e->id;
	if (head >= q->size)
		fail("virtio device %u queue %u: used id %u out of range", q->dev->device_id,
		     q->index, head);
	if (len)
		*len = e->len;
	if (cookie)
		*cookie = q->cookies[head];
	q->last_used++;
	/* Return the chain to the free list. */
	uint16_t n = q->chain_len[head], last = (uint16_t)head;
	for (uint16_t k = 1; k < n; k++)
		last = q->desc[last].next;
	q->desc[last].next = q->free_head;
	q->free_head = (uint16_t)head;
	q->num_free = (uint16_t)(q->num_free + n);
	return true;
}

void *virtq_wait(struct virtq *q, uint32_t *len, uint32_t timeout_ms)
{
	void *cookie;
	uint64_t deadline = tsc_deadline_ms(timeout_ms);
	while (!virtq_get(q, len, &cookie)) {
		if (tsc_expired(deadline))
			fail("virtio device %u queue %u: no completion within %u ms", q->dev->device_id,
			     q->index, timeout_ms);
		cpu_relax();
	}
	return cookie;
}
