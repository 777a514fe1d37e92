/* vm.c: VM lifecycle: KVM VM, memory slots, irqchip/PIT, devices, kernel, vCPUs. */
#include "fdspec.h"
#include "vm.h"
#include "mem_prefetch.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/seccomp.h>

#include "arch/x86/acpi.h"
#include "arch/x86/x86.h"
#include "devtype.h"
#include "mem_backing.h"
#include "log.h"
#include "vcpu.h"
#include "vm_prep.h"

/* mem_fd >= 0: RAM is that file's bytes from mem_off, copy-on-write (restore). */
/* Bytes of hot-pluggable region the configured devices reserve (virtio-mem). */
static uint64_t vm_hotplug_size(const struct vm_config *cfg);

uint64_t vm_config_mem_size(const struct vm_config *cfg)
{
	return (ALIGN_UP(cfg->mem_mib, 2) << 20) + vm_hotplug_size(cfg);
}

static uint64_t vm_hotplug_size(const struct vm_config *cfg)
{
	uint64_t size = 0;

	for (unsigned i = 0; cfg && i < cfg->nr_devices; i++)
		if (cfg->devices[i].type->mem_region)
			size += cfg->devices[i].type->mem_region(cfg, cfg->devices[i].cfg);
	return size;
}

/* --userfaultfd for a restore (mem_uffd.h): the descriptor, or -1 (none
 * given, or one that cannot be used: logged; the restore goes on). */
static int uffd_dev_open(const struct vm_config *cfg)
{
	char why[256];
	int fd;

	if (!cfg || !cfg->userfaultfd)
		return -1;
	fd = fdspec_open(cfg->userfaultfd, O_RDWR, 0, 0, why, sizeof(why));
	if (fd < 0)
		log_warn("--userfaultfd: %s", why);
	return fd < 0 ? -1 : fd;
}

/* at: a prepared RAM range (vm_prep.h) or NULL; vm->mem.host == at once
 * the memory owns it. */
static int vm_common_init(struct vm *vm, const struct vm_config *cfg, uint64_t mem_size,
			  int mem_fd, uint64_t mem_off, struct phase_trace *trace, void *at)
{
	uint64_t hp_size;
	int ret, uffd_dev;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->trace = trace;
	vm->kvm_fd = -1;
	vm->vm_fd = -1;
	vm->teardown_ring = -1;
	vm->unused_vm_fd = -1;
	vm->signal_fd = -1;
	vm->mem.memfd = vm->mem.file_fd = vm->mem.pagemap_fd = -1;
	vm->next_mmio = VIRTIO_MMIO_BASE;
	vm->next_gsi = VIRTIO_GSI_FIRST;
	atomic_init(&vm->exit_code, WORKER_EXIT_NONE);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	ret = bus_init(&vm->pio, "pio");
	if (ret)
		return ret;
	ret = bus_init(&vm->mmio, "mmio");
	if (ret)
		return ret;
	ret = evloop_create(&vm->loop);
	if (ret)
		return ret;
	hp_size = vm_hotplug_size(cfg);
	uffd_dev = mem_fd >= 0 ? uffd_dev_open(cfg) : -1;
	ret = guest_mem_init_backing(&vm->mem, cfg ? &cfg->memory : NULL, mem_size + hp_size,
				     mem_fd, mem_off, uffd_dev, at);
	if (uffd_dev >= 0)
		close(uffd_dev);
	if (ret) {
		log_err("cannot allocate %llu MiB of guest memory: %s",
			(unsigned long long)((mem_size + hp_size) >> 20), strerror(-ret));
		return ret;
	}
	if (hp_size) {
		ret = guest_mem_set_hotplug(&vm->mem, hp_size);
		/* prealloc populated the region too: nothing is plugged yet
		 * (a restore keeps what the state file holds). */
		if (!ret && mem_fd < 0 && cfg->memory.prealloc &&
		    guest_mem_discard(&vm->mem, vm->mem.size - hp_size, hp_size))
			log_warn("cannot drop the preallocated hot-pluggable region");
	}
	return ret;
}

