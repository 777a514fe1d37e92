/* db.c: SQLite storage for VM definitions, runtime records and metadata. */
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"

struct db {
	sqlite3 *h;
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS vms ("
	"  uuid TEXT PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  cpus INTEGER NOT NULL CHECK (cpus BETWEEN 1 AND 32),"
	"  memory_mib INTEGER NOT NULL CHECK (memory_mib >= 8),"
	"  kernel TEXT NOT NULL,"
	"  initrd TEXT,"
	"  cmdline TEXT,"
	"  rng INTEGER NOT NULL DEFAULT 0,"
	"  autostart INTEGER NOT NULL DEFAULT 0,"
	"  restart_policy TEXT NOT NULL DEFAULT 'never',"
	"  cpu_weight INTEGER NOT NULL DEFAULT 100,"
	"  cpu_max INTEGER NOT NULL DEFAULT 100,"
	"  created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')));"
	"CREATE TABLE IF NOT EXISTS disks ("
	"  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,"
	"  idx INTEGER NOT NULL, path TEXT NOT NULL, readonly INTEGER NOT NULL, id TEXT,"
	"  PRIMARY KEY (vm_uuid, idx));"
	"CREATE TABLE IF NOT EXISTS nics ("
	"  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,"
	"  idx INTEGER NOT NULL, tap TEXT NOT NULL, mac TEXT,"
	"  PRIMARY KEY (vm_uuid, idx));"
	"CREATE TABLE IF NOT EXISTS runtime ("
	"  vm_uuid TEXT PRIMARY KEY REFERENCES vms(uuid) ON DELETE CASCADE,"
	"  state TEXT NOT NULL, pid INTEGER NOT NULL DEFAULT 0,"
	"  pid_start INTEGER NOT NULL DEFAULT 0, started_at INTEGER NOT NULL DEFAULT 0,"
	"  exit_status INTEGER NOT NULL DEFAULT -1, exit_reason TEXT NOT NULL DEFAULT '',"
	"  restarts INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

static int db_exec(struct db *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_err("db: %s", msg ? msg : sqlite3_errmsg(db->h));
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

int db_open(struct db **out, const char *path, char *err, size_t errlen)
{
	struct db *db = calloc(1, sizeof(*db));

	if (!db)
		return -ENOMEM;
	if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				    SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, db->h ? sqlite3_errmsg(db->h) : "cannot open");
		db_close(db);
		return -EIO;
	}
	sqlite3_busy_timeout(db->h, 5000);
	if (db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
			"PRAGMA synchronous=NORMAL;") ||
	    db_exec(db, schema)) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db->h));
		db_close(db);
		return -EIO;
	}
	*out = db;
	return 0;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	sqlite3_close(db->h);
	free(db);
}

static sqlite3_stmt *db_prepare(struct db *db, const char *sql)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("db: %s: %s", sql, sqlite3_errmsg(db->h));
		return NULL;
	}
	return st;
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	return s ? strdup((const char *)s) : NULL;
}

static void col_copy(sqlite3_stmt *st, int i, char *dst, size_t len)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	snprintf(dst, len, "%s", s ? (const char *)s : "");
}

static int db_load_children(struct db *db, struct vmdef *d)
{
	sqlite3_stmt *st = db_prepare(db, "SELECT path, readonly, id FROM disks WHERE vm_uuid=? "
					  "ORDER BY idx");

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW && d->nr_disks < VMDEF_MAX_DISKS) {
		struct vmdef_disk *k = &d->disks[d->nr_disks++];

		k->path = col_dup(st, 0);
		k->readonly = sqlite3_column_int(st, 1);
		col_copy(st, 2, k->id, sizeof(k->id));
	}
	sqlite3_finalize(st);
	st = db_prepare(db, "SELECT tap, mac FROM nics WHERE vm_uuid=? ORDER BY idx");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW && d->nr_nics < VMDEF_MAX_NICS) {
		struct vmdef_nic *n = &d->nics[d->nr_nics++];

		col_copy(st, 0, n->tap, sizeof(n->tap));
		col_copy(st, 1, n->mac, sizeof(n->mac));
	}
	sqlite3_finalize(st);
	return 0;
}

