/* regs.c: initial vCPU state: boot GDT and identity page tables in guest
 * memory, segment/control registers for PVH or 64-bit Linux entry, FPU
 * defaults, and the local APIC's LINT0/LINT1 delivery modes. */
#include <errno.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"
#include "log.h"

#define X86_CR0_PE  0x1ULL
#define X86_CR0_MP  0x2ULL
#define X86_CR0_ET  0x10ULL
#define X86_CR0_NE  0x20ULL
#define X86_CR0_PG  0x80000000ULL
#define X86_CR4_PAE 0x20ULL
#define EFER_LME    0x100ULL
#define EFER_LMA    0x400ULL

/* Descriptor flags as in the GDT entry's bytes 5-6: G, D/B, L, P, DPL, S, type. */
#define GDT_CODE32 0xc09b /* G, D, P, S, execute/read, accessed */
#define GDT_CODE64 0xa09b /* G, L, P, S, execute/read, accessed */
#define GDT_DATA   0xc093 /* G, B, P, S, read/write, accessed */
#define GDT_TSS    0x008b /* P, busy 32/64-bit TSS */
#define TSS_LIMIT  0x67

#define PTE_P  0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL

/* Local APIC register offsets and delivery modes (SDM vol. 3, 10.5.1). */
#define APIC_LVT0        0x350
#define APIC_LVT1        0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

#define FPU_FCW_DEFAULT 0x37f
#define MXCSR_DEFAULT   0x1f80

uint64_t x86_gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

static void gdt_to_segment(uint64_t e, uint16_t selector, struct kvm_segment *s)
{
	uint32_t limit = (uint32_t)((e & 0xffff) | ((e >> 32) & 0xf0000));

	s->base = ((e >> 16) & 0xffffff) | ((e >> 32) & 0xff000000);
	s->g = (e >> 55) & 1;
	s->limit = s->g ? (limit << 12) | 0xfff : limit;
	s->selector = selector;
	s->type = (e >> 40) & 0xf;
	s->s = (e >> 44) & 1;
	s->dpl = (e >> 45) & 3;
	s->present = (e >> 47) & 1;
	s->avl = (e >> 52) & 1;
	s->l = (e >> 53) & 1;
	s->db = (e >> 54) & 1;
	s->unusable = !s->present;
	s->padding = 0;
}

static void boot_gdt(enum x86_boot_mode mode, uint64_t gdt[X86_GDT_ENTRIES])
{
	memset(gdt, 0, X86_GDT_ENTRIES * sizeof(gdt[0]));
	gdt[X86_SEL_CODE / 8] =
	    x86_gdt_entry(mode == X86_BOOT_LINUX64 ? GDT_CODE64 : GDT_CODE32, 0, 0xfffff);
	gdt[X86_SEL_DATA / 8] = x86_gdt_entry(GDT_DATA, 0, 0xfffff);
	/* A 64-bit TSS descriptor takes two slots; the upper one stays 0. */
	gdt[X86_SEL_TSS / 8] = x86_gdt_entry(GDT_TSS, 0, TSS_LIMIT);
}

int x86_write_boot_tables(struct guest_mem *mem, const struct x86_boot_info *bi)
{
	uint64_t gdt[X86_GDT_ENTRIES];
	uint8_t page[4096];

	boot_gdt(bi->mode, gdt);
	for (unsigned i = 0; i < X86_GDT_ENTRIES; i++) {
		uint8_t e[8];

		le64_put(e, gdt[i]);
		if (guest_mem_write(mem, X86_BOOT_GDT_ADDR + i * 8, e, sizeof(e)))
			return -EFAULT;
	}
	if (bi->mode != X86_BOOT_LINUX64)
		return 0;

	/* Identity map 0-4 GiB: one PML4 entry, four PDPT entries, each PD
	 * filled with 2 MiB pages (1 GiB pages fail on some hosts). */
	memset(page, 0, sizeof(page));
	le64_put(page, X86_PDPT_ADDR | PTE_P | PTE_RW);
	if (guest_mem_write(mem, X86_PML4_ADDR, page, sizeof(page)))
		return -EFAULT;
	memset(page, 0, sizeof(page));
	for (unsigned i = 0; i < 4; i++)
		le64_put(page + i * 8, (X86_PD_ADDR + i * 0x1000ULL) | PTE_P | PTE_RW);
	if (guest_mem_write(mem, X86_PDPT_ADDR, page, sizeof(page)))
		return -EFAULT;
	for (unsigned i = 0; i < 4; i++) {
		for (unsigned j = 0; j < 512; j++)
			le64_put(page + j * 8,
			         ((uint64_t)(i * 512 + j) << 21) | PTE_P | PTE_RW | PTE_PS);
		if (guest_mem_write(mem, X86_PD_ADDR + i * 0x1000ULL, page, sizeof(page)))
			return -EFAULT;
	}
	return 0;
}

