/* vdrv.h: a miniature virtio-mmio driver for unit tests: it programs a
 * device through the VM's MMIO bus, lays rings and buffers out in guest
 * memory by hand, and waits for completions on the device's irq eventfd
 * while the VM's I/O loop runs in a thread. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include <jansson.h>
#include <linux/virtio_ring.h>

#include "virtio/mmio.h"
#include "vm.h"

#define VDRV_MEM   (32ULL << 20)
#define VDRV_HEAP  0x100000ULL /* buffers are carved from here up */

struct vdrv_queue {
	uint16_t num;
	uint64_t desc, avail, used;
	uint16_t avail_idx;  /* next avail slot the driver fills */
	uint16_t next_desc;  /* descriptors are handed out round-robin */
};

struct vdrv {
	struct vm vm;
	struct virtio_dev *vd;
	pthread_t loop_thread;
	bool loop_running;
	uint64_t heap;
	struct vdrv_queue q[VIRTIO_MAX_QUEUES];
};

struct vdrv_seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Create a KVM-less VM (the caller then adds one device) and return it. */
struct vdrv *vdrv_new(void);
/* Bind to the last device added to the VM. */
void vdrv_bind(struct vdrv *d);
void vdrv_start_loop(struct vdrv *d);
/* Stop the loop and destroy the VM and its devices. */
void vdrv_free(struct vdrv *d);

uint32_t vdrv_read(struct vdrv *d, uint64_t off);
void vdrv_write(struct vdrv *d, uint64_t off, uint32_t val);
uint8_t vdrv_config8(struct vdrv *d, unsigned off);

/* Full initialisation (reset, ACK, DRIVER, features, FEATURES_OK, queues,
 * DRIVER_OK). Accepts `features`; returns the final status register. */
uint32_t vdrv_init(struct vdrv *d, uint64_t features);
/* Negotiate features only; returns the status after writing FEATURES_OK. */
uint32_t vdrv_negotiate(struct vdrv *d, uint64_t features);
/* Program and enable queue q with `num` entries. */
void vdrv_setup_queue(struct vdrv *d, unsigned q, uint16_t num);

/* Allocate guest memory (16-byte aligned) and return its address. */
uint64_t vdrv_alloc(struct vdrv *d, uint64_t len);
void *vdrv_ptr(struct vdrv *d, uint64_t gpa, uint64_t len);

/* Write a chain of descriptors (direct, or through one indirect table) and
 * publish it in the avail ring. Returns the head index. */
uint16_t vdrv_add(struct vdrv *d, unsigned q, const struct vdrv_seg *segs, unsigned n,
		  bool indirect);
/* Raw access for malformed-ring tests. */
struct vring_desc *vdrv_desc(struct vdrv *d, unsigned q);
struct vring_avail *vdrv_avail(struct vdrv *d, unsigned q);
struct vring_used *vdrv_used(struct vdrv *d, unsigned q);
/* Publish head `head` without writing descriptors. */
void vdrv_publish(struct vdrv *d, unsigned q, uint16_t head);

void vdrv_kick(struct vdrv *d, unsigned q);
/* Wait (I/O loop running) until the used index of q reaches `idx`; poll
 * the irq eventfd with a generous timeout as a failure guard only.
 * Returns false on timeout. */
bool vdrv_wait_used(struct vdrv *d, unsigned q, uint16_t idx);
/* Wait until the device reports NEEDS_RESET (or timeout). */
bool vdrv_wait_needs_reset(struct vdrv *d);
uint16_t vdrv_used_idx(struct vdrv *d, unsigned q);
struct vring_used_elem vdrv_used_elem(struct vdrv *d, unsigned q, uint16_t i);

/* The configuration of device type `type` as --device TYPE,SPEC gives it
 * (calloc'd; the caller frees it). */
void *vdrv_config(const char *type, const char *spec);
/* Shared-memory pages resident in this process (the memfd RAM), KiB. */
long vdrv_rss_shmem_kib(void);
/* Runs the command of device type `type` that json's "cmd" names; its
 * reply (never NULL). */
json_t *vdrv_command(struct vdrv *d, const char *type, const char *json);
/* Creates instance 0 of device type `type` from cfg on d's VM, binds the
 * driver to it and starts the I/O loop. */
void vdrv_create(struct vdrv *d, const char *type, const void *cfg);

/* The fixture of a device-type test: the driver and its device's
 * configuration (from vdrv_config). */
struct vdrv_fixture {
	struct vdrv *d;
	void *cfg;
};
/* cmocka teardown of a calloc'd struct vdrv_fixture. */
int vdrv_fixture_teardown(void **state);
