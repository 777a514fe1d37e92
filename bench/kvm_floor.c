/* kvm_floor.c: the floor for exit round trips on this host: a bare VMM
 * whose guest does port I/O or an MMIO read in a tight loop, and a KVM_RUN
 * loop that does nothing but re-enter. Prints exits per second.
 *
 * Modes: pio0 / mmio0 run the loop in real mode (CPL0; emulated on hosts
 * without hardware virtualization); pio3 / mmio3 run it in 64-bit user mode
 * (CPL3), port I/O allowed through the TSS I/O bitmap, MMIO through a user
 * page that no memory slot backs.
 * Usage: kvm-floor pio0|mmio0|pio3|mmio3 [COUNT] */
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

#define MEM_SIZE  0x400000ULL  /* 4 MiB of RAM; 0x400000.. is unbacked */
#define PML4      0x2000
#define PDPT      0x3000
#define PD        0x4000
#define GDT       0x5000
#define TSS       0x6000
#define TSS_LIMIT (104 + 8192) /* TSS, then an all-zero I/O bitmap */
#define CODE      0x1000

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int dpl, int l)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = (uint8_t)dpl;
	s->s = 1;
	s->l = (uint8_t)l;
	s->db = l ? 0 : 1;
	s->g = 1;
}

/* Long mode, ring 3, identity map of the first 1 GiB with user 2 MiB pages. */
static void setup_user64(uint8_t *mem, int cpu)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE, .rflags = 2, .rsp = 0x1ff000 };
	uint64_t *pml4 = (uint64_t *)(mem + PML4), *pdpt = (uint64_t *)(mem + PDPT);
	uint64_t *pd = (uint64_t *)(mem + PD);

	pml4[0] = PDPT | 7;
	pdpt[0] = PD | 7;
	for (int i = 0; i < 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x87; /* present, rw, user, 2 MiB */
	/* TSS: I/O bitmap right after the 104-byte header, all ports allowed. */
	memset(mem + TSS, 0, TSS_LIMIT + 1);
	*(uint16_t *)(mem + TSS + 102) = 104;
	mem[TSS + 104 + 8192] = 0xff;
	ioctl(cpu, KVM_GET_SREGS, &sregs);
	seg(&sregs.cs, 0x33, 0xb, 3, 1);
	seg(&sregs.ds, 0x2b, 0x3, 3, 0);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.selector = 0x40;
	sregs.tr.base = TSS;
	sregs.tr.limit = TSS_LIMIT;
	sregs.tr.type = 0xb;
	sregs.tr.present = 1;
	sregs.gdt.base = GDT;
	sregs.gdt.limit = 0x7f;
	sregs.cr3 = PML4;
	sregs.cr4 = 0x20;           /* PAE */
	sregs.cr0 = 0x80000011;     /* PG, ET, PE */
	sregs.efer = 0x500;         /* LME, LMA */
	ioctl(cpu, KVM_SET_SREGS, &sregs);
	ioctl(cpu, KVM_SET_REGS, &regs);
}

static void setup_real(int cpu)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE, .rflags = 2 };

	ioctl(cpu, KVM_GET_SREGS, &sregs);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = MEM_SIZE; /* outside the memory slot: reads exit as MMIO */
	sregs.ds.selector = (uint16_t)(MEM_SIZE >> 4);
	ioctl(cpu, KVM_SET_SREGS, &sregs);
	ioctl(cpu, KVM_SET_REGS, &regs);
}

int main(int argc, char **argv)
{
	static const uint8_t pio_loop[] = { 0xe6, 0x80, 0xeb, 0xfc };       /* out %al,$0x80; jmp */
	static const uint8_t mmio_real[] = { 0xa0, 0x00, 0x00, 0xeb, 0xfb }; /* mov ds:0,%al; jmp */
	/* mov 0x400000,%eax (absolute 32-bit address); jmp back */
	static const uint8_t mmio_user[] = { 0x8b, 0x04, 0x25, 0x00, 0x00, 0x40, 0x00, 0xeb, 0xf7 };
	const char *mode = argc > 1 ? argv[1] : "pio0";
	long count = argc > 2 ? atol(argv[2]) : 20000;
	int mmio = !strncmp(mode, "mmio", 4), user = mode[strlen(mode) - 1] == '3';
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vmfd, cpu;
	struct kvm_userspace_memory_region region = { .memory_size = MEM_SIZE };
	struct kvm_run *run;
	uint8_t *mem;
	long exits = 0;
	double t0, t1;

	if (kvm < 0) {
		perror("/dev/kvm");
		return 77;
	}
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	region.userspace_addr = (uint64_t)(uintptr_t)mem;
	if (vmfd < 0 || ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		perror("KVM setup");
		return 1;
	}
	if (mmio)
		memcpy(mem + CODE, user ? mmio_user : mmio_real, user ? sizeof(mmio_user) : sizeof(mmio_real));
	else
		memcpy(mem + CODE, pio_loop, sizeof(pio_loop));
	cpu = ioctl(vmfd, KVM_CREATE_VCPU, 0);
	run = mmap(NULL, (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE,
		   MAP_SHARED, cpu, 0);
	if (user)
		setup_user64(mem, cpu);
	else
		setup_real(cpu);
	t0 = now();
	while (exits < count) {
		if (ioctl(cpu, KVM_RUN, 0) < 0) {
			perror("KVM_RUN");
			return 1;
		}
		if (run->exit_reason != (unsigned)(mmio ? KVM_EXIT_MMIO : KVM_EXIT_IO)) {
			fprintf(stderr, "kvm-floor %s: unexpected exit %u\n", mode, run->exit_reason);
			return 1;
		}
		exits++;
	}
	t1 = now();
	printf("kvm-floor %s: %ld exits in %.3f s: %.0f exits/s, %.2f us each\n", mode, exits,
	       t1 - t0, (double)exits / (t1 - t0), (t1 - t0) * 1e6 / (double)exits);
	return 0;
}
