/* cpustate.c: save and load of x86 vCPU state (registers, FPU/XSAVE, MSRs,
 * local APIC, pending events, debug registers, MP state, TSC frequency) and
 * of the in-kernel platform (PIC, IOAPIC, PIT, kvmclock).
 *
 * A vCPU's payload is a list of items: u32 kind, u32 length, bytes (the KVM
 * structure as the ioctl returns it: x86 UAPI layouts are a stable ABI),
 * ended by CPU_ITEM_END. Loading parses and checks the whole list before it
 * touches the vCPU, then applies it in the order KVM needs (see
 * cpu_apply). What the host cannot read (no XSAVE, no SREGS2...) falls back
 * to the older ioctl and is recorded by the item's kind.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "arch/x86/x86.h"
#include "log.h"
#include "state/state.h"

enum cpu_item {
	CPU_ITEM_END = 0,
	CPU_ITEM_REGS = 1,
	CPU_ITEM_SREGS = 2,
	CPU_ITEM_SREGS2 = 3,
	CPU_ITEM_FPU = 4,
	CPU_ITEM_XSAVE = 5,
	CPU_ITEM_XCRS = 6,
	CPU_ITEM_MSRS = 7,
	CPU_ITEM_LAPIC = 8,
	CPU_ITEM_EVENTS = 9,
	CPU_ITEM_DEBUGREGS = 10,
	CPU_ITEM_MP_STATE = 11,
	CPU_ITEM_TSC_KHZ = 12,
	CPU_ITEM_COUNT
};

static const char *const cpu_item_names[CPU_ITEM_COUNT] = {
	"end", "regs", "sregs", "sregs2", "fpu", "xsave", "xcrs", "msrs",
	"lapic", "events", "debugregs", "mp_state", "tsc_khz",
};

#define MSR_IA32_TSC          0x00000010
#define MSR_IA32_TSC_DEADLINE 0x000006e0
#define CPU_MSRS_MAX          4096
#define CPU_XSAVE_MAX         (1u << 20)

static bool has_cap(int fd, long cap)
{
	return ioctl(fd, KVM_CHECK_EXTENSION, cap) > 0;
}

static void put_item(struct state_writer *w, enum cpu_item kind, const void *p, size_t len)
{
	state_put_u32(w, kind);
	state_put_u32(w, (uint32_t)len);
	state_put_bytes(w, p, len);
}

/* One KVM_GET_* into a fixed-size structure, written as an item. */
static int save_fixed(int fd, unsigned long req, enum cpu_item kind, void *buf, size_t len,
		      struct state_writer *w)
{
	memset(buf, 0, len);
	if (ioctl(fd, req, buf) < 0) {
		int err = -errno;

		log_err("state: vCPU %s: %s", cpu_item_names[kind], strerror(errno));
		return err;
	}
	put_item(w, kind, buf, len);
	return 0;
}

/* The MSRs this vCPU can read: KVM's index list (msrs_to_save plus the
 * emulated ones: TSC, kvmclock, EFER/STAR/LSTAR, APIC base, MTRRs, PAT...)
 * less those KVM_GET_MSRS refuses. *out is a kvm_msrs with values. */
static int read_msrs(int kvm_fd, int vcpu_fd, struct kvm_msrs **out)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	struct kvm_msrs *msrs, *q;
	uint32_t n, kept = 0;
	int ret = 0;

	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	n = probe.nmsrs;
	if (n > CPU_MSRS_MAX)
		return -E2BIG;
	list = calloc(1, sizeof(*list) + n * sizeof(uint32_t));
	msrs = calloc(1, sizeof(*msrs) + n * sizeof(struct kvm_msr_entry));
	q = calloc(1, sizeof(*q) + n * sizeof(struct kvm_msr_entry));
	if (!list || !msrs || !q) {
		ret = -ENOMEM;
		goto out;
	}
	list->nmsrs = n;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		ret = -errno;
		goto out;
	}
	n = MIN(n, list->nmsrs);
	/* KVM_GET_MSRS stops at the first MSR it cannot read and returns how
	 * many it read: keep those, drop the refused one, go on. */
	for (uint32_t first = 0; first < n;) {
		int got;

		q->nmsrs = n - first;
		for (uint32_t i = first; i < n; i++)
			q->entries[i - first] = (struct kvm_msr_entry){ .index = list->indices[i] };
		got = ioctl(vcpu_fd, KVM_GET_MSRS, q);
		if (got < 0) {
			ret = -errno;
			goto out;
		}
		memcpy(&msrs->entries[kept], q->entries, (size_t)got * sizeof(q->entries[0]));
		kept += (uint32_t)got;
		first += (uint32_t)got;
		if (first < n) {
			log_debug("state: MSR 0x%x not readable; not saved", list->indices[first]);
			first++;
		}
	}
	msrs->nmsrs = kept;
	*out = msrs;
	msrs = NULL;
