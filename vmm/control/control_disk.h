/* control_disk.h: the control socket's disk commands (set-qos, flush-disks,
 * disk-switch), the disk list of `status`, and the storage retry that
 * `resume` runs first. Served on the I/O thread like every command. */
#pragma once
#include <stdbool.h>

#include <jansson.h>

struct vm;

/* The reply to `cmd` if it is a disk command, else NULL. `fd` is a
 * descriptor that came with the request (SCM_RIGHTS) for the command's
 * "fd" member, or -1; a command that uses it takes ownership. */
json_t *ctl_disk_command(struct vm *vm, const char *cmd, json_t *req, int fd);
/* [{"id","path","format","qos":{...},"error":null|"..."}] */
json_t *ctl_disks_status(struct vm *vm);
/* Before `resume`: retry every stalled disk. Returns false, with the reason
 * in why, when a disk still fails (the VM stays paused). */
bool ctl_disks_retry(struct vm *vm, char *why, size_t len);
