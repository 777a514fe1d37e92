/* emul_mmu.c: guest linear memory for the emulation fallback: the x86 page
 * walk (no paging, 32-bit, PAE, 4- and 5-level) with its permission checks,
 * and reads/writes split at page boundaries, each physical piece reached
 * through guest_mem_ptr(). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/emul/emul.h"

#define PTE_P   (1ull << 0)
#define PTE_RW  (1ull << 1)
#define PTE_US  (1ull << 2)
#define PTE_A   (1ull << 5)
#define PTE_D   (1ull << 6)
#define PTE_PS  (1ull << 7)
#define PTE_NX  (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull

#define PFEC_P    (1u << 0)
#define PFEC_W    (1u << 1)
#define PFEC_U    (1u << 2)
#define PFEC_RSVD (1u << 3)
#define PFEC_I    (1u << 4)

#define PAGE_SIZE 4096ull

unsigned emul_cpl(const struct emul_state *st)
{
	if (!(st->cr0 & EMUL_CR0_PE))
		return 0;
	if (st->rflags & EMUL_RFLAGS_VM)
		return 3;
	/* KVM takes the CPL from SS.DPL; CS.DPL differs only for conforming code. */
	return st->ss.dpl & 3;
}

static int raise_pf(struct emul_state *st, uint64_t lin, uint32_t ec)
{
	st->cr2 = lin;
	st->exc.vector = EMUL_VEC_PF;
	st->exc.has_error_code = true;
	st->exc.error_code = ec;
	return 1;
}

/* Read one paging-structure entry (4 or 8 bytes) at gpa. */
static int read_entry(const struct emul_ctx *ctx, uint64_t gpa, unsigned size, uint64_t *e,
		      void **host, char *why, size_t whylen)
{
	void *p = guest_mem_ptr(ctx->mem, gpa, size);

	if (!p) {
		snprintf(why, whylen, "page-table entry at gpa 0x%llx is outside guest RAM",
			 (unsigned long long)gpa);
		return -EFAULT;
	}
	if (size == 8)
		*e = __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
	else
		*e = __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
	*host = p;
	return 0;
}

static void set_bits(void *host, unsigned size, uint64_t bits)
{
	if (size == 8)
		__atomic_fetch_or((uint64_t *)host, bits, __ATOMIC_RELAXED);
	else
		__atomic_fetch_or((uint32_t *)host, (uint32_t)bits, __ATOMIC_RELAXED);
}

int emul_translate(const struct emul_ctx *ctx, struct emul_state *st, uint64_t lin,
		   enum emul_access acc, uint64_t *gpa, char *why, size_t whylen)
{
	bool lma = st->efer & EMUL_EFER_LMA;
	bool user = emul_cpl(st) == 3;
	bool write = acc == EMUL_WRITE, fetch = acc == EMUL_FETCH;
	bool nxe = (st->efer & EMUL_EFER_NXE) != 0;
	unsigned levels, esize, bits_per_level;
	uint64_t table, e = 0, page_mask = PAGE_SIZE - 1;
	void *hosts[5];
	unsigned nhosts = 0;
	bool rw = true, us = true, nx = false;
	uint32_t ec;

	if (!(st->cr0 & EMUL_CR0_PG)) {
		*gpa = lma ? lin : (lin & 0xffffffffull);
		return 0;
	}
	if (lma) {
		levels = (st->cr4 & EMUL_CR4_LA57) ? 5 : 4;
		esize = 8;
		bits_per_level = 9;
		table = st->cr3 & PTE_ADDR;
	} else if (st->cr4 & EMUL_CR4_PAE) {
		levels = 3;
		esize = 8;
		bits_per_level = 9;
		lin &= 0xffffffffull;
		table = st->cr3 & 0xffffffe0ull;
	} else {
		levels = 2;
		esize = 4;
		bits_per_level = 10;
		lin &= 0xffffffffull;
		table = st->cr3 & 0xfffff000ull;
	}
	ec = (write ? PFEC_W : 0) | (user ? PFEC_U : 0) |
	     (fetch && (nxe || (st->cr4 & EMUL_CR4_SMEP)) ? PFEC_I : 0);

	for (unsigned level = levels; level >= 1; level--) {
		unsigned shift = 12 + bits_per_level * (level - 1);
		uint64_t idx;
		bool pae_top = !lma && esize == 8 && level == 3;
		int ret;

		idx = pae_top ? (lin >> 30) & 3 : (lin >> shift) & ((1ull << bits_per_level) - 1);
		ret = read_entry(ctx, table + idx * esize, esize, &e, &hosts[nhosts], why, whylen);
		if (ret)
			return ret;
		nhosts++;
		if (!(e & PTE_P))
			return raise_pf(st, lin, ec);
		if (pae_top) {
			/* PAE PDPTEs carry no permission bits. */
			table = e & PTE_ADDR;
			continue;
		}
		rw &= (e & PTE_RW) != 0;
		us &= (e & PTE_US) != 0;
		if (esize == 8 && (e & PTE_NX)) {
			if (!nxe)
				return raise_pf(st, lin, ec | PFEC_P | PFEC_RSVD);
			nx = true;
		}
		if (level == 1)
			break;
		if (e & PTE_PS) {
			bool allowed = level == 2 ? (esize == 8 || (st->cr4 & EMUL_CR4_PSE))
						  : (level == 3 && lma);

			if (!allowed)
				return raise_pf(st, lin, ec | PFEC_P | PFEC_RSVD);
			page_mask = (1ull << shift) - 1;
			break;
		}
		table = (esize == 8 ? e : (e & 0xffffffffull)) & PTE_ADDR;
	}

