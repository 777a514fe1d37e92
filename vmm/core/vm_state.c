/* vm_state.c: a VM's CPU, platform and device state as framed sections
 * (vmm/state/statefile.h): what a state file holds besides RAM, and what a
 * live migration sends. The x86 payloads are in vmm/arch/x86/cpustate.c,
 * the devices' in their own ops->save/load. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/kvm.h>

#include "arch/x86/x86.h"
#include "log.h"
#include "state/memorder.h"
#include "state/state.h"
#include "state/statefile.h"
#include "devtype.h"
#include "vcpu.h"
#include "vm.h"

/* Section versions (each payload's layout). */
#define SEC_MACHINE_V 1
#define SEC_VCPU_V    1
#define SEC_IRQCHIP_V 1
#define SEC_PIT_V     1
#define SEC_CLOCK_V   1
#define SEC_DEVICE_V  1
#define DEV_PREFIX    "dev:"
#define MAX_SECTIONS  (CONFIG_MAX_CPUS + 8 + 256)

static const struct {
	const char *id;
	unsigned chip;
} irqchips[] = {
	{ "pic-master", KVM_IRQCHIP_PIC_MASTER },
	{ "pic-slave", KVM_IRQCHIP_PIC_SLAVE },
	{ "ioapic", KVM_IRQCHIP_IOAPIC },
};

static void put_str(struct state_writer *w, const char *s)
{
	size_t n = MIN(strlen(s), (size_t)255);

	state_put_u8(w, (uint8_t)n);
	state_put_bytes(w, s, n);
}

static int save_machine(struct vm *vm, struct state_writer *w)
{
	size_t mark = state_section_begin(w, "machine", SEC_MACHINE_V);
	uint32_t ndev = 0;

	for (struct device *d = vm->devices; d; d = d->next)
		ndev++;
	state_put_u32(w, vm->nr_vcpus);
	state_put_u64(w, vm->mem.size);
	state_put_u32(w, ndev);
	for (struct device *d = vm->devices; d; d = d->next) {
		put_str(w, d->id);
		put_str(w, d->ops->type);
	}
	state_section_end(w, mark);
	return state_writer_error(w);
}

static int save_device(struct device *d, struct state_writer *w)
{
	char id[STATE_SECTION_ID_LEN];
	size_t mark;
	int ret = 0;

	snprintf(id, sizeof(id), DEV_PREFIX "%s", d->id);
	mark = state_section_begin(w, id, SEC_DEVICE_V);
	if (d->ops->save)
		ret = d->ops->save(d, w);
	state_section_end(w, mark);
	if (ret || (ret = state_writer_error(w)))
		log_err("state: device %s (%s): cannot save: %s", d->id, d->ops->type,
			strerror(-ret));
	return ret;
}

static int save_platform(struct vm *vm, struct state_writer *w)
{
	int ret = 0;

	for (size_t i = 0; i < ARRAY_SIZE(irqchips) && !ret; i++) {
		size_t mark = state_section_begin(w, irqchips[i].id, SEC_IRQCHIP_V);

		ret = x86_irqchip_save(vm->vm_fd, irqchips[i].chip, w);
		state_section_end(w, mark);
	}
	if (!ret) {
		size_t mark = state_section_begin(w, "pit", SEC_PIT_V);

		ret = x86_pit_save(vm->vm_fd, w);
		state_section_end(w, mark);
	}
	return ret;
}

int vm_state_save_format(struct vm *vm, struct state_writer *w, unsigned format)
{
	int ret = save_machine(vm, w);

	for (unsigned i = 0; i < vm->nr_vcpus && !ret; i++) {
		char id[16];
		size_t mark;

		snprintf(id, sizeof(id), "vcpu%u", i);
		mark = state_section_begin(w, id, SEC_VCPU_V);
		ret = x86_vcpu_state_save(vm->kvm_fd, vm->vm_fd, vm->vcpus[i].fd, w);
		state_section_end(w, mark);
		if (ret)
			log_err("state: vCPU %u: cannot save: %s", i, strerror(-ret));
	}
	if (!ret && vm->vm_fd >= 0)
		ret = save_platform(vm, w);
	for (struct device *d = vm->devices; d && !ret; d = d->next)
		ret = save_device(d, w);
	/* kvmclock last: closest to the moment the VM stopped. Version 1
	 * files had no clock section. */
	if (!ret && vm->vm_fd >= 0 && format >= 2) {
		size_t mark = state_section_begin(w, "clock", SEC_CLOCK_V);

		ret = x86_clock_save(vm->vm_fd, w);
		state_section_end(w, mark);
	}
	if (!ret)
		ret = state_writer_error(w);
	return ret;
}

int vm_state_save(struct vm *vm, struct state_writer *w)
{
	return vm_state_save_format(vm, w, STATEFILE_VERSION);
}

/* --- Load ------------------------------------------------------------- */

struct loaded {
	struct state_section s[MAX_SECTIONS];
	unsigned n;
};

