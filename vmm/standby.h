/* standby.h: cella-vm --standby, a worker started ahead of a restore
 * (vmm/standby.c, docs/state-format.md "Restoring through a standby
 * worker"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "compiler.h"

struct kvm_cpuid2;
struct sandbox_filters;
struct vm_prep;

/* The restore's arguments once the request has come: argv[0] is the
 * worker's own, then the request's words (and --kvm fd:N, the device the
 * standby worker opened, unless the request names one). */
struct standby {
	int argc;
	char **argv;
	int vm_fd; /* KVM_CREATE_VM's, made on the standby's /dev/kvm (0: none, as
		    * when the request names a device of its own): the restore's
		    * vm_create takes it (vm_config.standby_vm_fd) */
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID's answer, or NULL
				   * (then as cold: vm_config.standby_cpuid) */
	struct vm_prep *prep; /* --mem: the VM prepared for that RAM size, which
			       * then holds the VM instead of vm_fd; NULL: none
			       * (vm_config.standby_prep; standby_prep_free) */
	/* A request object's "fds": where each descriptor that came with it
	 * goes (vmm/standby_fds.c), and "kvm_fd": where the standby's own
	 * /dev/kvm goes (-1: stays where it is). */
	int nr_fds;
	int *fd_to;
	int kvm_to;
	/* Every seccomp filter the restore may install, compiled before
	 * "ready" (sandbox.h); the restore's worker_prepare takes and loads
	 * the ones its configuration selects and frees the rest. NULL: none
	 * (then the restore compiles them, as cold). standby_filters_free. */
	struct sandbox_filters *filters;
};

/* argv: cella-vm --standby [--kvm PATH|fd:N] [--mem MIB]. Does what a restore needs
 * before its state and configuration (/dev/kvm opened and checked, the VM
 * made with KVM_CREATE_VM, the host's supported CPUID asked, the TLS module
 * loaded), logs "standby: ready" on stderr, then reads one request
 * line on stdin: a JSON array of strings, the arguments of cella-vm
 * --restore FILE ... without the program name. 0 with *sb filled, or an
 * exit status (2: a bad option, a malformed request or end of input,
 * logged; nothing is left open). */
int standby_wait(int argc, char **argv, struct standby *sb) __must_check;
void standby_free(struct standby *sb);
/* Release sb->filters (vmm/standby.c: what a restore has not taken). */
void standby_filters_free(struct standby *sb);

#define STANDBY_WORDS_MAX 512
/* Descriptors one request may pass (the kernel's SCM_MAX_FD: one message
 * carries no more), and the highest number one may be placed at. */
#define STANDBY_FDS_MAX 253
#define STANDBY_FD_TOP  1023

/* vmm/standby_req.c. The request line (len bytes) as sb->argv: argv0,
 * the words, then --kvm kvm_spec unless a word names the device. The line
 * is a JSON array of 1 to STANDBY_WORDS_MAX strings, or an object
 * {"args": that array, "fds": [N...], "kvm_fd": N} ("fds" and "kvm_fd"
 * optional): the numbers, 0 to STANDBY_FD_TOP and all different, go to
 * sb->fd_to (at most STANDBY_FDS_MAX) and sb->kvm_to, and a "kvm_fd" K
 * needs "--kvm" "fd:K" (the last --kvm) among the args. 0, or -1 with err
 * set (sb may hold part of it: standby_free). */
int standby_parse_request(const char *line, size_t len, const char *argv0, const char *kvm_spec,
			  struct standby *sb, char *err, size_t errlen) __must_check;
/* Whether w is --kvm, --kvm=X or an abbreviation getopt takes for it. */
bool standby_is_kvm_option(const char *w);
/* The value of argv's last --kvm option (what getopt would keep), or NULL. */
const char *standby_kvm_value(char *const *argv, int argc);

/* vmm/standby_fds.c: a request over a socket, with its descriptors. */
struct standby_rx {
	int n;
	int fd[STANDBY_FDS_MAX];
};

/* Whether fd is a SOCK_SEQPACKET socket: the request then comes as one
 * message with its descriptors (SCM_RIGHTS), and the standby says "ready"
 * on it once prepared (cellad's standby workers). */
bool standby_is_msg_socket(int fd);
/* Send "ready\n" on the request socket (best effort: a peer that is gone
 * shows as the end of input next). */
void standby_say_ready(int fd);
/* One message from the socket into buf (cap bytes with the NUL; a trailing
 * newline dropped), its descriptors into rx (close-on-exec). Its length,
 * or -1 with err set and nothing left open. */
ssize_t standby_recv_request(int fd, char *buf, size_t cap, struct standby_rx *rx, char *err,
			     size_t errlen);
/* Put what came in rx where the parsed request says (sb->fd_to, in order;
 * not close-on-exec), and *kvm_fd at sb->kvm_to, after moving the
 * standby's own descriptors (*kvm_fd, sb->vm_fd or the prepared VM's)
 * above every number asked for; spec becomes "fd:N" for wherever *kvm_fd ends, and so does the
 * --kvm standby_parse_request appended (the request named none). Refused, -1 with err set: a count that differs
 * from the request's "fds", a number above 2 held by something else of the
 * standby's. rx's descriptors are taken either way. */
int standby_place_fds(struct standby *sb, struct standby_rx *rx, int *kvm_fd, char *spec,
		      size_t speclen, char *err, size_t errlen) __must_check;
void standby_rx_close(struct standby_rx *rx);

/* vmm/standby_prep.c. argv[*i] as --mem MIB or --mem=MIB, the guest RAM
 * the standby prepares for (8 MiB to 1 TiB, and no more than the host
 * has; once): 1 with *mem_mib set and *i on its last word, 0 when it is
 * another option, -1 after saying why on stderr. */
int standby_prep_option(int argc, char **argv, int *i, uint64_t *mem_mib) __must_check;
/* With mem_mib (0: nothing to do), after KVM_CREATE_VM (sb->vm_fd, made on
 * kvm_fd): the VM's memory slots for that RAM, its irqchip and PIT
 * (vm_prep.h) into sb->prep, which then owns the VM (sb->vm_fd 0). A
 * failure is logged, and sb->vm_fd is then a new, empty VM as without
 * --mem. */
void standby_prepare(struct standby *sb, int kvm_fd, uint64_t mem_mib);
/* Release sb->prep (what a restore has not taken of it). */
void standby_prep_free(struct standby *sb);