out:
	free(list);
	free(msrs);
	free(q);
	return ret;
}

static int save_msrs(int kvm_fd, int vcpu_fd, struct state_writer *w)
{
	struct kvm_msrs *msrs = NULL;
	int ret = read_msrs(kvm_fd, vcpu_fd, &msrs);

	if (ret) {
		log_err("state: vCPU MSRs: %s", strerror(-ret));
		return ret;
	}
	state_put_u32(w, CPU_ITEM_MSRS);
	state_put_u32(w, 4 + 12 * msrs->nmsrs);
	state_put_u32(w, msrs->nmsrs);
	for (uint32_t i = 0; i < msrs->nmsrs; i++) {
		state_put_u32(w, msrs->entries[i].index);
		state_put_u64(w, msrs->entries[i].data);
	}
	free(msrs);
	return 0;
}

static int save_fpu(int vm_fd, int vcpu_fd, struct state_writer *w)
{
	int size = has_cap(vm_fd, KVM_CAP_XSAVE2) ? ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2)
						   : 0;
	struct kvm_fpu fpu;
	void *buf;
	int ret = 0;

	if (!has_cap(vm_fd, KVM_CAP_XSAVE))
		/* This host's KVM_GET_FPU reads MXCSR as 0 where XSAVE exists;
		 * without XSAVE it is all there is. */
		return save_fixed(vcpu_fd, KVM_GET_FPU, CPU_ITEM_FPU, &fpu, sizeof(fpu), w);
	if (size < (int)sizeof(struct kvm_xsave))
		size = sizeof(struct kvm_xsave);
	if ((unsigned)size > CPU_XSAVE_MAX)
		return -E2BIG;
	buf = calloc(1, (size_t)size);
	if (!buf)
		return -ENOMEM;
	if (ioctl(vcpu_fd, size > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
		  buf) < 0) {
		ret = -errno;
		log_err("state: vCPU xsave: %s", strerror(errno));
	} else {
		put_item(w, CPU_ITEM_XSAVE, buf, (size_t)size);
	}
	free(buf);
	return ret;
}

int x86_vcpu_state_save(int kvm_fd, int vm_fd, int vcpu_fd, struct state_writer *w)
{
	union {
		struct kvm_regs regs;
		struct kvm_sregs sregs;
		struct kvm_sregs2 sregs2;
		struct kvm_xcrs xcrs;
		struct kvm_lapic_state lapic;
		struct kvm_vcpu_events events;
		struct kvm_debugregs dbg;
		struct kvm_mp_state mp;
	} u;
	int ret, khz;

	ret = save_fixed(vcpu_fd, KVM_GET_REGS, CPU_ITEM_REGS, &u.regs, sizeof(u.regs), w);
	if (!ret)
		ret = has_cap(vm_fd, KVM_CAP_SREGS2)
			      ? save_fixed(vcpu_fd, KVM_GET_SREGS2, CPU_ITEM_SREGS2, &u.sregs2,
					   sizeof(u.sregs2), w)
			      : save_fixed(vcpu_fd, KVM_GET_SREGS, CPU_ITEM_SREGS, &u.sregs,
					   sizeof(u.sregs), w);
	if (!ret)
		ret = save_fpu(vm_fd, vcpu_fd, w);
	if (!ret && has_cap(vm_fd, KVM_CAP_XCRS))
		ret = save_fixed(vcpu_fd, KVM_GET_XCRS, CPU_ITEM_XCRS, &u.xcrs, sizeof(u.xcrs), w);
	if (!ret)
		ret = save_msrs(kvm_fd, vcpu_fd, w);
	if (!ret)
		ret = save_fixed(vcpu_fd, KVM_GET_LAPIC, CPU_ITEM_LAPIC, &u.lapic, sizeof(u.lapic), w);
	if (!ret)
		ret = save_fixed(vcpu_fd, KVM_GET_VCPU_EVENTS, CPU_ITEM_EVENTS, &u.events,
				 sizeof(u.events), w);
	if (!ret && has_cap(vm_fd, KVM_CAP_DEBUGREGS))
		ret = save_fixed(vcpu_fd, KVM_GET_DEBUGREGS, CPU_ITEM_DEBUGREGS, &u.dbg,
				 sizeof(u.dbg), w);
	if (!ret)
		ret = save_fixed(vcpu_fd, KVM_GET_MP_STATE, CPU_ITEM_MP_STATE, &u.mp, sizeof(u.mp),
				 w);
	if (ret)
		return ret;
	khz = has_cap(vm_fd, KVM_CAP_GET_TSC_KHZ) ? ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0) : -1;
	if (khz > 0) {
		uint32_t k = (uint32_t)khz;

		put_item(w, CPU_ITEM_TSC_KHZ, &k, sizeof(k));
	}
	state_put_u32(w, CPU_ITEM_END);
	state_put_u32(w, 0);
	return state_writer_error(w);
}

