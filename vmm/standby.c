/* standby.c: cella-vm --standby (standby.h). A restore's worker started
 * before its request, as Firecracker's snapshot restore is measured: the
 * process exists, exec and the dynamic linker are done, /dev/kvm is open and
 * checked, the VM made (KVM_CREATE_VM), the host's supported CPUID asked and
 * the TLS module loaded when the request comes. Nothing that
 * depends on the state file or the VM's configuration is done here: the
 * request then takes the cold restore's path from its start (the same
 * argument checks, state checks, sandbox, filters and devices). */
#include "standby.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/x86.h"
#include "fdspec.h"
#include "log.h"
#include "migrate/mig_tls.h"
#include "sandbox/sandbox.h"
#include "worker_exit.h"

#define STANDBY_LINE_MAX 60002 /* 60000 bytes and the newline, in a buffer with a NUL:
				* under a pipe's 64 KiB, one tee holds it */

/* Read exactly n bytes (a pipe may hand them over in parts). */
static int read_full(int fd, char *buf, size_t n)
{
	while (n) {
		ssize_t k = read(fd, buf, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EPIPE;
		buf += k;
		n -= (size_t)k;
	}
	return 0;
}

/* One line from fd, without consuming a byte past its newline (stdin may be
 * the guest's console afterwards). A pipe is looked at with tee(2) and read
 * up to the newline in one call; anything else a byte at a time. The line
 * is NUL-terminated without its newline. Its length, or -1 with err set. */
static ssize_t read_line(int fd, char *buf, size_t cap, char *err, size_t errlen)
{
	int p[2] = { -1, -1 };
	bool peek = pipe2(p, O_CLOEXEC) == 0;
	size_t len = 0;
	ssize_t ret = -1;

	for (;;) {
		ssize_t n;
		char *nl;
		size_t want;

		if (len >= cap - 1) {
			snprintf(err, errlen, "the request is longer than %zu bytes", cap - 2);
			break;
		}
		if (peek) {
			n = tee(fd, p[1], cap - 1 - len, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EINVAL) { /* not a pipe */
				peek = false;
				continue;
			}
			if (n > 0 && read_full(p[0], buf + len, (size_t)n)) {
				snprintf(err, errlen, "reading the request: %s", strerror(errno));
				break;
			}
		} else {
			n = read(fd, buf + len, 1);
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n < 0) {
			snprintf(err, errlen, "reading the request: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			snprintf(err, errlen, len ? "end of input inside the request line"
						  : "end of input before a request");
			break;
		}
		nl = memchr(buf + len, '\n', (size_t)n);
		want = nl ? (size_t)(nl - (buf + len)) + 1 : (size_t)n;
		/* What tee showed, up to the newline, is the request's: take it. */
		if (peek && read_full(fd, buf + len, want)) {
			snprintf(err, errlen, "reading the request: %s", strerror(errno));
			break;
		}
		len += want;
		if (nl) {
			buf[--len] = '\0';
			ret = (ssize_t)len;
			break;
		}
	}
	if (p[0] >= 0) {
		close(p[0]);
		close(p[1]);
	}
	return ret;
}


void standby_filters_free(struct standby *sb)
{
	sandbox_filters_free(sb->filters);
	free(sb->filters);
	sb->filters = NULL;
}

int standby_wait(int argc, char **argv, struct standby *sb)
{
	const char *kvm = "/dev/kvm";
	char err[512], spec[32], *line;
	struct standby_rx rx = { .n = 0 };
	bool msg;
	uint64_t mem_mib = 0;
	ssize_t len;
	int fd, ver, ret, inherited;

	for (int i = 2; i < argc; i++) {
		if ((ret = standby_prep_option(argc, argv, &i, &mem_mib))) {
			if (ret < 0)
				return WORKER_EXIT_CONFIG;
		} else if (!strcmp(argv[i], "--kvm") && i + 1 < argc) {
			kvm = argv[++i];
		} else if (!strncmp(argv[i], "--kvm=", 6)) {
			kvm = argv[i] + 6;
		} else {
			fprintf(stderr, "cella-vm: --standby takes only --kvm PATH|fd:N and --mem MIB, "
				"not '%s': "
				"the restore's arguments come in the request\n", argv[i]);
			return WORKER_EXIT_CONFIG;
		}
	}
	fd = fdspec_open(kvm, O_RDWR, 0, 0, err, sizeof(err));
	if (fd < 0) {
		log_err("standby: cannot open KVM: %s", err);
		return WORKER_EXIT_CONFIG;
	}
	/* fd:N was duplicated: the inherited one goes, so that a request may
	 * place one of its descriptors at N (standby_fds.c). */
	if (fdspec_is_fd(kvm, &inherited) && inherited >= 0 && inherited != fd)
		close(inherited);
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		log_err("standby: %s is not /dev/kvm (KVM_GET_API_VERSION: %d)", kvm, ver);
		close(fd);
		return WORKER_EXIT_CONFIG;
	}
	/* The VM itself: KVM_CREATE_VM takes no configuration (its memory
	 * slots, irqchip and PIT, which must follow the slots, wait for it). A
	 * failure here is the restore's to report, as a cold one would. */
	sb->vm_fd = ioctl(fd, KVM_CREATE_VM, 0);
	if (sb->vm_fd < 0)
		sb->vm_fd = 0;
	/* --mem: its memory slots, irqchip and PIT for that RAM size. */
	standby_prepare(sb, fd, mem_mib);
	/* What the cold restore asks on a thread beside creating the VM. */
	if (x86_cpuid_get_supported(fd, &sb->cpuid))
		sb->cpuid = NULL;
	/* A restored VM under cellad may be asked to migrate: what its worker
	 * would load beside creating the VM is loaded here instead. */
	if (mig_tls_load(err, sizeof(err)))
		log_debug("standby: %s (the restore will say so if it matters)", err);
	/* The seccomp filters, compiled here rather than in the request
	 * (libseccomp: ~0.7 ms); CELLA_SECCOMP_LOG is read now, from the same
	 * environment the restore would read it in. */
	sb->filters = malloc(sizeof(*sb->filters));
	if (sb->filters && sandbox_filters_build(sb->filters)) {
		free(sb->filters);
		sb->filters = NULL;
	}
	snprintf(spec, sizeof(spec), "fd:%d", fd);
	line = malloc(STANDBY_LINE_MAX);
	if (!line) {
		standby_filters_free(sb);
		standby_prep_free(sb);
		if (sb->vm_fd > 0)
			close(sb->vm_fd);
		close(fd);
		log_err("standby: out of memory");
		return WORKER_EXIT_CONFIG;
	}
	log_info("standby: ready");
	/* cellad's: a message with the restore's descriptors (standby_fds.c). */
	msg = standby_is_msg_socket(STDIN_FILENO);
	if (msg)
		standby_say_ready(STDIN_FILENO);
	len = msg ? standby_recv_request(STDIN_FILENO, line, STANDBY_LINE_MAX, &rx, err, sizeof(err))
		  : read_line(STDIN_FILENO, line, STANDBY_LINE_MAX, err, sizeof(err));
	ret = len < 0 ? -1
		      : standby_parse_request(line, (size_t)len, argv[0], spec, sb, err, sizeof(err));
	if (!ret)
		ret = standby_place_fds(sb, &rx, &fd, spec, sizeof(spec), err, sizeof(err));
	standby_rx_close(&rx);
	free(line);
	if (ret) {
		log_err("standby: %s", err);
		log_info("exit: no restore request (status %d: %s)", WORKER_EXIT_CONFIG,
			 worker_exit_kind(WORKER_EXIT_CONFIG));
		standby_free(sb);
		standby_filters_free(sb);
		standby_prep_free(sb);
		if (sb->vm_fd > 0)
			close(sb->vm_fd);
		if (fd >= 0)
			close(fd);
		return WORKER_EXIT_CONFIG;
	}
	/* The restore's --kvm fd:N is this descriptor (closed with the passed
	 * ones once duplicated); a request naming its own device gets that. */
	if (strcmp(standby_kvm_value(sb->argv, sb->argc) ?: "", spec)) {
		close(fd);
		if (sb->vm_fd > 0) /* another device's VM: not ours to hand over */
			close(sb->vm_fd);
		sb->vm_fd = 0;
		standby_prep_free(sb);
		free(sb->cpuid);
		sb->cpuid = NULL;
	}
	return 0;
}
