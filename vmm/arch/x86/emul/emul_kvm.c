/* emul_kvm.c: the KVM side of the emulation fallback: vCPU registers into
 * struct emul_state and back (KVM_GET/SET_REGS, SREGS; MXCSR and XMM0-15
 * through KVM_GET/SET_XSAVE, or KVM_GET/SET_FPU where XSAVE is not offered), and
 * exception injection with KVM_SET_VCPU_EVENTS. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "arch/x86/emul/emul.h"

static void seg_from_kvm(struct emul_seg *s, const struct kvm_segment *k)
{
	s->base = k->base;
	s->limit = k->limit;
	s->selector = k->selector;
	s->type = k->type;
	s->present = k->present;
	s->dpl = k->dpl;
	s->db = k->db;
	s->s = k->s;
	s->l = k->l;
	s->g = k->g;
	s->unusable = k->unusable;
}

static void state_from_kvm(struct emul_state *st, const struct kvm_regs *r,
			   const struct kvm_sregs *s)
{
	memset(st, 0, sizeof(*st));
	st->gpr[0] = r->rax;
	st->gpr[1] = r->rcx;
	st->gpr[2] = r->rdx;
	st->gpr[3] = r->rbx;
	st->gpr[4] = r->rsp;
	st->gpr[5] = r->rbp;
	st->gpr[6] = r->rsi;
	st->gpr[7] = r->rdi;
	st->gpr[8] = r->r8;
	st->gpr[9] = r->r9;
	st->gpr[10] = r->r10;
	st->gpr[11] = r->r11;
	st->gpr[12] = r->r12;
	st->gpr[13] = r->r13;
	st->gpr[14] = r->r14;
	st->gpr[15] = r->r15;
	st->rip = r->rip;
	st->rflags = r->rflags;
	st->cr0 = s->cr0;
	st->cr2 = s->cr2;
	st->cr3 = s->cr3;
	st->cr4 = s->cr4;
	st->efer = s->efer;
	seg_from_kvm(&st->cs, &s->cs);
	seg_from_kvm(&st->ds, &s->ds);
	seg_from_kvm(&st->es, &s->es);
	seg_from_kvm(&st->fs, &s->fs);
	seg_from_kvm(&st->gs, &s->gs);
	seg_from_kvm(&st->ss, &s->ss);
}

/* MXCSR lives at byte 24 of the legacy region of the XSAVE image. */
#define XSAVE_MXCSR_OFF 24
#define XSAVE_XMM_OFF 160
#define XSAVE_XSTATE_BV_OFF 512
#define XFEATURE_MASK_SSE 2ull

/* The vCPU's MXCSR and XMM registers. KVM_GET_FPU is not enough: measured
 * on this project's emulating KVM, its mxcsr reads 0 and KVM_SET_FPU leaves
 * MXCSR alone, while KVM_GET/SET_XSAVE carry it. So XSAVE first, the FPU
 * ioctls as a fallback. */
static int sse_get(int vcpu_fd, struct kvm_xsave *xs, bool *use_xsave, struct emul_state *st)
{
	struct kvm_fpu fpu;

	if (ioctl(vcpu_fd, KVM_GET_XSAVE, xs) == 0) {
		const uint8_t *img = (const uint8_t *)xs->region;
		uint64_t bv;

		memcpy(&st->mxcsr, img + XSAVE_MXCSR_OFF, 4);
		memcpy(&bv, img + XSAVE_XSTATE_BV_OFF, 8);
		/* SSE in its initial state: the registers are zero, whatever
		 * the image holds there. */
		if (bv & XFEATURE_MASK_SSE)
			memcpy(st->xmm, img + XSAVE_XMM_OFF, sizeof(st->xmm));
		*use_xsave = true;
		return 0;
	}
	*use_xsave = false;
	if (ioctl(vcpu_fd, KVM_GET_FPU, &fpu) < 0)
		return -1;
	st->mxcsr = fpu.mxcsr;
	memcpy(st->xmm, fpu.xmm, sizeof(st->xmm));
	return 0;
}

static int sse_set(int vcpu_fd, struct kvm_xsave *xs, bool use_xsave,
		   const struct emul_state *st)
{
	struct kvm_fpu fpu;

	if (use_xsave) {
		uint8_t *img = (uint8_t *)xs->region;
		uint64_t bv;

		/* XRSTOR semantics: MXCSR and the XMM registers are taken when
		 * SSE is requested; with the SSE bit set, both must be current. */
		memcpy(img + XSAVE_MXCSR_OFF, &st->mxcsr, 4);
		memcpy(img + XSAVE_XMM_OFF, st->xmm, sizeof(st->xmm));
		memcpy(&bv, img + XSAVE_XSTATE_BV_OFF, 8);
		bv |= XFEATURE_MASK_SSE;
		memcpy(img + XSAVE_XSTATE_BV_OFF, &bv, 8);
		return ioctl(vcpu_fd, KVM_SET_XSAVE, xs);
	}
	if (ioctl(vcpu_fd, KVM_GET_FPU, &fpu) < 0)
		return -1;
	fpu.mxcsr = st->mxcsr;
	memcpy(fpu.xmm, st->xmm, sizeof(fpu.xmm));
	return ioctl(vcpu_fd, KVM_SET_FPU, &fpu);
}

