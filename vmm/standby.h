/* standby.h: cella-vm --standby, a worker started ahead of a restore
 * (vmm/standby.c, docs/state-format.md "Restoring through a standby
 * worker"). */
#pragma once

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
