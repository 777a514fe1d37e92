/* commands.h: helpers shared by the cella CLI's command files. */
#pragma once
#include <stddef.h>

#include <jansson.h>

#include "client.h"

/* Print a usage error for the current command; returns EXIT_USAGE. */
int usage_error(const char *fmt, const char *arg);
/* Parse a decimal number for option opt; 0 or EXIT_USAGE (printed). */
int parse_num(const char *opt, const char *s, json_int_t *v);
/* argv[1] must be a VM name; 0 or EXIT_USAGE (printed). */
int need_name(int argc, char **argv, int first_opt);
/* "/v1/vms/<escaped name><suffix>" */
int vm_path(char *out, size_t len, const char *name, const char *suffix);

int cmd_console(struct client *c, int argc, char **argv);
int cmd_events(struct client *c, int argc, char **argv);

/* checkpoint.c */
int cmd_cp_create(struct client *c, int argc, char **argv);
int cmd_cp_list(struct client *c, int argc, char **argv);
int cmd_cp_apply(struct client *c, int argc, char **argv);
int cmd_cp_delete(struct client *c, int argc, char **argv);
int cmd_save(struct client *c, int argc, char **argv);
int cmd_delete_state(struct client *c, int argc, char **argv);
/* PATCH one disk's QoS from "iops=N,bps=N,..."; 0 or an exit status. */
int disk_qos_apply(struct client *c, const char *vm, const char *id, const char *spec);

/* move.c */
int cmd_move(struct client *c, int argc, char **argv);
int cmd_host_add(struct client *c, int argc, char **argv);
int cmd_host_list(struct client *c, int argc, char **argv);
int cmd_host_remove(struct client *c, int argc, char **argv);