/* The parsed payload: pointers into the reader's buffer. */
struct cpu_items {
	const uint8_t *p[CPU_ITEM_COUNT];
	uint32_t len[CPU_ITEM_COUNT];
};

static size_t item_fixed_size(enum cpu_item k)
{
	switch (k) {
	case CPU_ITEM_REGS: return sizeof(struct kvm_regs);
	case CPU_ITEM_SREGS: return sizeof(struct kvm_sregs);
	case CPU_ITEM_SREGS2: return sizeof(struct kvm_sregs2);
	case CPU_ITEM_FPU: return sizeof(struct kvm_fpu);
	case CPU_ITEM_XCRS: return sizeof(struct kvm_xcrs);
	case CPU_ITEM_LAPIC: return sizeof(struct kvm_lapic_state);
	case CPU_ITEM_EVENTS: return sizeof(struct kvm_vcpu_events);
	case CPU_ITEM_DEBUGREGS: return sizeof(struct kvm_debugregs);
	case CPU_ITEM_MP_STATE: return sizeof(struct kvm_mp_state);
	case CPU_ITEM_TSC_KHZ: return sizeof(uint32_t);
	default: return 0; /* variable: XSAVE, MSRS */
	}
}

static int cpu_fail(char *err, size_t errlen, const char *fmt, ...) __printf(3, 4);
static int cpu_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Parse and check the item list (no ioctl). */
static int cpu_parse(struct state_reader *r, struct cpu_items *it, char *err, size_t errlen)
{
	memset(it, 0, sizeof(*it));
	for (;;) {
		uint32_t kind = state_get_u32(r), len = state_get_u32(r);
		size_t want;

		if (state_reader_error(r))
			return cpu_fail(err, errlen, "truncated item list");
		if (kind == CPU_ITEM_END) {
			if (len)
				return cpu_fail(err, errlen, "bad end marker");
			break;
		}
		if (kind >= CPU_ITEM_COUNT)
			return cpu_fail(err, errlen, "unknown item kind %u", kind);
		if (it->p[kind])
			return cpu_fail(err, errlen, "item '%s' twice", cpu_item_names[kind]);
		want = item_fixed_size(kind);
		if (want && len != want)
			return cpu_fail(err, errlen, "item '%s' is %u bytes, expected %zu",
					cpu_item_names[kind], len, want);
		if (kind == CPU_ITEM_XSAVE &&
		    (len < sizeof(struct kvm_xsave) || len > CPU_XSAVE_MAX || len % 4))
			return cpu_fail(err, errlen, "item 'xsave' has a bad size (%u bytes)", len);
		if (kind == CPU_ITEM_MSRS) {
			uint32_t n;

			if (len < 4 || len > r->len - r->pos)
				return cpu_fail(err, errlen, "item 'msrs' truncated");
			memcpy(&n, r->buf + r->pos, 4);
			n = le32toh(n);
			if (n > CPU_MSRS_MAX || len != 4 + 12 * n)
				return cpu_fail(err, errlen, "item 'msrs': %u entries in %u bytes", n, len);
		}
		if (len > r->len - r->pos)
			return cpu_fail(err, errlen, "item '%s' truncated", cpu_item_names[kind]);
		it->p[kind] = r->buf + r->pos;
		it->len[kind] = len;
		r->pos += len;
	}
	if (r->pos != r->len)
		return cpu_fail(err, errlen, "%zu bytes after the end marker", r->len - r->pos);
	if (!it->p[CPU_ITEM_REGS] || !(it->p[CPU_ITEM_SREGS] || it->p[CPU_ITEM_SREGS2]) ||
	    !(it->p[CPU_ITEM_FPU] || it->p[CPU_ITEM_XSAVE]) || !it->p[CPU_ITEM_MSRS] ||
	    !it->p[CPU_ITEM_LAPIC] || !it->p[CPU_ITEM_EVENTS] || !it->p[CPU_ITEM_MP_STATE])
		return cpu_fail(err, errlen, "an item is missing (regs, sregs, fpu/xsave, msrs, "
				"lapic, events and mp_state are required)");
	if (it->p[CPU_ITEM_SREGS] && it->p[CPU_ITEM_SREGS2])
		return cpu_fail(err, errlen, "both 'sregs' and 'sregs2'");
	return 0;
}