int vm_create_test(struct vm *vm, uint64_t mem_size)
{
	int ret = vm_common_init(vm, NULL, mem_size, -1, 0, NULL, NULL);

	if (ret)
		vm_destroy(vm);
	return ret;
}

static int kvm_require_cap(struct vm *vm, long cap, const char *name)
{
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, cap) <= 0) {
		log_err("KVM lacks %s, which cella needs", name);
		return -ENOTSUP;
	}
	return 0;
}

/* /dev/kvm: by name, or the descriptor cellad opened (the worker, in a user
 * namespace of its own, has no right to the device node). Either way it
 * must answer KVM_GET_API_VERSION, so that a wrong descriptor (/dev/null, a
 * file) is named as such. Returns the fd or -errno (logged). */
static int kvm_open(const struct vm_config *cfg)
{
	const char *spec = cfg->kvm ? cfg->kvm : "/dev/kvm";
	char why[256];
	int fd, ver;

	fd = fdspec_open(spec, O_RDWR, 0, 0, why, sizeof(why));
	if (fd < 0) {
		log_err("cannot open KVM: %s", why);
		return fd;
	}
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		int err = ver < 0 ? errno : 0;

		if (ver < 0)
			log_err("%s is not /dev/kvm: KVM_GET_API_VERSION: %s", spec, strerror(err));
		else
			log_err("%s: unsupported KVM API version %d", spec, ver);
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

static int vm_create_common(struct vm *vm, const struct vm_config *cfg, int mem_fd,
			    uint64_t mem_off, struct phase_trace *trace)
{
	struct vm_prep *prep = cfg->standby_prep;
	char err[256];
	int ret, unused = -1;

	/* A standby's VM, prepared for a RAM size (vm_prep.h): taken whole,
	 * or thrown away for a new one as a cold restore makes. */
	if (prep && !vm_prep_fits(prep, cfg, mem_fd >= 0, err, sizeof(err))) {
		if (prep->host)
			log_info("standby: the prepared VM is not used (%s): a new one is made", err);
		unused = prep->vm_fd; /* closed with the VM: no wait for its teardown now */
		prep->vm_fd = -1;
		vm_prep_release(prep);
		prep = NULL;
	}
	ret = vm_common_init(vm, cfg, ALIGN_UP(cfg->mem_mib, 2) << 20, mem_fd, mem_off, trace,
			     prep ? prep->host : NULL);
	vm->unused_vm_fd = unused;
	if (prep && vm->mem.host == prep->host)
		prep->host = NULL; /* the memory's now */
	if (ret)
		goto fail;
	phase_mark(vm->trace, "mem");
	vm->kvm_fd = kvm_open(cfg);
	if (vm->kvm_fd < 0) {
		ret = vm->kvm_fd;
		goto fail;
	}
	if ((ret = kvm_require_cap(vm, KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP")) ||
	    (ret = kvm_require_cap(vm, KVM_CAP_IRQFD, "KVM_CAP_IRQFD")) ||
	    (ret = kvm_require_cap(vm, KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD")) ||
	    (ret = kvm_require_cap(vm, KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT")) ||
	    (ret = kvm_require_cap(vm, KVM_CAP_PIT2, "KVM_CAP_PIT2")))
		goto fail;
	/* On a thread of its own, beside KVM_CREATE_VM and the memory slots. */
	if (cfg->standby_cpuid) /* asked before the configuration came */
		vm_cpuid_preset(vm, cfg->standby_cpuid);
	else
		vm_cpuid_start(vm);
	phase_mark(vm->trace, "kvm_open");
	if (prep) {
		/* Its slots, irqchip and PIT are there, on the RAM just taken. */
		vm->vm_fd = prep->vm_fd;
		prep->vm_fd = -1;
		phase_mark(vm->trace, "prepared_vm"); /* in place of the next three */
		return 0;
	}
	/* A standby worker made it before its request: the same ioctl, which
	 * nothing in the configuration changes. */
	vm->vm_fd = cfg->standby_vm_fd > 0 ? cfg->standby_vm_fd : ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		log_err("KVM_CREATE_VM: %s", strerror(errno));
		goto fail;
	}
	phase_mark(vm->trace, "kvm_create_vm");
	/* Memory slots go in before the irqchip: once an irqchip exists, every
	 * slot change waits for an SRCU grace period (measured: 4-12 ms here). */
	ret = vm_kvm_set_slots(vm->vm_fd, &vm->mem, vm->mem.host);
	if (ret) {
		log_err("KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
		goto fail;
	}
	phase_mark(vm->trace, "memslots");
	ret = vm_kvm_irqchip(vm->vm_fd, err, sizeof(err));
	if (ret) {
		log_err("%s", err);
		goto fail;
	}
	phase_mark(vm->trace, "irqchip_pit");
	return 0;
fail:
	vm_destroy(vm);
	return ret;
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	return vm_create_common(vm, cfg, -1, 0, NULL);
}

int vm_create_restore(struct vm *vm, const struct vm_config *cfg, int fd, uint64_t mem_off,
		      struct phase_trace *trace)
{
	if (fd < 0)
		return -EBADF;
	return vm_create_common(vm, cfg, fd, mem_off, trace);
}

int vm_add_device(struct vm *vm, struct device *dev)
{
	int ret = dev->ops->realize ? dev->ops->realize(dev, vm) : 0;

	if (ret) {
		log_err("%s (%s): cannot set up: %s", dev->id, dev->ops->type, strerror(-ret));
		if (dev->ops->destroy)
			dev->ops->destroy(dev);
		return ret;
	}
	dev->next = NULL;
	if (vm->devices_tail)
		vm->devices_tail->next = dev;
	else
		vm->devices = dev;
	vm->devices_tail = dev;
	return 0;
}

int vm_alloc_mmio(struct vm *vm, uint64_t len, uint64_t *base)
{
	int ret = 0;

	len = ALIGN_UP(len, VIRTIO_MMIO_SIZE);
	pthread_mutex_lock(&vm->lock);
	/* virtio-mmio windows live in [0xD0000000, 0xFE000000): below the IOAPIC. */
	if (vm->next_mmio + len > VIRTIO_MMIO_END) {
		ret = -ENOSPC;
	} else {
		*base = vm->next_mmio;
		vm->next_mmio += len;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_alloc_gsi(struct vm *vm, unsigned *gsi)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->next_gsi > VM_GSI_MAX)
		ret = -ENOSPC;
	else
		*gsi = vm->next_gsi++;
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_cmdline_append(struct vm *vm, const char *fmt, ...)
{
	char piece[256];
	size_t old = vm->cmdline_extra ? strlen(vm->cmdline_extra) : 0;
	char *n;
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(piece, sizeof(piece), fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= sizeof(piece))
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	n = realloc(vm->cmdline_extra, old + (size_t)len + 2);
	if (!n) {
		pthread_mutex_unlock(&vm->lock);
		return -ENOMEM;
	}
	n[old] = ' ';
	memcpy(n + old + 1, piece, (size_t)len + 1);
	vm->cmdline_extra = n;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };

	if (vm->vm_fd < 0)
		return 0;
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}

int vm_irqfd(struct vm *vm, int efd, unsigned gsi, bool assign)
{
	struct kvm_irqfd irqfd = {
		.fd = (uint32_t)efd,
		.gsi = gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	if (vm->vm_fd < 0)
		return 0;
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
		return -errno;
	return 0;
}

int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, uint32_t len, bool pio, bool match,
		 uint64_t data, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = data,
		.addr = addr,
		.len = len,
		.fd = efd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
			 (match ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	if (vm->vm_fd < 0)
		return 0;
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
		return -errno;
	return 0;
}

bool vm_exiting(const struct vm *vm)
{
	return atomic_load(&vm->exit_code) != WORKER_EXIT_NONE;
}

void vm_request_exit(struct vm *vm, int code, const char *fmt, ...)
{
	int expected = WORKER_EXIT_NONE;
	va_list ap;

	if (!atomic_compare_exchange_strong(&vm->exit_code, &expected, code))
		return;
	pthread_mutex_lock(&vm->lock);
	va_start(ap, fmt);
	vsnprintf(vm->exit_reason, sizeof(vm->exit_reason), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond); /* paused vCPUs must see the exit */
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	if (vm->loop)
		evloop_stop(vm->loop);
}

int vm_request_guest_shutdown(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next) {
		const struct device_type *t = devtype_of(d);

		int ret;

		if (!t || !t->request_shutdown)
			continue;
		/* -ENODEV: this way is not open (no ACPI guest): try the next. */
		ret = t->request_shutdown(d);
		if (ret != -ENODEV)
			return ret;
	}
	return -ENODEV;
}

void vm_pause(struct vm *vm)
{
	unsigned running = 0;

	pthread_mutex_lock(&vm->pause_lock);
	if (vm->pause_requested) {
		pthread_mutex_unlock(&vm->pause_lock);
		return;
	}
	vm->pause_requested = true;
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].thread_started) {
			vcpu_kick(&vm->vcpus[i]);
			running++;
		}
	}
	/* Wait until every running vCPU is parked (or the VM is ending). */
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->vcpus_parked < running && !vm_exiting(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_pause_from_vcpu(struct vm *vm, unsigned self, const char *reason)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_requested = true;
	snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", reason);
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (i != self && vm->vcpus[i].thread_started)
			vcpu_kick(&vm->vcpus[i]);
}

void vm_pause_for(struct vm *vm, const char *reason)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->pause_requested) {
		pthread_mutex_unlock(&vm->pause_lock);
		return;
	}
	vm->pause_requested = true;
	snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", reason);
	pthread_mutex_unlock(&vm->pause_lock);
	log_warn("VM paused: %s", reason);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].thread_started)
			vcpu_kick(&vm->vcpus[i]);
}

bool vm_resume_if(struct vm *vm, const char *prefix)
{
	bool match;

	pthread_mutex_lock(&vm->pause_lock);
	match = vm->pause_requested && vm->pause_reason[0] &&
		!strncmp(vm->pause_reason, prefix, strlen(prefix));
	if (match) { /* what vm_resume does, under the same lock as the check */
		vm->pause_requested = false;
		vm->pause_reason[0] = '\0';
		pthread_cond_broadcast(&vm->pause_cond);
	}
	pthread_mutex_unlock(&vm->pause_lock);
	if (match)
		log_info("VM resumed: %s recovered", prefix);
	return match;
}

void vm_pause_reason(struct vm *vm, char *buf, size_t len)
{
	pthread_mutex_lock(&vm->pause_lock);
	snprintf(buf, len, "%s", vm->pause_reason);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_requested = false;
	vm->pause_reason[0] = '\0';
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

bool vm_paused(struct vm *vm)
{
	bool p;

	pthread_mutex_lock(&vm->pause_lock);
	p = vm->pause_requested;
	pthread_mutex_unlock(&vm->pause_lock);
	return p;
}

/* A Linux kernel: a bzImage ("HdrS" at 0x202), or an ELF vmlinux with a
 * "Linux" ELF note. The freestanding test guests (PVH ELF) are not. */
static bool kernel_is_linux(const char *path)
{
	uint8_t hdr[0x206];
	Elf64_Ehdr eh;
	bool is_linux = false;
	char why[256];
	int fd = fdspec_open(path, O_RDONLY, 0, FDSPEC_REG, why, sizeof(why));

	if (fd < 0)
		return false;
	if (pread(fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr) &&
	    !memcmp(hdr + 0x202, "HdrS", 4)) {
		close(fd);
		return true;
	}
	if (pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) &&
	    !memcmp(eh.e_ident, ELFMAG, SELFMAG) && eh.e_ident[EI_CLASS] == ELFCLASS64 &&
	    eh.e_phentsize == sizeof(Elf64_Phdr)) {
		for (unsigned i = 0; i < eh.e_phnum && i < 64 && !is_linux; i++) {
			Elf64_Phdr ph;
			uint8_t notes[4096];
			ssize_t n;
			size_t off = 0;

			if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
				    (ssize_t)sizeof(ph) ||
			    ph.p_type != PT_NOTE)
				continue;
			n = pread(fd, notes, MIN(sizeof(notes), ph.p_filesz), (off_t)ph.p_offset);
			while (n > 0 && off + sizeof(Elf64_Nhdr) <= (size_t)n) {
				Elf64_Nhdr nh;

				memcpy(&nh, notes + off, sizeof(nh));
				off += sizeof(nh);
				if (nh.n_namesz == 6 && off + 6 <= (size_t)n &&
				    !memcmp(notes + off, "Linux", 6)) {
					is_linux = true;
					break;
				}
				off += ALIGN_UP((size_t)nh.n_namesz, 4) + ALIGN_UP((size_t)nh.n_descsz, 4);
			}
		}
	}
	close(fd);
	return is_linux;
}

