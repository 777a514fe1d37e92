/* db.h: cellad's persistent state in SQLite (WAL, foreign keys on): VM
 * definitions with their disks and NICs, each VM's last known runtime
 * record (worker pid and start time, state, last exit), and host metadata.
 * Not thread-safe: the supervisor serialises calls under its lock. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"
#include "vmdef.h"

struct db;

/* What cellad needs to find a worker again after its own restart. */
struct db_runtime {
	char state[16];
	int pid;                 /* 0: no worker */
	uint64_t pid_start;      /* /proc/PID/stat starttime, against pid reuse */
	int64_t started_at;      /* wall clock, seconds */
	int exit_status;         /* -1: none yet */
	char exit_reason[256];
	unsigned restarts;
};

int db_open(struct db **out, const char *path, char *err, size_t errlen) __must_check;
void db_close(struct db *db);

/* Call fn for every stored VM (definition order). fn returns 0 to go on. */
int db_load(struct db *db, int (*fn)(void *opaque, struct vmdef *def,
				     const struct db_runtime *rt), void *opaque) __must_check;
/* Insert or replace a definition (disks and NICs included). */
int db_save_vm(struct db *db, const struct vmdef *def) __must_check;
int db_delete_vm(struct db *db, const char *uuid) __must_check;
int db_save_runtime(struct db *db, const char *uuid, const struct db_runtime *rt) __must_check;

/* Host metadata (key/value), e.g. the boot id seen last. value: caller's
 * buffer; returns 0, -ENOENT or -EIO. */
int db_get_meta(struct db *db, const char *key, char *value, size_t len) __must_check;
int db_set_meta(struct db *db, const char *key, const char *value) __must_check;

/* Transactions around several calls: db_end commits when ret is 0, else
 * rolls back; it returns ret, or -EIO when the commit fails. */
int db_begin(struct db *db) __must_check;
int db_end(struct db *db, int ret) __must_check;

/* A VM's checkpoints, in creation order: objects {name, parent (null for a
 * root), kind, created_at, memory (a saved state file exists), layers
 * [{id, path}]}. */
json_t *db_cp_list(struct db *db, const char *uuid);
/* Insert or update one (same object shape). */
int db_cp_put(struct db *db, const char *uuid, json_t *cp) __must_check;
int db_cp_delete(struct db *db, const char *uuid, const char *name) __must_check;

/* Peer hosts VMs move to: objects {name, url, tls_name} (+ token when
 * with_token; the API never shows it). */
json_t *db_host_list(struct db *db, bool with_token);
/* Insert or replace; tls_name may be NULL. */
int db_host_put(struct db *db, const char *name, const char *url, const char *token,
		const char *tls_name) __must_check;
/* 0, -ENOENT or -EIO. */
int db_host_delete(struct db *db, const char *name) __must_check;