/* One KVM_SET_* from an item, copied out so the structure is aligned. */
static int set_item(int fd, unsigned long req, const struct cpu_items *it, enum cpu_item k,
		    char *err, size_t errlen)
{
	void *buf = calloc(1, it->len[k]);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, it->p[k], it->len[k]);
	if (k == CPU_ITEM_EVENTS) {
		struct kvm_vcpu_events *e = buf;

		/* Restore the NMI and SIPI fields too, as KVM documents. */
		e->flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	}
	if (ioctl(fd, req, buf) < 0) {
		ret = -errno;
		snprintf(err, errlen, "KVM refused '%s': %s", cpu_item_names[k], strerror(errno));
	}
	free(buf);
	return ret;
}

/* KVM_SET_MSRS, one MSR at a time where KVM refuses some (skip, log).
 * `deadline`: only MSR_IA32_TSC_DEADLINE (after the LAPIC), or all others. */
static int set_msrs(int vcpu_fd, const struct cpu_items *it, bool deadline)
{
	const uint8_t *p = it->p[CPU_ITEM_MSRS];
	struct kvm_msrs *m;
	uint32_t n, cnt = 0, done = 0;

	memcpy(&n, p, 4); /* unaligned; checked by cpu_parse */
	n = le32toh(n);
	m = calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));
	if (!m)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t idx;
		uint64_t val;

		memcpy(&idx, p + 4 + 12 * i, 4);
		memcpy(&val, p + 8 + 12 * i, 8);
		if ((idx == MSR_IA32_TSC_DEADLINE) != deadline)
			continue;
		m->entries[cnt++] = (struct kvm_msr_entry){ .index = le32toh(idx),
							   .data = le64toh(val) };
	}
	while (done < cnt) {
		struct kvm_msrs *part = calloc(1, sizeof(*part) +
						      (cnt - done) * sizeof(struct kvm_msr_entry));
		int got;

		if (!part) {
			free(m);
			return -ENOMEM;
		}
		part->nmsrs = cnt - done;
		memcpy(part->entries, &m->entries[done], part->nmsrs * sizeof(part->entries[0]));
		got = ioctl(vcpu_fd, KVM_SET_MSRS, part);
		free(part);
		if (got < 0) {
			int e = -errno;

			free(m);
			return e;
		}
		done += (uint32_t)got;
		if (done < cnt) {
			log_debug("state: KVM refused MSR 0x%x = 0x%llx; skipped",
				  m->entries[done].index, (unsigned long long)m->entries[done].data);
			done++;
		}
	}
	free(m);
	return 0;
}