int db_load(struct db *db, int (*fn)(void *, struct vmdef *, const struct db_runtime *),
	    void *opaque)
{
	sqlite3_stmt *st = db_prepare(db,
		"SELECT v.uuid, v.name, v.cpus, v.memory_mib, v.kernel, v.initrd, v.cmdline, v.rng,"
		" v.autostart, v.restart_policy, v.cpu_weight, v.cpu_max, r.state, r.pid,"
		" r.pid_start, r.started_at, r.exit_status, r.exit_reason, r.restarts"
		" FROM vms v LEFT JOIN runtime r ON r.vm_uuid = v.uuid ORDER BY v.created_at, v.name");
	int ret = 0, rc;

	if (!st)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct db_runtime rt = { .exit_status = -1 };
		struct vmdef d;
		char policy[16];

		vmdef_init(&d);
		col_copy(st, 0, d.uuid, sizeof(d.uuid));
		col_copy(st, 1, d.name, sizeof(d.name));
		d.cpus = (unsigned)sqlite3_column_int(st, 2);
		d.memory_mib = (uint64_t)sqlite3_column_int64(st, 3);
		d.kernel = col_dup(st, 4);
		d.initrd = col_dup(st, 5);
		d.cmdline = col_dup(st, 6);
		d.rng = sqlite3_column_int(st, 7);
		d.autostart = sqlite3_column_int(st, 8);
		col_copy(st, 9, policy, sizeof(policy));
		if (restart_policy_parse(policy, &d.restart))
			d.restart = RESTART_NEVER;
		d.cpu_weight = (unsigned)sqlite3_column_int(st, 10);
		d.cpu_max = (unsigned)sqlite3_column_int(st, 11);
		if (sqlite3_column_type(st, 12) != SQLITE_NULL) {
			col_copy(st, 12, rt.state, sizeof(rt.state));
			rt.pid = sqlite3_column_int(st, 13);
			rt.pid_start = (uint64_t)sqlite3_column_int64(st, 14);
			rt.started_at = sqlite3_column_int64(st, 15);
			rt.exit_status = sqlite3_column_int(st, 16);
			col_copy(st, 17, rt.exit_reason, sizeof(rt.exit_reason));
			rt.restarts = (unsigned)sqlite3_column_int(st, 18);
		} else {
			snprintf(rt.state, sizeof(rt.state), "defined");
		}
		ret = db_load_children(db, &d);
		if (!ret)
			ret = fn(opaque, &d, &rt);
		vmdef_free(&d);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE) {
		log_err("db: loading VMs: %s", sqlite3_errmsg(db->h));
		ret = -EIO;
	}
	sqlite3_finalize(st);
	return ret;
}

static int db_step_done(struct db *db, sqlite3_stmt *st)
{
	int rc = st ? sqlite3_step(st) : SQLITE_ERROR;

	if (st)
		sqlite3_finalize(st);
	if (rc == SQLITE_CONSTRAINT)
		return -EEXIST;
	if (rc != SQLITE_DONE) {
		log_err("db: %s", sqlite3_errmsg(db->h));
		return -EIO;
	}
	return 0;
}

static void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