static void regs_to_kvm(const struct emul_state *st, struct kvm_regs *r)
{
	r->rax = st->gpr[0];
	r->rcx = st->gpr[1];
	r->rdx = st->gpr[2];
	r->rbx = st->gpr[3];
	r->rsp = st->gpr[4];
	r->rbp = st->gpr[5];
	r->rsi = st->gpr[6];
	r->rdi = st->gpr[7];
	r->r8 = st->gpr[8];
	r->r9 = st->gpr[9];
	r->r10 = st->gpr[10];
	r->r11 = st->gpr[11];
	r->r12 = st->gpr[12];
	r->r13 = st->gpr[13];
	r->r14 = st->gpr[14];
	r->r15 = st->gpr[15];
	r->rip = st->rip;
	r->rflags = st->rflags;
}

/* Carry out the SSE instructions that follow one just emulated, while they
 * come (KVM would stop on each; ~100-150 us a round trip on this project's
 * loaded host), with the movzx loads that table-driven SIMD code puts
 * between them (BLAKE2s: movzx, movd, movzx, movd, ..., then the round's
 * arithmetic). A fault or any other instruction ends the run before it,
 * with nothing of it done: KVM then runs it or fails on it anew. */
static void sse_run(struct emul_ctx *ctx, struct emul_state *st, struct emul_report *rep)
{
	bool xmm_dirty = st->xmm_dirty;
	struct emul_report next;

	st->only_kinds = (1u << EMUL_KIND_SSE) | (1u << EMUL_KIND_SSE_ALU) | (1u << EMUL_KIND_MOVZX);
	while (rep->retired < EMUL_KVM_RUN_MAX) {
		struct emul_state before = *st;

		if (emul_step(ctx, st, &next) != EMUL_DONE) {
			*st = before;
			break;
		}
		xmm_dirty |= st->xmm_dirty;
		rep->retired++;
	}
	st->only_kinds = 0;
	st->xmm_dirty = xmm_dirty;
}

static int fail(struct emul_report *rep, const char *what)
{
	int err = errno;

	snprintf(rep->why, sizeof(rep->why), "%s: %s", what, strerror(err));
	return -err;
}

int emul_kvm_handle(struct emul_ctx *ctx, int vcpu_fd, struct emul_report *rep)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xs; /* 4 KiB: on the vCPU thread's stack */
	struct emul_state st;
	enum emul_status r;
	bool use_xsave;

	memset(rep, 0, sizeof(*rep));
	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0)
		return fail(rep, "KVM_GET_REGS");
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return fail(rep, "KVM_GET_SREGS");
	state_from_kvm(&st, &regs, &sregs);
	if (sse_get(vcpu_fd, &xs, &use_xsave, &st) < 0)
		return fail(rep, "KVM_GET_XSAVE/KVM_GET_FPU");
	if (use_xsave) {
		struct kvm_xcrs xcrs;

		memset(&xcrs, 0, sizeof(xcrs));
		if (ioctl(vcpu_fd, KVM_GET_XCRS, &xcrs) == 0) {
			for (uint32_t i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++)
				if (xcrs.xcrs[i].xcr == 0)
					st.xcr0 = xcrs.xcrs[i].value;
			st.xsave = (uint8_t *)xs.region;
			st.xsave_len = sizeof(xs.region);
		}
	}
	r = emul_step(ctx, &st, rep);
	if (r == EMUL_UNHANDLED)
		return r;
	rep->retired = 1;
	if (r == EMUL_DONE && (rep->kind == EMUL_KIND_SSE || rep->kind == EMUL_KIND_SSE_ALU))
		sse_run(ctx, &st, rep);

	regs_to_kvm(&st, &regs);
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return fail(rep, "KVM_SET_REGS");
	if (st.xsave_dirty) {
		/* xrstor: the whole image, MXCSR in it. */
		if (ioctl(vcpu_fd, KVM_SET_XSAVE, &xs) < 0)
			return fail(rep, "KVM_SET_XSAVE");
	} else if ((st.mxcsr_dirty || st.xmm_dirty) && sse_set(vcpu_fd, &xs, use_xsave, &st) < 0) {
		return fail(rep, use_xsave ? "KVM_SET_XSAVE" : "KVM_SET_FPU");
	}
	if (r == EMUL_EXCEPTION) {
		struct kvm_vcpu_events ev;

		if (st.exc.vector == EMUL_VEC_PF && st.cr2 != sregs.cr2) {
			/* Without KVM_CAP_EXCEPTION_PAYLOAD, CR2 is set before injecting. */
			sregs.cr2 = st.cr2;
			if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
				return fail(rep, "KVM_SET_SREGS");
		}
		if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
			return fail(rep, "KVM_GET_VCPU_EVENTS");
		ev.exception.injected = 1;
		ev.exception.pending = 0;
		ev.exception.nr = st.exc.vector;
		ev.exception.has_error_code = st.exc.has_error_code;
		ev.exception.error_code = st.exc.error_code;
		/* Leave NMI, SIPI and SMM state as KVM has them. */
		ev.flags &= ~(uint32_t)(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
				       KVM_VCPUEVENT_VALID_SMM);
		if (ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
			return fail(rep, "KVM_SET_VCPU_EVENTS");
	}
	return r;
}
