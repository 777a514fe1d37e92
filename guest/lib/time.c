/* time.c: TSC frequency discovery and busy waits. */
#include "libtest.h"

static uint64_t cached_hz;

#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)

struct pvclock_vcpu_time_info {
	uint32_t version;
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
};

/* KVM publishes the TSC->ns scale in its pvclock page: enable it once,
 * read the scale and turn it off again (two ring-0 requests). */
static uint64_t kvmclock_tsc_hz(void)
{
	static volatile struct pvclock_vcpu_time_info pv __attribute__((aligned(64)));
	uint32_t r[4];
	cpuid(0x40000000, 0, r);
	if (r[1] != 0x4b4d564b || r[2] != 0x564b4d56 || r[3] != 0x4d || r[0] < 0x40000001)
		return 0;
	cpuid(0x40000001, 0, r);
	if (!(r[0] & KVM_FEATURE_CLOCKSOURCE2))
		return 0;
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)(uintptr_t)&pv | 1);
	uint32_t mul = pv.tsc_to_system_mul;
	int8_t shift = pv.tsc_shift;
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
	if (!mul)
		return 0;
	/* ns = ((tsc << shift) * mul) >> 32, so hz = 1e9 * 2^32 / (mul << shift) */
	uint64_t hz = (1000000000ull << 32) / mul;
	return shift >= 0 ? hz >> shift : hz << -shift;
}

uint64_t tsc_hz(void)
{
	uint32_t r[4];
	if (cached_hz)
		return cached_hz;
	cached_hz = kvmclock_tsc_hz();
	if (cached_hz)
		return cached_hz;
	cpuid(0, 0, r);
	uint32_t max = r[0];
	if (max >= 0x15) {
		cpuid(0x15, 0, r);
		if (r[0] && r[1] && r[2])
			cached_hz = (uint64_t)r[2] * r[1] / r[0];
	}
	if (!cached_hz && max >= 0x16) {
		cpuid(0x16, 0, r);
		if (r[0])
			cached_hz = (uint64_t)(r[0] & 0xFFFF) * 1000000;
	}
	if (!cached_hz) {
		/* Hypervisor timing leaf (VMware convention, KVM and others). */
		cpuid(0x40000000, 0, r);
		if (r[0] >= 0x40000010 && r[0] < 0x40000100) {
			cpuid(0x40000010, 0, r);
			if (r[0])
				cached_hz = (uint64_t)r[0] * 1000;
		}
	}
	if (!cached_hz || cached_hz < 100000000ull)
		cached_hz = 2000000000ull;
	return cached_hz;
}

void delay_us(uint64_t us)
{
	uint64_t end = rdtsc() + tsc_hz() / 1000000 * us;
	while ((int64_t)(rdtsc() - end) < 0)
		cpu_relax();
}
