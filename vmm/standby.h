/* standby.h: cella-vm --standby, a worker started ahead of a restore
 * (vmm/standby.c, docs/state-format.md "Restoring through a standby
 * worker"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct kvm_cpuid2;
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

#define STANDBY_WORDS_MAX 512

/* vmm/standby_req.c. The request line (len bytes, a JSON array of 1 to
 * STANDBY_WORDS_MAX strings) as sb->argv: argv0, the words, then --kvm
 * kvm_spec unless a word names the device. 0, or -1 with err set (sb may
 * hold part of it: standby_free). */
int standby_parse_request(const char *line, size_t len, const char *argv0, const char *kvm_spec,
			  struct standby *sb, char *err, size_t errlen) __must_check;
/* Whether w is --kvm, --kvm=X or an abbreviation getopt takes for it. */
bool standby_is_kvm_option(const char *w);

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