static int set_xsave(int vm_fd, int vcpu_fd, const struct cpu_items *it, char *err,
		     size_t errlen)
{
	int size = has_cap(vm_fd, KVM_CAP_XSAVE2) ? ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2)
						   : (int)sizeof(struct kvm_xsave);
	size_t len = MAX((size_t)MAX(size, (int)sizeof(struct kvm_xsave)), it->len[CPU_ITEM_XSAVE]);
	void *buf;
	int ret = 0;

	if (!has_cap(vm_fd, KVM_CAP_XSAVE))
		return cpu_fail(err, errlen, "saved with XSAVE, which this host's KVM lacks");
	/* KVM reads as many bytes as its own XSAVE2 size: pad with zeros. */
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, it->p[CPU_ITEM_XSAVE], it->len[CPU_ITEM_XSAVE]);
	if (ioctl(vcpu_fd, KVM_SET_XSAVE, buf) < 0) {
		ret = -errno;
		snprintf(err, errlen, "KVM refused 'xsave': %s", strerror(errno));
	}
	free(buf);
	return ret;
}

static void set_tsc_khz(int vm_fd, int vcpu_fd, const struct cpu_items *it)
{
	uint32_t khz;
	int cur;

	if (!it->p[CPU_ITEM_TSC_KHZ])
		return;
	memcpy(&khz, it->p[CPU_ITEM_TSC_KHZ], 4);
	cur = has_cap(vm_fd, KVM_CAP_GET_TSC_KHZ) ? ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0) : -1;
	if (cur <= 0 || (uint32_t)cur == khz)
		return;
	/* Another TSC frequency than where the state was saved: scale if the
	 * host can, else the guest's clock runs at the host's rate. */
	if (!has_cap(vm_fd, KVM_CAP_TSC_CONTROL) || ioctl(vcpu_fd, KVM_SET_TSC_KHZ, khz) < 0)
		log_warn("state: TSC was %u kHz when saved, %d kHz here, and KVM cannot scale it",
			 khz, cur);
}

/* Order (as QEMU's kvm_arch_put_registers): TSC frequency, special
 * registers (APIC base, EFER, CRs) before the general ones and the MSRs
 * that depend on them; FPU state; MSRs; the LAPIC, then the TSC deadline
 * MSR (setting the LAPIC resets its timer); MP state; pending events
 * last but debug registers. */
static int cpu_apply(int vm_fd, int vcpu_fd, const struct cpu_items *it, char *err,
		     size_t errlen)
{
	int ret;

	set_tsc_khz(vm_fd, vcpu_fd, it);
	if (it->p[CPU_ITEM_SREGS2]) {
		if (!has_cap(vm_fd, KVM_CAP_SREGS2))
			return cpu_fail(err, errlen, "saved with SREGS2, which this host's KVM lacks");
		ret = set_item(vcpu_fd, KVM_SET_SREGS2, it, CPU_ITEM_SREGS2, err, errlen);
	} else {
		ret = set_item(vcpu_fd, KVM_SET_SREGS, it, CPU_ITEM_SREGS, err, errlen);
	}
	if (!ret)
		ret = set_item(vcpu_fd, KVM_SET_REGS, it, CPU_ITEM_REGS, err, errlen);
	if (!ret)
		ret = it->p[CPU_ITEM_XSAVE] ? set_xsave(vm_fd, vcpu_fd, it, err, errlen)
					    : set_item(vcpu_fd, KVM_SET_FPU, it, CPU_ITEM_FPU, err, errlen);
	if (!ret && it->p[CPU_ITEM_XCRS])
		ret = set_item(vcpu_fd, KVM_SET_XCRS, it, CPU_ITEM_XCRS, err, errlen);
	if (!ret && (ret = set_msrs(vcpu_fd, it, false)))
		snprintf(err, errlen, "KVM_SET_MSRS: %s", strerror(-ret));
	if (!ret)
		ret = set_item(vcpu_fd, KVM_SET_LAPIC, it, CPU_ITEM_LAPIC, err, errlen);
	if (!ret && (ret = set_msrs(vcpu_fd, it, true)))
		snprintf(err, errlen, "KVM_SET_MSRS (TSC deadline): %s", strerror(-ret));
	if (!ret)
		ret = set_item(vcpu_fd, KVM_SET_MP_STATE, it, CPU_ITEM_MP_STATE, err, errlen);
	if (!ret)
		ret = set_item(vcpu_fd, KVM_SET_VCPU_EVENTS, it, CPU_ITEM_EVENTS, err, errlen);
	if (!ret && it->p[CPU_ITEM_DEBUGREGS])
		ret = set_item(vcpu_fd, KVM_SET_DEBUGREGS, it, CPU_ITEM_DEBUGREGS, err, errlen);
	return ret;
}

