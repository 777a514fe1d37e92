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
/* "<base><escaped name><suffix>", e.g. base "/v1/hosts/"; returns 0. */
int api_path(char *out, size_t len, const char *base, const char *name, const char *suffix);
/* "/v1/vms/<escaped name><suffix>" */
int vm_path(char *out, size_t len, const char *name, const char *suffix);
/* The first line of file into buf; 0 or EXIT_USAGE (printed). */
int read_token_file(const char *file, char *buf, size_t len);

/* Pretty-printed JSON on stdout. */
void print_json(json_t *j);
/* A command's reply: out as JSON with --json, otherwise the line fmt.
 * Frees out; returns EXIT_OK. */
int print_reply(struct client *c, json_t *out, const char *fmt, ...) __printf(3, 4);
/* GET path: with --json the reply is printed and freed (*out NULL), otherwise
 * it is left in *out for the caller's table; 0 or an exit status (printed). */
int list_call(struct client *c, const char *path, json_t **out);
/* --json: the JSON; otherwise "key value" lines, nested objects indented. */
void show_json(struct client *c, json_t *j);
/* `NAME` and nothing else: method on /v1/vms/NAME<suffix>, the reply in
 * *out (may be NULL); 0 or an exit status (printed). */
int vm_call(struct client *c, int argc, char **argv, const char *method, const char *suffix,
            json_t **out);
/* vm_call, then print "NAME <done> (state: S)" (or the JSON reply). */
int vm_verb(struct client *c, int argc, char **argv, const char *method, const char *suffix,
            const char *done);

/* vm.c: VM definition options and the `cella vm` lifecycle commands. */
extern const char vm_create_opts_help[];
extern const char vm_set_opts_help[];
int cmd_list(struct client *c, int argc, char **argv);
int cmd_create(struct client *c, int argc, char **argv);
int cmd_set(struct client *c, int argc, char **argv);
int cmd_show(struct client *c, int argc, char **argv);
int cmd_metrics(struct client *c, int argc, char **argv);
int cmd_start(struct client *c, int argc, char **argv);
int cmd_stop(struct client *c, int argc, char **argv);
int cmd_kill(struct client *c, int argc, char **argv);
int cmd_reset(struct client *c, int argc, char **argv);
int cmd_pause(struct client *c, int argc, char **argv);
int cmd_resume(struct client *c, int argc, char **argv);
int cmd_delete(struct client *c, int argc, char **argv);

/* console.c */
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
/* switch.c: cella switch ...; --nic-policy N JSON of cella vm set. */
int nic_policy_apply(struct client *c, const char *vm, const char *nic, const char *policy);
int cmd_switch_create(struct client *c, int argc, char **argv);
int cmd_switch_list(struct client *c, int argc, char **argv);
int cmd_switch_show(struct client *c, int argc, char **argv);
int cmd_switch_delete(struct client *c, int argc, char **argv);

/* move.c */
int cmd_move(struct client *c, int argc, char **argv);
int cmd_host_add(struct client *c, int argc, char **argv);
int cmd_host_list(struct client *c, int argc, char **argv);
int cmd_host_remove(struct client *c, int argc, char **argv);

/* image.c: the images of cellad's storage locations */
int cmd_image_list(struct client *c, int argc, char **argv);
int cmd_image_create(struct client *c, int argc, char **argv);
int cmd_image_resize(struct client *c, int argc, char **argv);
int cmd_image_convert(struct client *c, int argc, char **argv);
int cmd_image_backup(struct client *c, int argc, char **argv);
int cmd_image_delete(struct client *c, int argc, char **argv);

/* user.c: the web console's users */
int cmd_user_add(struct client *c, int argc, char **argv);
int cmd_user_list(struct client *c, int argc, char **argv);
int cmd_user_delete(struct client *c, int argc, char **argv);

/* pool.c */
int cmd_pool_status(struct client *c, int argc, char **argv);
int cmd_pool_create(struct client *c, int argc, char **argv);
int cmd_pool_token(struct client *c, int argc, char **argv);
int cmd_pool_join(struct client *c, int argc, char **argv);
int cmd_pool_leave(struct client *c, int argc, char **argv);

/* replica.c */
int cmd_replica_enable(struct client *c, int argc, char **argv);
/* replica_ops.c: a duration option ("5s", "30s", "5m", "15m", "24h", "2d",
 * "500ms"; a bare number is milliseconds only when bare_ms) within
 * [min_ms, max_ms] into *ms: 0, or EXIT_USAGE (printed). */
int replica_parse_duration(const char *opt, const char *s, bool bare_ms, json_int_t min_ms,
			   json_int_t max_ms, json_int_t *ms);
int cmd_replica_pause(struct client *c, int argc, char **argv);
int cmd_replica_resume(struct client *c, int argc, char **argv);
int cmd_replica_points(struct client *c, int argc, char **argv);
int cmd_replica_status(struct client *c, int argc, char **argv);
int cmd_replica_disable(struct client *c, int argc, char **argv);
int cmd_replica_list(struct client *c, int argc, char **argv);
int cmd_replica_show(struct client *c, int argc, char **argv);
int cmd_replica_failover(struct client *c, int argc, char **argv);
int cmd_replica_reverse(struct client *c, int argc, char **argv);
int cmd_replica_delete(struct client *c, int argc, char **argv);
int cmd_replica_test_stop(struct client *c, int argc, char **argv);

/* maint.c */
int cmd_host_maintenance(struct client *c, int argc, char **argv);
int cmd_pool_balance(struct client *c, int argc, char **argv);
