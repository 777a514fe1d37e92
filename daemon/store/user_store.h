/* user_store.h: the web console's users (name, role, Argon2id hash) in
 * cellad's SQLite file, table web_users (its own connection: the users are
 * this host's, whichever store holds the VMs). Thread-safe. */
#pragma once
#include <stddef.h>

#include <jansson.h>

#include "compiler.h"

struct user_store;

/* Open (creating the table) the SQLite file at path. 0 or -errno (err says). */
int user_store_open(struct user_store **out, const char *path, char *err,
		    size_t errlen) __must_check;
void user_store_close(struct user_store *us);
/* Insert or replace a user. 0 or -EIO. */
int user_store_put(struct user_store *us, const char *name, const char *role,
		   const char *hash) __must_check;
/* A user's role and hash (caller's buffers). 0, -ENOENT or -EIO. */
int user_store_get(struct user_store *us, const char *name, char *role, size_t rlen, char *hash,
		   size_t hlen) __must_check;
/* 0, -ENOENT or -EIO. */
int user_store_delete(struct user_store *us, const char *name) __must_check;
/* [{name, role, created_at}] by name (never the hashes), or NULL (-EIO). */
json_t *user_store_list(struct user_store *us);
