/* fault.c: takes a deliberate exception so that the integration test can
 * check the failure path: the ring-0 handler must print the vector and
 * RIP, then end the VM with status 3 (debug-exit value 1).
 * kind=pf (page fault above 4 GiB, the default), gp (non-canonical
 * address), ud (a ud2 that is not a request), de (divide by zero).
 * Machine-level endings for the VMM's exit status: triple (triple fault),
 * reset (i8042 pulse reset line), cf9 (reset control register), poweroff
 * (PM1a control SLP_EN), unemulated (an instruction an emulating KVM
 * cannot run at CPL0 and cella does not emulate: the VM pauses there). */
#include "libtest.h"

TEST_PROGRAM("fault");

int main(int argc, char **argv)
{
	const char *kind = param_str("kind", "pf");
	printf("fault: taking a %s\n", kind);
	if (!strcmp(kind, "pf")) {
		(void)*(volatile uint32_t *)0x100000000ull;	/* not mapped */
	} else if (!strcmp(kind, "gp")) {
		(void)*(volatile uint32_t *)0x8000000000000000ull;
	} else if (!strcmp(kind, "ud")) {
		__asm__ volatile("xor %%eax, %%eax; ud2" ::: "eax");
	} else if (!strcmp(kind, "triple")) {
		ring0_request(REQ_TRIPLE_FAULT, 0, 0);
	} else if (!strcmp(kind, "unemulated")) {
		uint64_t v = ring0_request(REQ_UNEMULATED, 0, 0x12345678);
		printf("fault: crc32 ran in ring 0: %lx\n", v);
		exit(0);
	} else if (!strcmp(kind, "reset")) {
		outb(0x64, 0xFE);
	} else if (!strcmp(kind, "cf9")) {
		outb(0xCF9, 0x06);
	} else if (!strcmp(kind, "poweroff")) {
		outw(0x604, 0x2000);
	} else if (!strcmp(kind, "de")) {
		/* asm: the compiler turns 1 / x into x == 1 */
		__asm__ volatile("xor %%edx, %%edx; mov $1, %%eax; xor %%ecx, %%ecx; divl %%ecx" ::
					 : "eax", "ecx", "edx");
	}
	printf("fault: survived a %s\n", kind);
	return 1;
}
