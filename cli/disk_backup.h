/* disk_backup.h: `cella disk backup` and `cella disk restore` (changed-block
 * tracking backups, disk/cbt.h). argv[0] is the subcommand's name; each
 * returns the process exit status (0, 1 on failure, 2 on usage errors). */
#pragma once

int cmd_disk_backup(int argc, char **argv);
int cmd_disk_restore(int argc, char **argv);
/* `cella disk replica add|points|merge|drop` (cli/disk_replica.c). */
int cmd_disk_replica(int argc, char **argv);