static const struct state_section *find(const struct loaded *l, const char *id)
{
	for (unsigned i = 0; i < l->n; i++)
		if (!strcmp(l->s[i].id, id))
			return &l->s[i];
	return NULL;
}

static struct device *find_device(struct vm *vm, const char *id)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->id, id))
			return d;
	return NULL;
}

/* "vcpuN", N in decimal without leading zeros. */
static bool vcpu_index(const char *id, unsigned *idx)
{
	const char *p = id + 4;

	if (strncmp(id, "vcpu", 4) || !*p || (p[0] == '0' && p[1]) || strlen(p) > 3)
		return false;
	*idx = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		*idx = *idx * 10 + (unsigned)(*p - '0');
	}
	return true;
}

/* Whether id names a section this VM has, and the version it must have. */
static bool known_section(struct vm *vm, const char *id, unsigned format, uint32_t *version)
{
	unsigned idx;

	*version = SEC_DEVICE_V;
	if (!strncmp(id, DEV_PREFIX, strlen(DEV_PREFIX)))
		return find_device(vm, id + strlen(DEV_PREFIX)) != NULL;
	*version = SEC_MACHINE_V;
	if (!strcmp(id, "machine"))
		return true;
	*version = SEC_VCPU_V;
	if (vcpu_index(id, &idx)) /* hot-plugged ones too: check_machine adds them */
		return idx < (vm->cfg ? config_cpus_possible(vm->cfg) : vm->nr_vcpus);
	*version = SEC_IRQCHIP_V;
	for (size_t i = 0; i < ARRAY_SIZE(irqchips); i++)
		if (!strcmp(id, irqchips[i].id))
			return vm->vm_fd >= 0;
	*version = SEC_PIT_V;
	if (!strcmp(id, "pit"))
		return vm->vm_fd >= 0;
	/* The restore's prefetch hint (statefile_mem_order reads it; the
	 * VM's own load has nothing to do with it). */
	*version = MEM_ORDER_VERSION;
	if (!strcmp(id, MEM_ORDER_SECTION))
		return format >= 2;
	*version = SEC_CLOCK_V;
	return !strcmp(id, "clock") && vm->vm_fd >= 0 && format >= 2;
}

static int collect(struct vm *vm, struct state_reader *r, unsigned format, struct loaded *l)
{
	struct state_section sec = { .id = "" };
	char err[256];
	int ret;

	l->n = 0;
	while ((ret = state_section_next(r, &sec, err, sizeof(err))) == 1) {
		uint32_t want;

		if (!known_section(vm, sec.id, format, &want)) {
			if (!strncmp(sec.id, DEV_PREFIX, strlen(DEV_PREFIX)))
				log_err("state: section '%s' is for device '%s', which this VM does "
					"not have (is a disk or NIC missing from the configuration?)",
					sec.id, sec.id + strlen(DEV_PREFIX));
			else
				log_err("state: unknown section '%s' (format version %u)", sec.id,
					format);
			return -EINVAL;
		}
		if (sec.version != want) {
			log_err("state: section '%s' version %u is not supported (%u is)", sec.id,
				sec.version, want);
			return -EINVAL;
		}
		if (find(l, sec.id)) {
			log_err("state: section '%s' appears twice", sec.id);
			return -EINVAL;
		}
		if (l->n == MAX_SECTIONS) {
			log_err("state: more than %d sections", MAX_SECTIONS);
			return -EINVAL;
		}
		l->s[l->n++] = sec;
	}
	if (ret)
		log_err("%s", err);
	return ret;
}

static int need(const struct loaded *l, const char *id, const struct state_section **out)
{
	*out = find(l, id);
	if (!*out) {
		log_err("state: section '%s' is missing", id);
		return -EINVAL;
	}
	return 0;
}

static bool get_str(struct state_reader *r, char *buf, size_t size)
{
	uint8_t n = state_get_u8(r);

	if (n >= size) {
		state_reader_fail(r);
		return false;
	}
	state_get_bytes(r, buf, n);
	buf[n] = 0;
	return !state_reader_error(r);
}

/* The saved VM's shape must be this VM's: vCPUs, RAM, and the same
 * devices (by id and type). */
