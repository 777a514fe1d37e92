/* checkpoint_priv.h: what checkpoint.c (create, apply) and
 * checkpoint_delete.c share. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "json_find.h"
#include "sup_priv.h"

#define cp_find(list, name) json_find_by(list, "name", name)

#define CP_SAVE_TIMEOUT_MS 300000
#define CP_TIMEOUT_MS      30000

/* Run fn on checkpoint cp of vm as a job of the given kind (its data names
 * the checkpoint). */
typedef int (*cp_job_fn)(struct sup *s, struct vmrt *vm, struct job *job, json_t *list,
                         json_t *cp, struct cerr *e);

const char *cp_str(json_t *cp, const char *key);
json_t *cp_layer(json_t *cp, const char *id);
void cp_memory_path(struct sup *s, const struct vmrt *vm, const char *cp, char *out,
                    size_t len);
bool cp_owned(struct sup *s, const struct vmrt *vm, const char *path);
bool cp_in_current_chain(json_t *list, const char *current, const char *cp);
json_t *cp_lookup(struct sup *s, const char *name, const char *cpname, struct vmrt **vm,
                  json_t **list, struct cerr *e);
int cp_run_job(struct sup *s, struct vmrt *vm, const char *kind, const char *cpname,
               cp_job_fn fn, json_t *list, json_t *cp, struct cerr *e);