static int setup_sregs(int vcpu_fd, const struct x86_boot_info *bi)
{
	struct kvm_sregs sregs;
	uint64_t gdt[X86_GDT_ENTRIES];

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	boot_gdt(bi->mode, gdt);
	sregs.gdt.base = X86_BOOT_GDT_ADDR;
	sregs.gdt.limit = sizeof(gdt) - 1;
	/* No IDT: the kernel installs its own before enabling interrupts. */
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	gdt_to_segment(gdt[X86_SEL_CODE / 8], X86_SEL_CODE, &sregs.cs);
	gdt_to_segment(gdt[X86_SEL_DATA / 8], X86_SEL_DATA, &sregs.ds);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	gdt_to_segment(gdt[X86_SEL_TSS / 8], X86_SEL_TSS, &sregs.tr);

	if (bi->mode != X86_BOOT_LINUX64) {
		/* Xen PVH ABI, boot.rst's 32-bit boot protocol, multiboot:
		 * 32-bit protected mode, flat segments 0x10/0x18, paging off. */
		sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
	} else {
		/* boot.rst, 64-bit boot protocol: long mode, paging on, the
		 * kernel, zero page and command line identity-mapped. */
		sregs.cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
		sregs.cr3 = X86_PML4_ADDR;
		sregs.cr4 = X86_CR4_PAE;
		sregs.efer = EFER_LME | EFER_LMA;
	}
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	return 0;
}

static int setup_regs(int vcpu_fd, const struct x86_boot_info *bi)
{
	struct kvm_regs regs;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2; /* reserved bit 1; interrupts off */
	regs.rip = bi->entry;
	regs.rsp = X86_BOOT_STACK_TOP;
	/* The 32-bit protocol also wants EBP, EDI and EBX zero: they are. */
	if (bi->mode == X86_BOOT_PVH) {
		regs.rbx = bi->boot_arg;
	} else if (bi->mode == X86_BOOT_MULTIBOOT) {
		regs.rax = X86_MULTIBOOT_MAGIC; /* multiboot 3.2, machine state */
		regs.rbx = bi->boot_arg;
	} else {
		regs.rsi = bi->boot_arg;
	}
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

static int setup_fpu(int vcpu_fd)
{
	struct kvm_fpu fpu;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = FPU_FCW_DEFAULT;
	fpu.mxcsr = MXCSR_DEFAULT;
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}

static uint32_t lvt_with_mode(uint32_t lvt, uint32_t mode)
{
	return (lvt & ~0x700u) | (mode << 8);
}

/* LINT0 ExtINT, LINT1 NMI (PC virtual wire). Mask bits stay as KVM reset
 * them: KVM unmasks LINT0 on the BSP only, so the PIC reaches CPU 0 until
 * the guest switches to the IOAPIC. */
static int setup_lapic(int vcpu_fd)
{
	struct kvm_lapic_state lapic;
	uint8_t *regs = (uint8_t *)lapic.regs;

	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) < 0) {
		if (errno == ENXIO || errno == EINVAL) {
			/* No in-kernel irqchip (only in tests): nothing to program. */
			log_debug("no in-kernel local APIC; LINT0/LINT1 left alone");
			return 0;
		}
		return -errno;
	}
	le32_put(regs + APIC_LVT0, lvt_with_mode(le32_get(regs + APIC_LVT0), APIC_MODE_EXTINT));
	le32_put(regs + APIC_LVT1, lvt_with_mode(le32_get(regs + APIC_LVT1), APIC_MODE_NMI));
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

int x86_setup_vcpu_regs(int vcpu_fd, unsigned index, const struct x86_boot_info *bi,
                        struct guest_mem *mem)
{
	int ret;

	ret = setup_fpu(vcpu_fd);
	if (!ret)
		ret = setup_lapic(vcpu_fd);
	if (ret || index > 0)
		return ret; /* APs wait for INIT/SIPI in their reset state */
	if (bi->mode != X86_BOOT_PVH && bi->mode != X86_BOOT_LINUX64 &&
	    bi->mode != X86_BOOT_LINUX32 && bi->mode != X86_BOOT_MULTIBOOT)
		return -EINVAL;
	ret = x86_write_boot_tables(mem, bi);
	if (!ret)
		ret = setup_sregs(vcpu_fd, bi);
	if (!ret)
		ret = setup_regs(vcpu_fd, bi);
	return ret;
}
