/* mmio.c: virtio-mmio v2 transport: registers, negotiation, interrupts, device lifecycle. */
#include "virtio/mmio.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "log.h"
#include "vm.h"

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */

static const uint64_t transport_features =
	(1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
	(1ULL << VIRTIO_RING_F_EVENT_IDX);

static void efd_signal(int fd)
{
	if (fd >= 0 && eventfd_write(fd, 1) < 0) {
		/* Only EAGAIN on counter overflow is possible: the reader
		 * still wakes up, which is all a signal needs. */
	}
}

bool virtio_dev_running(const struct virtio_dev *vd, unsigned q)
{
	const uint32_t need = VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_FEATURES_OK;

	return (vd->status & need) == need && !vd->broken && q < vd->nr_queues &&
	       vd->vqs[q].ready;
}

void virtio_dev_notify_queue(struct virtio_dev *vd)
{
	vd->isr |= VIRTIO_MMIO_INT_VRING;
	efd_signal(vd->irq_fd);
}

void virtio_dev_notify_config(struct virtio_dev *vd)
{
	vd->isr |= VIRTIO_MMIO_INT_CONFIG;
	efd_signal(vd->irq_fd);
}

void virtio_dev_maybe_notify(struct virtio_dev *vd, unsigned q)
{
	if (q < vd->nr_queues && virtq_need_notify(&vd->vqs[q]))
		virtio_dev_notify_queue(vd);
}

void virtio_dev_fail(struct virtio_dev *vd, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (vd->broken)
		return;
	vd->broken = true;
	vd->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	vd->isr |= VIRTIO_MMIO_INT_CONFIG;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_err("%s: %s; device stopped until the driver resets it", vd->name, msg);
	efd_signal(vd->irq_fd);
}

static void virtio_dev_process_locked(struct virtio_dev *vd, unsigned q)
{
	if (virtio_dev_running(vd, q))
		vd->ops->queue_notify(vd, q);
}

void virtio_dev_pop_done(struct virtio_dev *vd, unsigned q, int ret,
			 const struct virtq_error *err, bool pushed)
{
	if (ret < 0)
		virtio_dev_fail(vd, "queue %u: %s (0x%llx)", q, err->what,
				(unsigned long long)err->value);
	if (pushed)
		virtio_dev_maybe_notify(vd, q);
}

void virtio_dev_process(struct virtio_dev *vd, unsigned q)
{
	pthread_mutex_lock(&vd->lock);
	virtio_dev_process_locked(vd, q);
	pthread_mutex_unlock(&vd->lock);
}

/* I/O thread: a queue was kicked (ioeventfd or the MMIO handler). */
static void virtio_kick_cb(void *opaque, uint32_t events)
{
	struct virtio_kick *k = opaque;
	eventfd_t v;

	if (eventfd_read(k->vd->kick_fd[k->q], &v) < 0)
		return; /* spurious wake-up: already drained */
	virtio_dev_process(k->vd, k->q);
}

void virtio_dev_requeue(struct virtio_dev *vd, unsigned q)
{
	if (q < vd->nr_queues)
		efd_signal(vd->kick_fd[q]);
}

static void kick_all_queues(struct virtio_dev *vd)
{
	for (unsigned q = 0; q < vd->nr_queues; q++)
		efd_signal(vd->kick_fd[q]);
}

/* Transport reset (lock held): the driver wrote 0 to Status, or the VM reset. */
void virtio_dev_reset_locked(struct virtio_dev *vd)
{
	if (vd->ops->reset)
		vd->ops->reset(vd);
	vd->driver_features = 0;
	vd->device_features_sel = vd->driver_features_sel = 0;
	vd->status = 0;
	vd->isr = 0;
	vd->queue_sel = 0;
	vd->broken = false;
	for (unsigned q = 0; q < vd->nr_queues; q++)
		virtq_reset(&vd->vqs[q]);
}

void virtio_dev_reset(struct device *dev)
{
	struct virtio_dev *vd = virtio_dev_of(dev);

	pthread_mutex_lock(&vd->lock);
	virtio_dev_reset_locked(vd);
	pthread_mutex_unlock(&vd->lock);
}

/* FEATURES_OK is accepted only for a subset of what we offered that
 * includes VERSION_1 (we are a modern-only device). */
static bool features_acceptable(const struct virtio_dev *vd)
{
	if (vd->driver_features & ~vd->host_features)
		return false;
	return (vd->driver_features >> VIRTIO_F_VERSION_1) & 1;
}

static void apply_ring_features(struct virtio_dev *vd)
{
	for (unsigned q = 0; q < vd->nr_queues; q++) {
		vd->vqs[q].event_idx = virtio_dev_has(vd, VIRTIO_RING_F_EVENT_IDX);
		vd->vqs[q].indirect = virtio_dev_has(vd, VIRTIO_RING_F_INDIRECT_DESC);
	}
}

static void write_status(struct virtio_dev *vd, uint32_t val)
{
	uint32_t old = vd->status;

	if (val == 0) {
		virtio_dev_reset_locked(vd);
		return;
	}
	val &= 0xff & ~VIRTIO_CONFIG_S_NEEDS_RESET; /* that bit is the device's */
	if ((val & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		if (!features_acceptable(vd)) {
			log_warn("%s: driver features 0x%llx refused (offered 0x%llx, VERSION_1 "
				 "required)",
				 vd->name, (unsigned long long)vd->driver_features,
				 (unsigned long long)vd->host_features);
			val &= ~VIRTIO_CONFIG_S_FEATURES_OK;
		} else {
			apply_ring_features(vd);
		}
	}
	if (!(old & VIRTIO_CONFIG_S_FEATURES_OK) && !(val & VIRTIO_CONFIG_S_FEATURES_OK))
		val &= ~VIRTIO_CONFIG_S_DRIVER_OK; /* no DRIVER_OK without features */
	vd->status = val | (vd->broken ? VIRTIO_CONFIG_S_NEEDS_RESET : 0);
	/* Buffers the driver queued (and maybe kicked) before DRIVER_OK. */
	if ((val & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK))
		kick_all_queues(vd);
}

static void write_queue_ready(struct virtio_dev *vd, struct virtq *vq, uint32_t val)
{
	struct virtq_error err;

	if (!val) {
		vq->ready = false;
		return;
	}
	if (vq->ready)
		return;
	if (virtq_activate(vq, &vd->vm->mem, &err))
		virtio_dev_fail(vd, "queue %u: %s (0x%llx)", vd->queue_sel, err.what,
				(unsigned long long)err.value);
}

static void set_half(uint64_t *reg, bool high, uint32_t val)
{
	if (high)
		*reg = (*reg & 0xffffffffULL) | ((uint64_t)val << 32);
	else
		*reg = (*reg & ~0xffffffffULL) | val;
}

static uint32_t read_reg(struct virtio_dev *vd, uint64_t off)
{
	struct virtq *vq = vd->queue_sel < vd->nr_queues ? &vd->vqs[vd->queue_sel] : NULL;

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return vd->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (vd->device_features_sel > 1)
			return 0;
		return (uint32_t)(vd->host_features >> (32 * vd->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return vq ? vq->num_max : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq ? vq->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return vd->isr;
	case VIRTIO_MMIO_STATUS:
		return vd->status;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
		return 0xffffffff; /* no shared memory regions */
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return vd->config_generation;
	default:
		return 0;
	}
}

static void write_reg(struct virtio_dev *vd, uint64_t off, uint32_t val)
{
	struct virtq *vq = vd->queue_sel < vd->nr_queues ? &vd->vqs[vd->queue_sel] : NULL;
	/* Ring programming is frozen while the queue is live. */
	struct virtq *wq = vq && !vq->ready ? vq : NULL;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		vd->device_features_sel = val;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (vd->driver_features_sel <= 1 && !(vd->status & VIRTIO_CONFIG_S_FEATURES_OK))
			set_half(&vd->driver_features, vd->driver_features_sel == 1, val);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		vd->driver_features_sel = val;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		vd->queue_sel = val;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		/* Out-of-range sizes become 0, rejected when the queue goes ready. */
		if (wq)
			wq->num = val > 0xffff ? 0 : (uint16_t)val;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (vq)
			write_queue_ready(vd, vq, val);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* Without KVM's ioeventfd the write lands here: hand it to the
		 * I/O thread exactly as the ioeventfd would. */
		if (val < vd->nr_queues)
			efd_signal(vd->kick_fd[val]);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		vd->isr &= ~val;
		break;
	case VIRTIO_MMIO_STATUS:
		write_status(vd, val);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (wq)
			set_half(&wq->desc_gpa, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, val);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (wq)
			set_half(&wq->avail_gpa, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, val);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (wq)
			set_half(&wq->used_gpa, off == VIRTIO_MMIO_QUEUE_USED_HIGH, val);
		break;
	default:
		break; /* read-only or unknown: ignored */
	}
}

void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			bool is_write)
{
	struct virtio_dev *vd = opaque;

	pthread_mutex_lock(&vd->lock);
	if (offset >= VIRTIO_MMIO_CONFIG) {
		/* Device configuration: any width; bytes past the end read 0,
		 * writes go to the device's hook if it has one. */
		uint64_t off = offset - VIRTIO_MMIO_CONFIG;

		if (is_write && vd->ops->config_write && off < VIRTIO_CONFIG_MAX)
			vd->ops->config_write(vd, (uint32_t)off, data, len);
		else if (!is_write)
			for (uint32_t i = 0; i < len; i++)
				data[i] = off + i < vd->config_len ? vd->config[off + i] : 0;
	} else if (len != 4 || offset % 4) {
		/* Registers are 32-bit only; other accesses are ignored. */
		if (!is_write)
			memset(data, 0, len);
	} else if (is_write) {
		uint32_t v;

		memcpy(&v, data, 4);
		write_reg(vd, offset, le32toh(v));
	} else {
		uint32_t v = htole32(read_reg(vd, offset));

		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&vd->lock);
}

int virtio_dev_init(struct virtio_dev *vd, const struct device_ops *dev_ops,
		    const struct virtio_dev_ops *ops, const char *name, uint32_t device_id,
		    uint64_t features, unsigned nr_queues, uint16_t queue_size)
{
	vd->dev.ops = dev_ops;
	vd->ops = ops;
	snprintf(vd->name_buf, sizeof(vd->name_buf), "%s", name);
	vd->name = vd->name_buf;
	vd->irq_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vd->kick_fd[q] = -1;
	if (nr_queues == 0 || nr_queues > VIRTIO_MAX_QUEUES || queue_size > VIRTQ_NUM_MAX)
		return -EINVAL;
	pthread_mutex_init(&vd->lock, NULL);
	vd->initialised = true;
	vd->device_id = device_id;
	vd->host_features = features | transport_features;
	vd->nr_queues = nr_queues;
	for (unsigned q = 0; q < nr_queues; q++) {
		vd->vqs[q].num_max = queue_size;
		virtq_reset(&vd->vqs[q]);
		vd->kick_ctx[q] = (struct virtio_kick){ vd, q };
		vd->kick_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (vd->kick_fd[q] < 0)
			return -errno;
	}
	vd->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (vd->irq_fd < 0)
		return -errno;
	return 0;
}

int virtio_dev_realize(struct device *dev, struct vm *vm)
{
	struct virtio_dev *vd = virtio_dev_of(dev);
	const char *step;
	int ret;

	vd->vm = vm;
	step = "no MMIO window left";
	ret = vm_alloc_mmio(vm, VIRTIO_MMIO_SIZE, &vd->base);
	if (ret)
		goto fail;
	step = "no interrupt line left";
	ret = vm_alloc_gsi(vm, &vd->gsi);
	if (ret)
		goto fail;
	step = "cannot register the MMIO window";
	ret = bus_register(&vm->mmio, vd->base, VIRTIO_MMIO_SIZE, virtio_mmio_access, vd,
			   vd->name);
	if (ret)
		goto fail;
	vd->bus_registered = true;
	for (unsigned q = 0; q < vd->nr_queues; q++) {
		step = "cannot register the queue notify ioeventfd";
		ret = vm_ioeventfd(vm, vd->kick_fd[q], vd->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4,
				   false, true, q, true);
		if (ret)
			goto fail;
		vd->ioeventfd[q] = true;
		step = "cannot watch the queue notify eventfd";
		ret = evloop_add(vm->loop, vd->kick_fd[q], EPOLLIN, virtio_kick_cb,
				 &vd->kick_ctx[q]);
		if (ret)
			goto fail;
		vd->kick_watched[q] = true;
	}
	step = "cannot register the interrupt irqfd";
	ret = vm_irqfd(vm, vd->irq_fd, vd->gsi, true);
	if (ret)
		goto fail;
	vd->irqfd = true;
	if (vd->ops->realize) {
		step = "device back end setup failed";
		ret = vd->ops->realize(vd);
		if (ret)
			goto fail;
	}
	step = "cannot extend the kernel command line";
	ret = vm_cmdline_append(vm, "virtio_mmio.device=4K@0x%llx:%u",
				(unsigned long long)vd->base, vd->gsi);
	if (ret)
		goto fail;
	log_debug("%s: mmio 0x%llx gsi %u", vd->name, (unsigned long long)vd->base, vd->gsi);
	return 0;
fail:
	log_err("%s: %s: %s", vd->name, step, strerror(-ret));
	return ret;
}

void virtio_dev_destroy(struct device *dev)
{
	struct virtio_dev *vd = virtio_dev_of(dev);
	struct vm *vm = vd->vm;

	/* Stop new work from arriving before the device tears down. */
	for (unsigned q = 0; q < vd->nr_queues; q++) {
		if (vd->kick_watched[q])
			evloop_del(vm->loop, vd->kick_fd[q]);
		if (vd->ioeventfd[q] &&
		    vm_ioeventfd(vm, vd->kick_fd[q], vd->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, false,
				 true, q, false))
			log_warn("%s: cannot remove ioeventfd of queue %u", vd->name, q);
	}
	if (vd->bus_registered && bus_unregister(&vm->mmio, vd->base))
		log_warn("%s: MMIO window was not registered", vd->name);
	if (vd->irqfd && vm_irqfd(vm, vd->irq_fd, vd->gsi, false))
		log_warn("%s: cannot remove irqfd", vd->name);
	if (vd->ops && vd->ops->destroy)
		vd->ops->destroy(vd);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		if (vd->kick_fd[q] >= 0)
			close(vd->kick_fd[q]);
	if (vd->irq_fd >= 0)
		close(vd->irq_fd);
	if (vd->initialised)
		pthread_mutex_destroy(&vd->lock);
	free(vd);
}
