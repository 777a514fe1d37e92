/* teardown.c: the KVM VM's kernel-side teardown, off the worker's exit path.
 *
 * Destroying a VM with an in-kernel irqchip waits for RCU grace periods
 * (14-30 ms measured on the development host). The worker hands that to
 * the kernel: before the sandbox, it registers the KVM descriptors (system,
 * VM, vCPUs) as fixed files of an io_uring that allows nothing else (no
 * operation, no further registration). When the worker exits, the ring is
 * freed by a kernel worker thread, whose last fput of the VM file runs
 * deferred: the process is gone (and its exit status known) without waiting.
 *
 * The older way, a forked child holding the descriptors until the worker
 * has gone, stays as the fallback (io_uring disabled on the host). It does
 * not help a worker that is PID 1 of its own PID namespace (as under
 * cellad): the kernel kills the rest of a namespace when its init exits,
 * and the init's exit waits for them, KVM teardown included (measured
 * under unshare --pid --fork, bench/worker_exit.py: 14 ms median from the
 * exit to the parent's wait with the child, under 1 ms with the ring).
 */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>


int vm_prepare_kernel_teardown(struct vm *vm)
{
	struct io_uring_params p = { .flags = IORING_SETUP_R_DISABLED };
	/* Refuses every SQE (no operation allowed) and every registration. */
	struct io_uring_restriction none = { .opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED,
					     .sqe_flags = IOSQE_FIXED_FILE };
	int fds[CONFIG_MAX_CPUS + 3];
	unsigned n = 0;
	int ring, ret;

	if (vm->vm_fd < 0 || vm->teardown_ring >= 0)
		return 0;
	fds[n++] = vm->kvm_fd;
	fds[n++] = vm->vm_fd;
	if (vm->unused_vm_fd >= 0)
		fds[n++] = vm->unused_vm_fd;
	for (unsigned i = 0; i < vm->nr_vcpus && n < ARRAY_SIZE(fds); i++)
		fds[n++] = vm->vcpus[i].fd;
	/* No SQ/CQ mapping: nothing is ever submitted. */
	ring = (int)syscall(SYS_io_uring_setup, 1, &p);
	if (ring < 0)
		return -errno;
	if (syscall(SYS_io_uring_register, ring, IORING_REGISTER_FILES, fds, n) < 0 ||
	    syscall(SYS_io_uring_register, ring, IORING_REGISTER_RESTRICTIONS, &none, 1) < 0 ||
	    syscall(SYS_io_uring_register, ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) {
		ret = -errno;
		close(ring);
		return ret;
	}
	(void)fcntl(ring, F_SETFD, FD_CLOEXEC);
	vm->teardown_ring = ring;
	return 0;
}

/* Without the ring: a child that holds only the KVM descriptors and closes
 * them once this process has exited (it waits on a pipe's EOF). */
static void teardown_fork(struct vm *vm)
{
	int keep[CONFIG_MAX_CPUS + 5];
	unsigned nkeep = 0;
	int gate[2], ack[2];
	pid_t pid;

	if (vm->vm_fd < 0 || pipe2(gate, O_CLOEXEC) < 0)
		return;
	if (pipe2(ack, O_CLOEXEC) < 0) {
		close(gate[0]);
		close(gate[1]);
		return;
	}
	keep[nkeep++] = vm->kvm_fd;
	keep[nkeep++] = vm->vm_fd;
	if (vm->unused_vm_fd >= 0)
		keep[nkeep++] = vm->unused_vm_fd;
	keep[nkeep++] = gate[0];
	keep[nkeep++] = ack[1];
	for (unsigned i = 0; i < vm->nr_vcpus && nkeep < ARRAY_SIZE(keep); i++)
		keep[nkeep++] = vm->vcpus[i].fd;
	pid = fork();
	if (pid == 0) {
		/* Child of a multithreaded process: async-signal-safe calls only.
		 * Close everything but the kept descriptors, gap by gap. */
		unsigned next = 0;
		char c;

		for (unsigned i = 1; i < nkeep; i++) /* insertion sort: a few entries */
			for (unsigned j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
				int t = keep[j];

				keep[j] = keep[j - 1];
				keep[j - 1] = t;
			}
		for (unsigned i = 0; i < nkeep; i++) {
			if ((unsigned)keep[i] > next)
				close_range(next, (unsigned)keep[i] - 1, 0);
			next = (unsigned)keep[i] + 1;
		}
		close_range(next, ~0U, 0);
		/* The parent waits for this: until now the child shared every
		 * open file, flocks on disk images included. */
		close(ack[1]);
		/* EOF arrives when the parent has exited; then drop the VM. */
		while (read(gate[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(gate[0]);
	close(ack[1]);
	if (pid < 0) {
		close(gate[1]);
	} else {
		/* Return once the child holds nothing but the KVM descriptors,
		 * so image locks go away with this process (a tool run right
		 * after the worker exits must not see the image as in use). */
		char c;

		while (read(ack[0], &c, 1) < 0 && errno == EINTR)
			;
	}
	close(ack[0]);
	/* gate[1] stays open (close-on-exec) until this process exits. */
}

void vm_defer_kernel_teardown(struct vm *vm)
{
	/* The ring holds the descriptors: vm_destroy closes ours, the exit
	 * closes the ring and the kernel finishes the VM on its own time. */
	if (vm->teardown_ring >= 0)
		return;
	teardown_fork(vm);
}
