/* vmdef_priv.h: field validators shared by vmdef.c and vmdef_disk.c. Each
 * fills e (400, naming the field) and returns -1 on bad input, else 0. */
#pragma once
#include "conf/schema.h"
#include "vmdef.h"

/* A conf/ schema error as the API's: 400 naming the field. Returns -1. */
int vmdef_conf_error(const struct conf_err *ce, struct cerr *e);

int vmdef_check_file(const char *field, const char *path, struct cerr *e);
int vmdef_get_string(json_t *v, const char *field, size_t max, const char **out, struct cerr *e);
int vmdef_get_uint(json_t *v, const char *field, uint64_t min, uint64_t max, uint64_t *out,
		   struct cerr *e);
int vmdef_get_bool(json_t *v, const char *field, bool *out, struct cerr *e);
/* The disks array of a create or change request (replaces d's disks). */
int vmdef_parse_disks(struct vmdef *d, json_t *arr, struct cerr *e);
json_t *vmdef_disks_json(const struct vmdef *d, bool worker);
/* vmdef_usernet.c: a user NIC's "forward" array into out ("tcp:H:G,..."):
 * each tcp|udp:HOSTPORT:GUESTPORT with ports 1..65535, no host port twice. */
int usernet_forwards_parse(json_t *v, char *out, size_t outlen, const char *field,
			   struct cerr *e);
json_t *usernet_nic_json(const struct vmdef_nic *n);