static int check_machine(struct vm *vm, const struct state_section *s)
{
	struct state_reader r;
	uint32_t ncpu, ndev;
	uint64_t mem;

	state_reader_init(&r, s->data, s->len);
	ncpu = state_get_u32(&r);
	mem = state_get_u64(&r);
	ndev = state_get_u32(&r);
	if (state_reader_error(&r))
		goto bad;
	/* vCPUs hot-plugged before the save: add them (a configuration that
	 * allows them: cpus_max), before their sections load. */
	if (vm->cfg && vm->nr_vcpus && ncpu > vm->nr_vcpus && ncpu <= config_cpus_possible(vm->cfg) &&
	    mem == vm->mem.size &&
	    vcpus_hotplug(vm, ncpu))
		return -EINVAL;
	if (ncpu != vm->nr_vcpus || mem != vm->mem.size) {
		log_err("state: section 'machine': saved with %u vCPUs and %llu MiB, this VM has "
			"%u and %llu MiB", ncpu, (unsigned long long)(mem >> 20), vm->nr_vcpus,
			(unsigned long long)(vm->mem.size >> 20));
		return -EINVAL;
	}
	for (uint32_t i = 0; i < ndev; i++) {
		char id[256], type[256];
		struct device *d;

		if (!get_str(&r, id, sizeof(id)) || !get_str(&r, type, sizeof(type)))
			goto bad;
		d = find_device(vm, id);
		if (!d) {
			log_err("state: the saved VM has device '%s' (%s), this VM does not (is it "
				"missing from the configuration?)", id, type);
			return -EINVAL;
		}
		if (strcmp(d->ops->type, type)) {
			log_err("state: device '%s' was a %s when saved, here it is a %s", id, type,
				d->ops->type);
			return -EINVAL;
		}
	}
	if (r.pos != r.len)
		goto bad;
	/* Devices here that the saved VM lacked are named by load_devices. */
	return 0;
bad:
	log_err("state: section 'machine' is malformed");
	return -EINVAL;
}

static int load_platform(struct vm *vm, const struct loaded *l)
{
	const struct state_section *s;
	struct state_reader r;
	char why[200];
	int ret;

	for (size_t i = 0; i < ARRAY_SIZE(irqchips); i++) {
		if ((ret = need(l, irqchips[i].id, &s)))
			return ret;
		state_reader_init(&r, s->data, s->len);
		if (x86_irqchip_load(vm->vm_fd, irqchips[i].chip, &r, why, sizeof(why)))
			goto fail;
	}
	if ((ret = need(l, "pit", &s)))
		return ret;
	state_reader_init(&r, s->data, s->len);
	if (x86_pit_load(vm->vm_fd, &r, why, sizeof(why)))
		goto fail;
	return 0;
fail:
	log_err("state: section '%s': %s", s->id, why);
	return -EINVAL;
}

/* Every device of this VM must have its section (before anything loads). */
static int check_devices_present(struct vm *vm, const struct loaded *l)
{
	for (struct device *d = vm->devices; d; d = d->next) {
		char id[STATE_SECTION_ID_LEN];

		snprintf(id, sizeof(id), DEV_PREFIX "%s", d->id);
		if (!find(l, id) && !(devtype_of(d) && devtype_of(d)->state_optional)) {
			log_err("state: no section for device '%s' (%s): the saved VM did not "
				"have it", d->id, d->ops->type);
			return -EINVAL;
		}
	}
	return 0;
}

static int load_devices(struct vm *vm, const struct loaded *l)
{
	for (struct device *d = vm->devices; d; d = d->next) {
		char id[STATE_SECTION_ID_LEN];
		const struct state_section *s;
		struct state_reader r;
		int ret;

		snprintf(id, sizeof(id), DEV_PREFIX "%s", d->id);
		s = find(l, id);
		if (!s && devtype_of(d) && devtype_of(d)->state_optional) {
			log_info("state: no section for device '%s' (%s): saved before it "
				 "existed; it stays as created", d->id, d->ops->type);
			continue;
		}
		if (!s) {
			log_err("state: no section for device '%s' (%s): the saved VM did not "
				"have it", d->id, d->ops->type);
			return -EINVAL;
		}
		state_reader_init(&r, s->data, s->len);
		ret = d->ops->load ? d->ops->load(d, &r) : (s->len ? -EINVAL : 0);
		if (!ret && r.pos != r.len)
			ret = -EINVAL;
		if (ret) {
			log_err("state: section '%s': device %s refused its state: %s", id,
				d->ops->type, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int vm_state_load(struct vm *vm, struct state_reader *r, unsigned format)
{
	struct loaded *l = calloc(1, sizeof(*l));
	const struct state_section *s;
	struct state_reader sr;
	char why[200];
	int ret;

	if (!l)
		return -ENOMEM;
	ret = collect(vm, r, format, l);
	if (!ret && !(ret = need(l, "machine", &s)))
		ret = check_machine(vm, s);
	if (!ret)
		ret = check_devices_present(vm, l);
	if (!ret && vm->vm_fd >= 0)
		ret = load_platform(vm, l);
	for (unsigned i = 0; i < vm->nr_vcpus && !ret; i++) {
		char id[16];

		snprintf(id, sizeof(id), "vcpu%u", i);
		if ((ret = need(l, id, &s)))
			break;
		state_reader_init(&sr, s->data, s->len);
		ret = x86_vcpu_state_load(vm->vm_fd, vm->vcpus[i].fd, &sr, why, sizeof(why));
		if (ret)
			log_err("state: section '%s': %s", id, why);
	}
	if (!ret)
		ret = load_devices(vm, l);
	if (!ret && vm->vm_fd >= 0 && format >= 2 && !(ret = need(l, "clock", &s))) {
		state_reader_init(&sr, s->data, s->len);
		if ((ret = x86_clock_load(vm->vm_fd, &sr, why, sizeof(why))))
			log_err("state: section 'clock': %s", why);
	}
	free(l);
	return ret;
}