int x86_vcpu_state_load(int vm_fd, int vcpu_fd, struct state_reader *r, char *err, size_t errlen)
{
	struct cpu_items it;
	int ret = cpu_parse(r, &it, err, errlen);

	if (ret)
		return ret;
	if (vcpu_fd < 0)
		return 0; /* parse only (tests, fuzzing) */
	return cpu_apply(vm_fd, vcpu_fd, &it, err, errlen);
}

/* --- Platform: PIC, IOAPIC, PIT, kvmclock ------------------------------- */

static size_t irqchip_size(unsigned chip)
{
	return chip == KVM_IRQCHIP_IOAPIC ? sizeof(struct kvm_ioapic_state)
					  : sizeof(struct kvm_pic_state);
}

int x86_irqchip_save(int vm_fd, unsigned chip, struct state_writer *w)
{
	struct kvm_irqchip c = { .chip_id = chip };

	if (ioctl(vm_fd, KVM_GET_IRQCHIP, &c) < 0) {
		int err = -errno;

		log_err("state: KVM_GET_IRQCHIP %u: %s", chip, strerror(errno));
		return err;
	}
	state_put_bytes(w, &c.chip, irqchip_size(chip));
	return state_writer_error(w);
}

int x86_irqchip_load(int vm_fd, unsigned chip, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_irqchip c = { .chip_id = chip };

	if (r->len != irqchip_size(chip))
		return cpu_fail(err, errlen, "%zu bytes, expected %zu", r->len, irqchip_size(chip));
	state_get_bytes(r, &c.chip, irqchip_size(chip));
	if (vm_fd >= 0 && ioctl(vm_fd, KVM_SET_IRQCHIP, &c) < 0) {
		snprintf(err, errlen, "KVM_SET_IRQCHIP: %s", strerror(errno));
		return -EINVAL;
	}
	return 0;
}

int x86_pit_save(int vm_fd, struct state_writer *w)
{
	struct kvm_pit_state2 pit;

	memset(&pit, 0, sizeof(pit));
	if (ioctl(vm_fd, KVM_GET_PIT2, &pit) < 0) {
		int err = -errno;

		log_err("state: KVM_GET_PIT2: %s", strerror(errno));
		return err;
	}
	state_put_bytes(w, &pit, sizeof(pit));
	return state_writer_error(w);
}

int x86_pit_load(int vm_fd, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_pit_state2 pit;

	if (r->len != sizeof(pit))
		return cpu_fail(err, errlen, "%zu bytes, expected %zu", r->len, sizeof(pit));
	state_get_bytes(r, &pit, sizeof(pit));
	if (vm_fd >= 0 && ioctl(vm_fd, KVM_SET_PIT2, &pit) < 0) {
		snprintf(err, errlen, "KVM_SET_PIT2: %s", strerror(errno));
		return -EINVAL;
	}
	return 0;
}

/* kvmclock: the guest's view of time since boot. Restoring the saved value
 * makes guest time stand still while the VM was saved, as its TSC does. */
int x86_clock_save(int vm_fd, struct state_writer *w)
{
	struct kvm_clock_data c;

	memset(&c, 0, sizeof(c));
	if (ioctl(vm_fd, KVM_GET_CLOCK, &c) < 0) {
		int err = -errno;

		log_err("state: KVM_GET_CLOCK: %s", strerror(errno));
		return err;
	}
	state_put_u64(w, c.clock);
	state_put_u32(w, c.flags);
	return state_writer_error(w);
}

int x86_clock_load(int vm_fd, struct state_reader *r, char *err, size_t errlen)
{
	struct kvm_clock_data c;

	memset(&c, 0, sizeof(c));
	c.clock = state_get_u64(r);
	(void)state_get_u32(r); /* flags at save time: informational */
	if (state_reader_error(r) || r->pos != r->len)
		return cpu_fail(err, errlen, "%zu bytes, expected 12", r->len);
	if (vm_fd >= 0 && ioctl(vm_fd, KVM_SET_CLOCK, &c) < 0) {
		snprintf(err, errlen, "KVM_SET_CLOCK: %s", strerror(errno));
		return -EINVAL;
	}
	return 0;
}