	/* Permissions, as the SDM's "Access Rights" section puts them. */
	if (user && !us)
		return raise_pf(st, lin, ec | PFEC_P);
	if (write && !rw && (user || (st->cr0 & EMUL_CR0_WP)))
		return raise_pf(st, lin, ec | PFEC_P);
	if (fetch && nx)
		return raise_pf(st, lin, ec | PFEC_P);
	if (!user && us && fetch && (st->cr4 & EMUL_CR4_SMEP))
		return raise_pf(st, lin, ec | PFEC_P);
	if (!user && us && !fetch && (st->cr4 & EMUL_CR4_SMAP) && !(st->rflags & EMUL_RFLAGS_AC))
		return raise_pf(st, lin, ec | PFEC_P);

	for (unsigned i = 0; i < nhosts; i++) {
		set_bits(hosts[i], esize, PTE_A | (write && i == nhosts - 1 ? PTE_D : 0));
		guest_mem_mark_dirty_host(ctx->mem, hosts[i], esize); /* live migration */
	}
	if (esize == 4 && page_mask != PAGE_SIZE - 1) {
		/* 4 MiB page: bits 13-20 of the PDE hold physical bits 32-39 (PSE-36). */
		*gpa = (e & 0xffc00000ull) | (((e >> 13) & 0xffull) << 32) | (lin & page_mask);
	} else {
		*gpa = ((esize == 8 ? e : (e & 0xffffffffull)) & PTE_ADDR & ~page_mask) |
		       (lin & page_mask);
	}
	return 0;
}

/* Linear address of the next piece: wraps at 4 GiB outside long mode. */
static uint64_t lin_add(const struct emul_state *st, uint64_t lin, uint64_t n)
{
	uint64_t r = lin + n;

	return (st->efer & EMUL_EFER_LMA) ? r : (r & 0xffffffffull);
}

static void *piece_ptr(const struct emul_ctx *ctx, uint64_t gpa, size_t n, uint64_t lin,
		       char *why, size_t whylen)
{
	void *p = guest_mem_ptr(ctx->mem, gpa, n);

	if (!p)
		snprintf(why, whylen,
			 "operand at linear 0x%llx (gpa 0x%llx) is outside guest RAM (MMIO?)",
			 (unsigned long long)lin, (unsigned long long)gpa);
	return p;
}

int emul_mem_read(const struct emul_ctx *ctx, struct emul_state *st, uint64_t lin, void *buf,
		  size_t len, enum emul_access acc, char *why, size_t whylen)
{
	uint8_t *out = buf;

	while (len) {
		size_t n = MIN(len, PAGE_SIZE - (lin & (PAGE_SIZE - 1)));
		uint64_t gpa;
		void *p;
		int ret = emul_translate(ctx, st, lin, acc, &gpa, why, whylen);

		if (ret)
			return ret;
		p = piece_ptr(ctx, gpa, n, lin, why, whylen);
		if (!p)
			return -EFAULT;
		memcpy(out, p, n);
		out += n;
		len -= n;
		lin = lin_add(st, lin, n);
	}
	return 0;
}

int emul_mem_write(const struct emul_ctx *ctx, struct emul_state *st, uint64_t lin,
		   const void *buf, size_t len, char *why, size_t whylen)
{
	/* At most 4 KiB is written (an XSAVE component), so at most two pieces. */
	void *ptr[2];
	size_t sz[2];
	unsigned n = 0;
	uint64_t l = lin;
	size_t left = len;
	const uint8_t *in = buf;

	while (left) {
		size_t k = MIN(left, PAGE_SIZE - (l & (PAGE_SIZE - 1)));
		uint64_t gpa;
		int ret;

		if (n == ARRAY_SIZE(ptr)) {
			snprintf(why, whylen, "write of %zu bytes is too long", len);
			return -EINVAL;
		}
		ret = emul_translate(ctx, st, l, EMUL_WRITE, &gpa, why, whylen);
		if (ret)
			return ret;
		ptr[n] = piece_ptr(ctx, gpa, k, l, why, whylen);
		if (!ptr[n])
			return -EFAULT;
		sz[n++] = k;
		left -= k;
		l = lin_add(st, l, k);
	}
	for (unsigned i = 0; i < n; i++) {
		memcpy(ptr[i], in, sz[i]);
		guest_mem_mark_dirty_host(ctx->mem, ptr[i], sz[i]); /* live migration */
		in += sz[i];
	}
	return 0;
}
