/* restore.h: cella-vm --restore's two steps around creating the VM: open
 * and check the state file, then set the VM up from it (vmm/restore.c). */
#pragma once
#include <time.h>

struct mem_order;
struct statefile;
struct vm;
struct vm_config;

/* Open and check the state file (header, every section's checksum) and
 * that it fits the configuration. No guest memory is read. 0, or -1 after
 * logging why (configuration error: exit status 2). */
int restore_open(const char *spec, const struct vm_config *cfg, struct statefile *sf);
/* After vm_create_restore: devices and vCPUs from the configuration, then
 * the file's state on top, and the prefetch's order into *order; logs
 * "restore: state loaded in X ms" from t0. 0 or -errno (the VM is told to
 * exit with a configuration status when the file cannot be restored). */
int restore_setup(struct vm *vm, struct statefile *sf, const struct timespec *t0,
		  struct mem_order *order);