int db_save_vm(struct db *db, const struct vmdef *d)
{
	sqlite3_stmt *st;
	int ret;

	if (db_exec(db, "BEGIN IMMEDIATE"))
		return -EIO;
	st = db_prepare(db,
		"INSERT INTO vms (uuid, name, cpus, memory_mib, kernel, initrd, cmdline, rng, autostart,"
		" restart_policy, cpu_weight, cpu_max) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
		" ON CONFLICT(uuid) DO UPDATE SET name=excluded.name, cpus=excluded.cpus,"
		" memory_mib=excluded.memory_mib, kernel=excluded.kernel, initrd=excluded.initrd,"
		" cmdline=excluded.cmdline, rng=excluded.rng, autostart=excluded.autostart,"
		" restart_policy=excluded.restart_policy, cpu_weight=excluded.cpu_weight,"
		" cpu_max=excluded.cpu_max");
	if (st) {
		sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, d->name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 3, (int)d->cpus);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)d->memory_mib);
		sqlite3_bind_text(st, 5, d->kernel, -1, SQLITE_TRANSIENT);
		bind_opt(st, 6, d->initrd);
		bind_opt(st, 7, d->cmdline);
		sqlite3_bind_int(st, 8, d->rng);
		sqlite3_bind_int(st, 9, d->autostart);
		sqlite3_bind_text(st, 10, restart_policy_name(d->restart), -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 11, (int)d->cpu_weight);
		sqlite3_bind_int(st, 12, (int)d->cpu_max);
	}
	ret = db_step_done(db, st);
	if (!ret) {
		st = db_prepare(db, "DELETE FROM disks WHERE vm_uuid=?");
		if (st)
			sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_TRANSIENT);
		ret = db_step_done(db, st);
	}
	if (!ret) {
		st = db_prepare(db, "DELETE FROM nics WHERE vm_uuid=?");
		if (st)
			sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_TRANSIENT);
		ret = db_step_done(db, st);
	}
	for (unsigned i = 0; !ret && i < d->nr_disks; i++) {
		st = db_prepare(db, "INSERT INTO disks (vm_uuid, idx, path, readonly, id) "
				    "VALUES (?,?,?,?,?)");
		if (st) {
			sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(st, 2, (int)i);
			sqlite3_bind_text(st, 3, d->disks[i].path, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(st, 4, d->disks[i].readonly);
			sqlite3_bind_text(st, 5, d->disks[i].id, -1, SQLITE_TRANSIENT);
		}
		ret = db_step_done(db, st);
	}
	for (unsigned i = 0; !ret && i < d->nr_nics; i++) {
		st = db_prepare(db, "INSERT INTO nics (vm_uuid, idx, tap, mac) VALUES (?,?,?,?)");
		if (st) {
			sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(st, 2, (int)i);
			sqlite3_bind_text(st, 3, d->nics[i].tap, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, 4, d->nics[i].mac, -1, SQLITE_TRANSIENT);
		}
		ret = db_step_done(db, st);
	}
	if (db_exec(db, ret ? "ROLLBACK" : "COMMIT") && !ret)
		ret = -EIO;
	return ret;
}

int db_delete_vm(struct db *db, const char *uuid)
{
	sqlite3_stmt *st = db_prepare(db, "DELETE FROM vms WHERE uuid=?");

	if (st)
		sqlite3_bind_text(st, 1, uuid, -1, SQLITE_TRANSIENT);
	return db_step_done(db, st);
}

int db_save_runtime(struct db *db, const char *uuid, const struct db_runtime *rt)
{
	sqlite3_stmt *st = db_prepare(db,
		"INSERT OR REPLACE INTO runtime (vm_uuid, state, pid, pid_start, started_at,"
		" exit_status, exit_reason, restarts) VALUES (?,?,?,?,?,?,?,?)");

	if (st) {
		sqlite3_bind_text(st, 1, uuid, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, rt->state, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 3, rt->pid);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)rt->pid_start);
		sqlite3_bind_int64(st, 5, rt->started_at);
		sqlite3_bind_int(st, 6, rt->exit_status);
		sqlite3_bind_text(st, 7, rt->exit_reason, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 8, (int)rt->restarts);
	}
	return db_step_done(db, st);
}

int db_get_meta(struct db *db, const char *key, char *value, size_t len)
{
	sqlite3_stmt *st = db_prepare(db, "SELECT value FROM meta WHERE key=?");
	int rc;

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		col_copy(st, 0, value, len);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_set_meta(struct db *db, const char *key, const char *value)
{
	sqlite3_stmt *st = db_prepare(db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)");

	if (st) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT);
	}
	return db_step_done(db, st);
}