int vm_setup(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;
	const char *user = cfg->cmdline ? cfg->cmdline : "";
	struct x86_boot_info bi;
	char err[512] = "", hide[128] = "";
	char *cmdline, *devs;
	size_t len;
	int ret;

	ret = devtypes_create(vm);
	if (ret) {
		/* The device logged why (missing tap, disk in use, ...): the host
		 * cannot provide what the configuration asks for. */
		vm_request_exit(vm, WORKER_EXIT_CONFIG, "a configured device cannot be set up");
		return ret;
	}
	/* vCPUs first: whether KVM honours the CPUID template decides the
	 * command line. */
	ret = vcpus_create(vm);
	if (ret)
		return ret;
	if (cfg->kernel && kernel_is_linux(cfg->kernel)) {
		ret = vcpus_feature_hiding_args(vm, hide, sizeof(hide));
		if (ret)
			log_warn("cannot read the vCPU's CPUID back: %s", strerror(-ret));
		if (hide[0] && (strstr(user, "clearcpuid=") || strstr(user, "noxsave"))) {
			log_info("CPUID template not applied; the command line's own clearcpuid=/noxsave "
				 "stand (would add \"%s\")", hide);
			hide[0] = 0;
		} else if (hide[0]) {
			log_info("CPUID template not applied: hiding features from the Linux guest "
				 "with \"%s\"", hide);
		}
	}
	/* With ACPI the DSDT lists the virtio devices; without, the command line. */
	devs = vm_cmdline_devices(vm, user, cfg->acpi && cfg->kernel && kernel_is_linux(cfg->kernel));
	if (!devs)
		return -ENOMEM;
	len = strlen(user) + strlen(devs) + strlen(hide) + 2;
	cmdline = malloc(len);
	if (!cmdline) {
		free(devs);
		return -ENOMEM;
	}
	snprintf(cmdline, len, "%s%s%s%s", user, devs, hide[0] ? " " : "", hide);
	free(devs);
	log_debug("kernel command line: %s", cmdline);
	ret = x86_load_kernel(&vm->mem, cfg->kernel, cfg->initrd, cmdline, &bi, err, sizeof(err));
	free(cmdline);
	if (ret) {
		log_err("%s", err[0] ? err : strerror(-ret));
		vm_request_exit(vm, WORKER_EXIT_CONFIG, "the kernel cannot be loaded");
		return ret;
	}
	log_debug("loaded %s kernel, entry 0x%llx", bi.format, (unsigned long long)bi.entry);
	ret = x86_setup_mptable(&vm->mem, cfg->cpus);
	if (ret) {
		log_err("cannot write the MP table: %s", strerror(-ret));
		return ret;
	}
	ret = cfg->acpi ? vm_setup_acpi(vm) : 0;
	/* The boot protocol's own pointer too (PVH requires it; the scan of
	 * 0xE0000-0xFFFFF is Linux's fallback, not every kernel's). */
	if (!ret && cfg->acpi)
		ret = x86_boot_set_rsdp(&vm->mem, &bi, ACPI_RSDP_ADDR);
	if (ret) {
		log_err("cannot write the ACPI tables: %s", strerror(-ret));
		return ret;
	}
	return vcpus_setup_regs(vm, &bi);
}

