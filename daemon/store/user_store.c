/* user_store.c: the web console's users in SQLite (user_store.h). */
#include "user_store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "log.h"

struct user_store {
	sqlite3 *db;
	pthread_mutex_t lock;
};

int user_store_open(struct user_store **out, const char *path, char *err, size_t errlen)
{
	struct user_store *us = calloc(1, sizeof(*us));
	char *msg = NULL;

	if (!us)
		return -ENOMEM;
	if (sqlite3_open_v2(path, &us->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, us->db ? sqlite3_errmsg(us->db) : "no memory");
		sqlite3_close(us->db);
		free(us);
		return -EIO;
	}
	sqlite3_busy_timeout(us->db, 5000);
	if (sqlite3_exec(us->db,
			 "CREATE TABLE IF NOT EXISTS web_users (name TEXT PRIMARY KEY, role TEXT "
			 "NOT NULL, hash TEXT NOT NULL, created_at INTEGER NOT NULL)",
			 NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "%s: web_users: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_close(us->db);
		free(us);
		return -EIO;
	}
	pthread_mutex_init(&us->lock, NULL);
	*out = us;
	return 0;
}

void user_store_close(struct user_store *us)
{
	if (!us)
		return;
	sqlite3_close(us->db);
	pthread_mutex_destroy(&us->lock);
	free(us);
}

int user_store_put(struct user_store *us, const char *name, const char *role, const char *hash)
{
	sqlite3_stmt *st = NULL;
	int ret = -EIO;

	pthread_mutex_lock(&us->lock);
	if (sqlite3_prepare_v2(us->db,
			       "INSERT OR REPLACE INTO web_users (name, role, hash, created_at) "
			       "VALUES (?, ?, ?, ?)", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, role, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, hash, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
		if (sqlite3_step(st) == SQLITE_DONE)
			ret = 0;
		else
			log_err("web_users: %s", sqlite3_errmsg(us->db));
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&us->lock);
	return ret;
}

int user_store_get(struct user_store *us, const char *name, char *role, size_t rlen, char *hash,
		   size_t hlen)
{
	sqlite3_stmt *st = NULL;
	int ret = -EIO, rc;

	pthread_mutex_lock(&us->lock);
	if (sqlite3_prepare_v2(us->db, "SELECT role, hash FROM web_users WHERE name = ?", -1, &st,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			snprintf(role, rlen, "%s", (const char *)sqlite3_column_text(st, 0) ?: "");
			snprintf(hash, hlen, "%s", (const char *)sqlite3_column_text(st, 1) ?: "");
			ret = 0;
		} else if (rc == SQLITE_DONE) {
			ret = -ENOENT;
		}
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&us->lock);
	return ret;
}

int user_store_delete(struct user_store *us, const char *name)
{
	sqlite3_stmt *st = NULL;
	int ret = -EIO;

	pthread_mutex_lock(&us->lock);
	if (sqlite3_prepare_v2(us->db, "DELETE FROM web_users WHERE name = ?", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) == SQLITE_DONE)
			ret = sqlite3_changes(us->db) ? 0 : -ENOENT;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&us->lock);
	return ret;
}

json_t *user_store_list(struct user_store *us)
{
	sqlite3_stmt *st = NULL;
	json_t *list = json_array();
	int rc = SQLITE_ERROR;

	pthread_mutex_lock(&us->lock);
	if (list && sqlite3_prepare_v2(us->db, "SELECT name, role, created_at FROM web_users "
				       "ORDER BY name", -1, &st, NULL) == SQLITE_OK) {
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			json_array_append_new(list, json_pack("{s:s, s:s, s:I}", "name",
				(const char *)sqlite3_column_text(st, 0) ?: "", "role",
				(const char *)sqlite3_column_text(st, 1) ?: "", "created_at",
				(json_int_t)sqlite3_column_int64(st, 2)));
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&us->lock);
	if (rc != SQLITE_DONE) {
		json_decref(list);
		return NULL;
	}
	return list;
}
