/* kvm_floor.c: the floor for exit round trips on this host: a bare VMM whose
 * real-mode guest does `out` (or an MMIO read) in a tight loop, and a
 * KVM_RUN loop that does nothing but re-enter. Prints exits per second.
 * Usage: kvm-floor pio|mmio [COUNT] */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	static const uint8_t pio_loop[] = { 0xe6, 0x80, 0xeb, 0xfc };       /* out %al,$0x80; jmp */
	static const uint8_t mmio_loop[] = { 0xa0, 0x00, 0x00, 0xeb, 0xfb }; /* mov ds:0,%al; jmp */
	int mmio = argc > 1 && !strcmp(argv[1], "mmio");
	long count = argc > 2 ? atol(argv[2]) : 20000;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vmfd, cpu;
	struct kvm_userspace_memory_region region = { .memory_size = 0x10000 };
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
	struct kvm_run *run;
	uint8_t *mem;
	long exits = 0;
	double t0, t1;

	if (kvm < 0) {
		perror("/dev/kvm");
		return 77;
	}
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	region.userspace_addr = (uint64_t)(uintptr_t)mem;
	if (vmfd < 0 || ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		perror("KVM setup");
		return 1;
	}
	memcpy(mem + 0x1000, mmio ? mmio_loop : pio_loop, mmio ? sizeof(mmio_loop) : sizeof(pio_loop));
	cpu = ioctl(vmfd, KVM_CREATE_VCPU, 0);
	run = mmap(NULL, (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE,
		   MAP_SHARED, cpu, 0);
	ioctl(cpu, KVM_GET_SREGS, &sregs);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0x10000; /* outside the memory slot: reads exit as MMIO */
	sregs.ds.selector = 0x1000;
	ioctl(cpu, KVM_SET_SREGS, &sregs);
	ioctl(cpu, KVM_SET_REGS, &regs);
	t0 = now();
	while (exits < count) {
		if (ioctl(cpu, KVM_RUN, 0) < 0) {
			perror("KVM_RUN");
			return 1;
		}
		if (run->exit_reason != (mmio ? KVM_EXIT_MMIO : KVM_EXIT_IO)) {
			fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
			return 1;
		}
		exits++;
	}
	t1 = now();
	printf("kvm-floor %s: %ld exits in %.3f s: %.0f exits/s, %.2f us each\n",
	       mmio ? "mmio" : "pio", exits, t1 - t0, (double)exits / (t1 - t0),
	       (t1 - t0) * 1e6 / (double)exits);
	return 0;
}