int vm_setup_restore(struct vm *vm)
{
	int ret = devtypes_create(vm);

	if (ret) {
		vm_request_exit(vm, WORKER_EXIT_CONFIG, "a configured device cannot be set up");
		return ret;
	}
	phase_mark(vm->trace, "devices");
	ret = vcpus_create(vm);
	phase_mark(vm->trace, "vcpus");
	return ret;
}

int vm_run(struct vm *vm)
{
	int ret;

	for (struct device *d = vm->devices; d; d = d->next)
		if (d->ops->prerun)
			d->ops->prerun(d);
	ret = vcpus_start(vm);

	phase_mark(vm->trace, "vcpus_start");
	if (!ret && vm->restore_t0) {
		struct timespec now;
		bool held = vm_paused(vm); /* --wait-start: until "start" */

		clock_gettime(CLOCK_MONOTONIC, &now);
		/* With the clock's own reading: a benchmark takes the end of
		 * restore to running from it, not from when it read the line. */
		log_info("restore: vCPUs %s, %.3f ms after the restore began "
			 "(CLOCK_MONOTONIC %lld.%09ld)", held ? "ready (held until start)" : "running",
			 (double)(now.tv_sec - vm->restore_t0->tv_sec) * 1e3 +
				 (double)(now.tv_nsec - vm->restore_t0->tv_nsec) / 1e6,
			 (long long)now.tv_sec, now.tv_nsec);
	}
	/* A restore's fill thread starts once the vCPU threads are: started
	 * before them, it took this thread's CPU on a busy host for 3-8 ms
	 * before they ran (its first 2 MiB blocks). A guest fault before it
	 * runs waits in the userfaultfd's queue for it, as any fault does. */
	if (!ret && vm->prefetch_order) {
		int pret = guest_mem_prefetch_start(&vm->mem, vm->prefetch_order,
						    vm->prefetch_filter);

		if (pret)
			log_warn("restore: no prefetch: %s", strerror(-pret));
		vm->prefetch_order = NULL;
	}
	phase_mark(vm->trace, "prefetch_start");
	phase_trace_report(vm->trace, "restore");
	if (ret) {
		vm_request_exit(vm, WORKER_EXIT_ERROR, "cannot start vCPU threads: %s", strerror(-ret));
	} else {
		ret = evloop_run(vm->loop);
		if (ret)
			vm_request_exit(vm, WORKER_EXIT_ERROR, "I/O loop failed: %s", strerror(-ret));
	}
	vcpus_join(vm);
	return atomic_load(&vm->exit_code);
}

int vm_thread_seccomp(const void *filter)
{
	if (filter && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) < 0)
		return -errno;
	return 0;
}

void vm_destroy(struct vm *vm)
{
	struct device *d, *next;

	vcpus_destroy(vm);
	vm_cpuid_free(vm);
	for (d = vm->devices; d; d = next) {
		next = d->next;
		if (d->ops->destroy)
			d->ops->destroy(d);
	}
	vm->devices = vm->devices_tail = NULL;
	if (vm->loop)
		evloop_destroy(vm->loop);
	vm->loop = NULL;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->unused_vm_fd >= 0)
		close(vm->unused_vm_fd);
	vm->vm_fd = vm->kvm_fd = vm->unused_vm_fd = -1;
	if (vm->teardown_ring >= 0)
		close(vm->teardown_ring); /* freed by a kernel worker: no wait here */
	vm->teardown_ring = -1;
	guest_mem_destroy(&vm->mem);
	if (vm->pio.name)
		bus_destroy(&vm->pio);
	if (vm->mmio.name)
		bus_destroy(&vm->mmio);
	free(vm->cmdline_extra);
	vm->cmdline_extra = NULL;
}
