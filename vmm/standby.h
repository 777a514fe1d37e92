/* standby.h: cella-vm --standby, a worker started ahead of a restore
 * (vmm/standby.c, docs/state-format.md "Restoring through a standby
 * worker"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"

struct kvm_cpuid2;

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
};

/* argv: cella-vm --standby [--kvm PATH|fd:N]. Does what a restore needs
 * before its state and configuration (/dev/kvm opened and checked, the VM
 * made with KVM_CREATE_VM, the host's supported CPUID asked, the TLS module
 * loaded), logs "standby: ready" on stderr, then reads one request
 * line on stdin: a JSON array of strings, the arguments of cella-vm
 * --restore FILE ... without the program name. 0 with *sb filled, or an
 * exit status (2: a bad option, a malformed request or end of input,
 * logged; nothing is left open). */
int standby_wait(int argc, char **argv, struct standby *sb) __must_check;
void standby_free(struct standby *sb);

#define STANDBY_WORDS_MAX 512

/* vmm/standby_req.c. The request line (len bytes, a JSON array of 1 to
 * STANDBY_WORDS_MAX strings) as sb->argv: argv0, the words, then --kvm
 * kvm_spec unless a word names the device. 0, or -1 with err set (sb may
 * hold part of it: standby_free). */
int standby_parse_request(const char *line, size_t len, const char *argv0, const char *kvm_spec,
			  struct standby *sb, char *err, size_t errlen) __must_check;
/* Whether w is --kvm, --kvm=X or an abbreviation getopt takes for it. */
bool standby_is_kvm_option(const char *w);
