/* sqlite.c: the SQLite store (store/store.h): VM definitions, runtime
 * records, checkpoints, peer hosts, jobs and metadata in one database file. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"

struct db {
	struct store base; /* first: a struct store * is a struct db * */
	sqlite3 *h;
	pthread_mutex_t mu; /* recursive: see "Locking" */
};

#define DB(st) ((struct db *)(st))

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
    "  format TEXT NOT NULL DEFAULT 'raw', iops INTEGER NOT NULL DEFAULT 0,"
    "  iops_burst INTEGER NOT NULL DEFAULT 0, bps INTEGER NOT NULL DEFAULT 0,"
    "  bps_burst INTEGER NOT NULL DEFAULT 0, cbt INTEGER NOT NULL DEFAULT 0,"
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
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS checkpoints ("
    "  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,"
    "  name TEXT NOT NULL, parent TEXT, kind TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  memory INTEGER NOT NULL DEFAULT 0, layers TEXT NOT NULL,"
    "  seq INTEGER NOT NULL, PRIMARY KEY (vm_uuid, name));"
    "CREATE TABLE IF NOT EXISTS hosts ("
    "  name TEXT PRIMARY KEY, url TEXT NOT NULL, token TEXT NOT NULL, tls_name TEXT);"
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  id TEXT PRIMARY KEY, vm_uuid TEXT NOT NULL, kind TEXT NOT NULL, phase TEXT NOT NULL,"
    "  data TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL);";

/* Columns added after the first release: older databases get them on open. */
static const struct {
	const char *table, *column, *decl;
} added_columns[] = {
    {"disks", "format", "TEXT NOT NULL DEFAULT 'raw'"},
    {"disks", "iops", "INTEGER NOT NULL DEFAULT 0"},
    {"disks", "iops_burst", "INTEGER NOT NULL DEFAULT 0"},
    {"disks", "bps", "INTEGER NOT NULL DEFAULT 0"},
    {"disks", "bps_burst", "INTEGER NOT NULL DEFAULT 0"},
    {"disks", "cbt", "INTEGER NOT NULL DEFAULT 0"},
    {"vms", "checkpoint", "TEXT"},
    {"vms", "anti_affinity", "TEXT"},
    {"vms", "anti_affinity_hard", "INTEGER NOT NULL DEFAULT 0"},
    {"vms", "replica", "TEXT"}, /* the replica mark's JSON (vmdef_replica_json), or NULL */
    {"vms", "balloon", "INTEGER NOT NULL DEFAULT 0"},
    {"vms", "memory", "TEXT"}, /* the memory backing's JSON (vmdef_memory_json), or NULL */
    {"vms", "memory_max_mib", "INTEGER NOT NULL DEFAULT 0"}, /* virtio-mem ceiling, 0 none */
    {"vms", "vsock_cid", "INTEGER NOT NULL DEFAULT 0"}, /* virtio-vsock's guest CID, 0 none */
    /* A NIC on a switch (docs/networking.md): its switch, VLAN and policy JSON. */
    {"nics", "switch", "TEXT NOT NULL DEFAULT ''"},
    {"nics", "vlan", "INTEGER NOT NULL DEFAULT 0"},
    {"nics", "policy", "TEXT NOT NULL DEFAULT ''"},
    /* A user-mode NIC (passt) and its port forwards ("tcp:H:G,..."). */
    {"nics", "user", "INTEGER NOT NULL DEFAULT 0"},
    {"nics", "forward", "TEXT NOT NULL DEFAULT ''"},
    {"nics", "queues", "INTEGER NOT NULL DEFAULT 0"}, /* tap queue pairs; 0 or 1: one */
    {"vms", "dynamic_memory", "TEXT"}, /* vmdef_dynmem_record's JSON, or NULL (defaults) */
    {"vms", "cpus_max", "INTEGER NOT NULL DEFAULT 0"}, /* vCPU hot-plug ceiling, 0 none */
};

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

static bool db_has_column(struct db *db, const char *table, const char *column)
{
	char sql[128];
	sqlite3_stmt *st = NULL;
	bool found = false;

	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return false;
	while (!found && sqlite3_step(st) == SQLITE_ROW)
		found = !strcmp((const char *)sqlite3_column_text(st, 1) ?: "", column);
	sqlite3_finalize(st);
	return found;
}

static int db_migrate(struct db *db)
{
	for (size_t i = 0; i < ARRAY_SIZE(added_columns); i++) {
		char sql[256];

		if (db_has_column(db, added_columns[i].table, added_columns[i].column))
			continue;
		snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s",
		         added_columns[i].table, added_columns[i].column, added_columns[i].decl);
		if (db_exec(db, sql))
			return -EIO;
	}
	return 0;
}

static void sq_close(struct store *st_)
{
	struct db *db = DB(st_);

	if (!db)
		return;
	sqlite3_close(db->h);
	pthread_mutex_destroy(&db->mu);
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

/* The "vsock" field, in its own statements (docs/virtio.md). */
static int db_vsock_load(struct db *db, struct vmdef *d);
static int db_vsock_save(struct db *db, const struct vmdef *d);
static int db_cpus_max_load(struct db *db, struct vmdef *d);
static int db_cpus_max_save(struct db *db, const struct vmdef *d);

static int db_load_children(struct db *db, struct vmdef *d)
{
	sqlite3_stmt *st =
	    db_prepare(db, "SELECT path, readonly, id, format, iops, iops_burst, bps,"
	                   " bps_burst, cbt FROM disks WHERE vm_uuid=? ORDER BY idx");

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW && d->nr_disks < VMDEF_MAX_DISKS) {
		struct vmdef_disk *k = &d->disks[d->nr_disks++];

		k->path = col_dup(st, 0);
		k->readonly = sqlite3_column_int(st, 1);
		char fmt[16];

		col_copy(st, 2, k->id, sizeof(k->id));
		if (!k->id[0])
			snprintf(k->id, sizeof(k->id), "disk%u", d->nr_disks - 1);
		col_copy(st, 3, fmt, sizeof(fmt));
		if (vmdef_format_parse(fmt, &k->format))
			k->format = VMDEF_FMT_RAW;
		k->qos.iops = (uint64_t)sqlite3_column_int64(st, 4);
		k->qos.iops_burst = (uint64_t)sqlite3_column_int64(st, 5);
		k->qos.bps = (uint64_t)sqlite3_column_int64(st, 6);
		k->qos.bps_burst = (uint64_t)sqlite3_column_int64(st, 7);
		k->cbt = sqlite3_column_int(st, 8);
	}
	sqlite3_finalize(st);
	st = db_prepare(db, "SELECT tap, mac, switch, vlan, policy, user, forward, queues FROM nics "
			"WHERE vm_uuid=? "
			"ORDER BY idx");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW && d->nr_nics < VMDEF_MAX_NICS) {
		struct vmdef_nic *n = &d->nics[d->nr_nics++];

		col_copy(st, 0, n->tap, sizeof(n->tap));
		col_copy(st, 1, n->mac, sizeof(n->mac));
		col_copy(st, 2, n->sw, sizeof(n->sw));
		n->vlan = (unsigned)sqlite3_column_int(st, 3);
		col_copy(st, 4, n->policy, sizeof(n->policy));
		n->user = sqlite3_column_int(st, 5) != 0;
		col_copy(st, 6, n->forward, sizeof(n->forward));
		n->queues = (unsigned)sqlite3_column_int(st, 7);
	}
	sqlite3_finalize(st);
	return 0;
}

static int sq_load_u(struct store *st_, int (*fn)(void *, struct vmdef *, const struct store_runtime *),
            void *opaque)
{
	struct db *db = DB(st_);
	sqlite3_stmt *st = db_prepare(
	    db,
	    "SELECT v.uuid, v.name, v.cpus, v.memory_mib, v.kernel, v.initrd, v.cmdline, v.rng,"
	    " v.autostart, v.restart_policy, v.cpu_weight, v.cpu_max, r.state, r.pid,"
	    " r.pid_start, r.started_at, r.exit_status, r.exit_reason, r.restarts, v.checkpoint,"
	    " v.anti_affinity, v.anti_affinity_hard, v.replica, v.balloon, v.memory, v.memory_max_mib, v.dynamic_memory FROM vms v LEFT JOIN runtime r ON r.vm_uuid = v.uuid ORDER BY v.created_at, v.name");
	int ret = 0, rc;

	if (!st)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_runtime rt = {.exit_status = -1};
		struct vmdef d;
		char policy[16];

		vmdef_init(&d);
		col_copy(st, 0, d.uuid, sizeof(d.uuid));
		col_copy(st, 1, d.name, sizeof(d.name));
		d.cpus = (unsigned)sqlite3_column_int(st, 2);
		d.memory_mib = (uint64_t)sqlite3_column_int64(st, 3);
		d.kernel = col_dup(st, 4);
		if (d.kernel && !d.kernel[0]) { /* "": boots the first disk's own kernel */
			free(d.kernel);
			d.kernel = NULL;
		}
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
		col_copy(st, 19, d.checkpoint, sizeof(d.checkpoint));
		col_copy(st, 20, d.anti_affinity, sizeof(d.anti_affinity));
		d.anti_affinity_hard = sqlite3_column_int(st, 21);
		d.balloon = sqlite3_column_int(st, 23);
		d.memory_max_mib = (uint64_t)sqlite3_column_int64(st, 25);
		if (sqlite3_column_type(st, 22) != SQLITE_NULL) {
			json_t *rj = json_loads((const char *)sqlite3_column_text(st, 22), 0, NULL);
			struct cerr re = { 0 };

			if (!rj || vmdef_replica_parse(&d, rj, &re))
				log_err("db: VM %s: a bad replica mark (kept as a replica)", d.name);
			d.replica.on = true;
			json_decref(rj);
		}
		if (sqlite3_column_type(st, 24) != SQLITE_NULL) {
			json_t *mj = json_loads((const char *)sqlite3_column_text(st, 24), 0, NULL);
			struct cerr me = { 0 };

			if (!mj || vmdef_memory_parse(&d, mj, &me))
				log_err("db: VM %s: a bad memory backing (the defaults apply)", d.name);
			json_decref(mj);
		}
		if (sqlite3_column_type(st, 26) != SQLITE_NULL) {
			json_t *mj = json_loads((const char *)sqlite3_column_text(st, 26), 0, NULL);
			struct cerr me = { 0 };

			if (!mj || vmdef_dynmem_parse(&d, mj, &me))
				log_err("db: VM %s: bad dynamic memory settings (off)", d.name);
			json_decref(mj);
		}
		ret = db_load_children(db, &d) ?: db_vsock_load(db, &d) ?: db_cpus_max_load(db, &d);
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

static int db_vsock_load(struct db *db, struct vmdef *d)
{
	sqlite3_stmt *st = db_prepare(db, "SELECT vsock_cid FROM vms WHERE uuid=?");
	int64_t cid;

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		cid = sqlite3_column_int64(st, 0);
		d->vsock_cid = cid >= 3 && cid <= 0xfffffffeLL ? (uint32_t)cid : 0;
	}
	sqlite3_finalize(st);
	return 0;
}

static int db_vsock_save(struct db *db, const struct vmdef *d)
{
	sqlite3_stmt *st = db_prepare(db, "UPDATE vms SET vsock_cid=? WHERE uuid=?");

	if (st) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)d->vsock_cid);
		sqlite3_bind_text(st, 2, d->uuid, -1, SQLITE_TRANSIENT);
	}
	return db_step_done(db, st);
}

/* cpus_max, by its own statements as vsock_cid (no column shift in the
 * main ones). */
static int db_cpus_max_load(struct db *db, struct vmdef *d)
{
	sqlite3_stmt *st = db_prepare(db, "SELECT cpus_max FROM vms WHERE uuid=?");
	int64_t n;

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		n = sqlite3_column_int64(st, 0);
		d->cpus_max = n >= d->cpus && n <= VMDEF_MAX_CPUS ? (unsigned)n : 0;
	}
	sqlite3_finalize(st);
	return 0;
}

static int db_cpus_max_save(struct db *db, const struct vmdef *d)
{
	sqlite3_stmt *st = db_prepare(db, "UPDATE vms SET cpus_max=? WHERE uuid=?");

	if (st) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)d->cpus_max);
		sqlite3_bind_text(st, 2, d->uuid, -1, SQLITE_TRANSIENT);
	}
	return db_step_done(db, st);
}

static void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

/* Run sql, whose parameters are all text (NULL binds SQL NULL), to its end. */
static int db_run_texts(struct db *db, const char *sql, const char *const *args, size_t nr)
{
	sqlite3_stmt *st = db_prepare(db, sql);

	for (size_t i = 0; st && i < nr; i++)
		bind_opt(st, (int)i + 1, args[i]);
	return db_step_done(db, st);
}

#define db_run(db, sql, ...)                                                                       \
	db_run_texts(db, sql, (const char *const[]){__VA_ARGS__},                                  \
	             ARRAY_SIZE(((const char *const[]){__VA_ARGS__})))

static int sq_save_vm_u(struct store *st_, const struct vmdef *d)
{
	struct db *db = DB(st_);
	sqlite3_stmt *st;
	int ret;

	/* A savepoint, so that callers may wrap it in a larger transaction. */
	if (db_exec(db, "SAVEPOINT save_vm"))
		return -EIO;
	st = db_prepare(
	    db,
	    "INSERT INTO vms (uuid, name, cpus, memory_mib, kernel, initrd, cmdline, rng, "
	    "autostart,"
	    " restart_policy, cpu_weight, cpu_max, checkpoint, anti_affinity, anti_affinity_hard,"
	    " replica, balloon, memory, memory_max_mib, dynamic_memory)"
	    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
	    " ON CONFLICT(uuid) DO UPDATE SET name=excluded.name, cpus=excluded.cpus,"
	    " memory_mib=excluded.memory_mib, kernel=excluded.kernel, initrd=excluded.initrd,"
	    " cmdline=excluded.cmdline, rng=excluded.rng, autostart=excluded.autostart,"
	    " restart_policy=excluded.restart_policy, cpu_weight=excluded.cpu_weight,"
	    " cpu_max=excluded.cpu_max, checkpoint=excluded.checkpoint,"
	    " anti_affinity=excluded.anti_affinity, anti_affinity_hard=excluded.anti_affinity_hard,"
	    " replica=excluded.replica, balloon=excluded.balloon, memory=excluded.memory,"
	    " memory_max_mib=excluded.memory_max_mib, dynamic_memory=excluded.dynamic_memory");
	if (st) {
		json_t *rj = vmdef_replica_json(d);
		char *rs = rj ? json_dumps(rj, JSON_COMPACT) : NULL;

		sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, d->name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 3, (int)d->cpus);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)d->memory_mib);
		sqlite3_bind_text(st, 5, d->kernel ? d->kernel : "", -1, SQLITE_TRANSIENT);
		bind_opt(st, 6, d->initrd);
		bind_opt(st, 7, d->cmdline);
		sqlite3_bind_int(st, 8, d->rng);
		sqlite3_bind_int(st, 9, d->autostart);
		sqlite3_bind_text(st, 10, restart_policy_name(d->restart), -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 11, (int)d->cpu_weight);
		sqlite3_bind_int(st, 12, (int)d->cpu_max);
		bind_opt(st, 13, d->checkpoint[0] ? d->checkpoint : NULL);
		bind_opt(st, 14, d->anti_affinity[0] ? d->anti_affinity : NULL);
		sqlite3_bind_int(st, 15, d->anti_affinity_hard);
		bind_opt(st, 16, rs);
		sqlite3_bind_int(st, 17, d->balloon);
		sqlite3_bind_int64(st, 19, (sqlite3_int64)d->memory_max_mib);
		json_decref(rj);
		free(rs);
		rj = vmdef_memory_default(d) ? NULL : vmdef_memory_json(d);
		rs = rj ? json_dumps(rj, JSON_COMPACT) : NULL;
		bind_opt(st, 18, rs);
		json_decref(rj);
		free(rs);
		rj = vmdef_dynmem_default(d) ? NULL : vmdef_dynmem_record(d);
		rs = rj ? json_dumps(rj, JSON_COMPACT) : NULL;
		bind_opt(st, 20, rs);
		json_decref(rj);
		free(rs);
	}
	ret = db_step_done(db, st);
	if (!ret)
		ret = db_vsock_save(db, d);
	if (!ret)
		ret = db_cpus_max_save(db, d);
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
		const struct vmdef_disk *k = &d->disks[i];

		st = db_prepare(db,
		                "INSERT INTO disks (vm_uuid, idx, path, readonly, id, format, iops,"
		                " iops_burst, bps, bps_burst, cbt) VALUES (?,?,?,?,?,?,?,?,?,?,?)");
		if (st) {
			sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(st, 2, (int)i);
			sqlite3_bind_text(st, 3, k->path, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(st, 4, k->readonly);
			sqlite3_bind_text(st, 5, k->id, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, 6, vmdef_format_name(k->format), -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 7, (sqlite3_int64)k->qos.iops);
			sqlite3_bind_int64(st, 8, (sqlite3_int64)k->qos.iops_burst);
			sqlite3_bind_int64(st, 9, (sqlite3_int64)k->qos.bps);
			sqlite3_bind_int64(st, 10, (sqlite3_int64)k->qos.bps_burst);
			sqlite3_bind_int(st, 11, k->cbt);
		}
		ret = db_step_done(db, st);
	}
	for (unsigned i = 0; !ret && i < d->nr_nics; i++) {
		st = db_prepare(db, "INSERT INTO nics (vm_uuid, idx, tap, mac, switch, vlan, policy, "
				"user, forward, queues) VALUES (?,?,?,?,?,?,?,?,?,?)");
		if (st) {
			sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(st, 2, (int)i);
			sqlite3_bind_text(st, 3, d->nics[i].tap, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, 4, d->nics[i].mac, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, 5, d->nics[i].sw, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(st, 6, (int)d->nics[i].vlan);
			sqlite3_bind_text(st, 7, d->nics[i].policy, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(st, 8, d->nics[i].user);
			sqlite3_bind_text(st, 9, d->nics[i].forward, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(st, 10, (int)d->nics[i].queues);
		}
		ret = db_step_done(db, st);
	}
	if (ret)
		db_exec(db, "ROLLBACK TO save_vm");
	if (db_exec(db, "RELEASE save_vm") && !ret)
		ret = -EIO;
	return ret;
}

static int sq_delete_vm_u(struct store *st_, const char *uuid)
{
	struct db *db = DB(st_);
	return db_run(db, "DELETE FROM vms WHERE uuid=?", uuid);
}

static int sq_save_runtime_u(struct store *st_, const char *uuid, const struct store_runtime *rt)
{
	struct db *db = DB(st_);
	sqlite3_stmt *st = db_prepare(
	    db, "INSERT OR REPLACE INTO runtime (vm_uuid, state, pid, pid_start, started_at,"
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

static int sq_get_meta_u(struct store *st_, const char *key, char *value, size_t len)
{
	struct db *db = DB(st_);
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

static int sq_set_meta_u(struct store *st_, const char *key, const char *value)
{
	struct db *db = DB(st_);
	return db_run(db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", key, value);
}

/* Checkpoints -------------------------------------------------------------- */

static json_t *sq_cp_list_u(struct store *st_, const char *uuid)
{
	struct db *db = DB(st_);
	sqlite3_stmt *st = db_prepare(db, "SELECT name, parent, kind, created_at, memory, layers"
	                                  " FROM checkpoints WHERE vm_uuid=? ORDER BY seq");
	json_t *arr = json_array();

	if (!st)
		return arr;
	sqlite3_bind_text(st, 1, uuid, -1, SQLITE_TRANSIENT);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *parent = (const char *)sqlite3_column_text(st, 1);
		const char *layers = (const char *)sqlite3_column_text(st, 5);
		json_t *l = layers ? json_loads(layers, 0, NULL) : NULL;

		json_array_append_new(
		    arr, json_pack("{s:s, s:o, s:s, s:I, s:b, s:o}", "name",
		                   (const char *)sqlite3_column_text(st, 0) ?: "", "parent",
		                   parent ? json_string(parent) : json_null(), "kind",
		                   (const char *)sqlite3_column_text(st, 2) ?: "", "created_at",
		                   (json_int_t)sqlite3_column_int64(st, 3), "memory",
		                   sqlite3_column_int(st, 4) != 0, "layers",
		                   json_is_array(l) ? l : json_array()));
		if (l && !json_is_array(l))
			json_decref(l);
	}
	sqlite3_finalize(st);
	return arr;
}

static int sq_cp_put_u(struct store *st_, const char *uuid, json_t *cp)
{
	struct db *db = DB(st_);
	sqlite3_stmt *st = db_prepare(
	    db,
	    "INSERT INTO checkpoints (vm_uuid, name, parent, kind, created_at, memory, layers, seq)"
	    " VALUES (?,?,?,?,?,?,?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM checkpoints))"
	    " ON CONFLICT(vm_uuid, name) DO UPDATE SET parent=excluded.parent,"
	    " kind=excluded.kind, memory=excluded.memory, layers=excluded.layers");
	char *layers = json_dumps(json_object_get(cp, "layers"), JSON_COMPACT);

	if (st) {
		sqlite3_bind_text(st, 1, uuid, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, json_string_value(json_object_get(cp, "name")), -1,
		                  SQLITE_TRANSIENT);
		bind_opt(st, 3, json_string_value(json_object_get(cp, "parent")));
		sqlite3_bind_text(st, 4, json_string_value(json_object_get(cp, "kind")), -1,
		                  SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 5, json_integer_value(json_object_get(cp, "created_at")));
		sqlite3_bind_int(st, 6, json_is_true(json_object_get(cp, "memory")));
		sqlite3_bind_text(st, 7, layers ? layers : "[]", -1, SQLITE_TRANSIENT);
	}
	free(layers);
	return db_step_done(db, st);
}

static int sq_cp_delete_u(struct store *st_, const char *uuid, const char *name)
{
	struct db *db = DB(st_);
	return db_run(db, "DELETE FROM checkpoints WHERE vm_uuid=? AND name=?", uuid, name);
}

/* Peer hosts (moves) ------------------------------------------------------- */

static json_t *sq_host_list_u(struct store *st_, bool with_token)
{
	struct db *db = DB(st_);
	sqlite3_stmt *st = db_prepare(db, "SELECT name, url, token, tls_name FROM hosts"
	                                  " ORDER BY name");
	json_t *arr = json_array();

	if (!st)
		return arr;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *tn = (const char *)sqlite3_column_text(st, 3);
		json_t *h = json_pack("{s:s, s:s, s:o}", "name",
		                      (const char *)sqlite3_column_text(st, 0) ?: "", "url",
		                      (const char *)sqlite3_column_text(st, 1) ?: "", "tls_name",
		                      tn ? json_string(tn) : json_null());

		if (with_token)
			json_object_set_new(
			    h, "token",
			    json_string((const char *)sqlite3_column_text(st, 2) ?: ""));
		json_array_append_new(arr, h);
	}
	sqlite3_finalize(st);
	return arr;
}

static int sq_host_put_u(struct store *st_, const char *name, const char *url, const char *token,
                const char *tls_name)
{
	struct db *db = DB(st_);
	return db_run(db,
	              "INSERT OR REPLACE INTO hosts (name, url, token, tls_name) VALUES (?,?,?,?)",
	              name, url, token, tls_name);
}

static int sq_host_delete_u(struct store *st_, const char *name)
{
	struct db *db = DB(st_);
	sqlite3_stmt *st = db_prepare(db, "DELETE FROM hosts WHERE name=?");

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_DONE) {
		sqlite3_finalize(st);
		return -EIO;
	}
	sqlite3_finalize(st);
	return sqlite3_changes(db->h) ? 0 : -ENOENT;
}

/* Jobs --------------------------------------------------------------------- */

static int sq_job_put_u(struct store *st_, const struct store_job *job)
{
	struct db *db = DB(st_);
	sqlite3_stmt *st = db_prepare(
	    db, "INSERT INTO jobs (id, vm_uuid, kind, phase, data, created_at, seq)"
	        " VALUES (?,?,?,?,?,?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs))"
	        " ON CONFLICT(id) DO UPDATE SET phase=excluded.phase, data=excluded.data");
	char *data = job->data ? json_dumps(job->data, JSON_COMPACT) : NULL;

	if (st) {
		sqlite3_bind_text(st, 1, job->id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, job->vm_uuid, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, job->kind, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 4, job->phase, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 5, data ? data : "{}", -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 6, job->created_at);
	}
	free(data);
	return db_step_done(db, st);
}

static int sq_job_delete_u(struct store *st_, const char *id)
{
	struct db *db = DB(st_);

	return db_run(db, "DELETE FROM jobs WHERE id=?", id);
}

static int sq_job_list_u(struct store *st_, struct store_job **out, unsigned *n)
{
	struct db *db = DB(st_);
	sqlite3_stmt *st = db_prepare(db, "SELECT id, vm_uuid, kind, phase, data, created_at"
	                                  " FROM jobs ORDER BY seq");
	struct store_job *jobs = NULL;
	unsigned count = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (!st)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_job *j, *grown = realloc(jobs, (count + 1) * sizeof(*jobs));
		const char *data = (const char *)sqlite3_column_text(st, 4);

		if (!grown) {
			rc = SQLITE_NOMEM;
			break;
		}
		jobs = grown;
		j = &jobs[count++];
		memset(j, 0, sizeof(*j));
		col_copy(st, 0, j->id, sizeof(j->id));
		col_copy(st, 1, j->vm_uuid, sizeof(j->vm_uuid));
		col_copy(st, 2, j->kind, sizeof(j->kind));
		col_copy(st, 3, j->phase, sizeof(j->phase));
		j->data = data ? json_loads(data, 0, NULL) : NULL;
		if (!json_is_object(j->data)) {
			json_decref(j->data);
			j->data = json_object();
		}
		j->created_at = sqlite3_column_int64(st, 5);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		for (unsigned i = 0; i < count; i++)
			json_decref(jobs[i].data);
		free(jobs);
		return -EIO;
	}
	*out = jobs;
	*n = count;
	return 0;
}

/* Only this cellad writes its database: there is nothing to be told. */
static int sq_watch(struct store *st_, store_watch_fn fn, void *opaque)
{
	(void)st_;
	(void)fn;
	(void)opaque;
	return 0;
}

/* Locking ------------------------------------------------------------------
 * One connection serves every thread: each call holds the store's mutex,
 * and a transaction holds it from store_begin to store_end (recursive, so
 * the calls inside it take it again), so no other thread's statement lands
 * inside someone else's transaction. */

/* Loading reads every row under the mutex, then calls the caller's fn
 * without it: fn may take other locks and call the store again. */
struct loaded {
	struct vmdef *defs;
	struct store_runtime *rts;
	size_t n;
};

static int collect_one(void *opaque, struct vmdef *def, const struct store_runtime *rt)
{
	struct loaded *l = opaque;
	struct vmdef *d = realloc(l->defs, (l->n + 1) * sizeof(*d));
	struct store_runtime *r;

	if (!d)
		return -ENOMEM;
	l->defs = d;
	r = realloc(l->rts, (l->n + 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	l->rts = r;
	if (vmdef_copy(&l->defs[l->n], def))
		return -ENOMEM;
	l->rts[l->n++] = *rt;
	return 0;
}

static int sq_load(struct store *st_, int (*fn)(void *, struct vmdef *, const struct store_runtime *), void *opaque)
{
	struct db *db = DB(st_);
	struct loaded l = { 0 };
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_load_u(st_, collect_one, &l);
	pthread_mutex_unlock(&db->mu);
	for (size_t i = 0; i < l.n; i++) {
		if (!r)
			r = fn(opaque, &l.defs[i], &l.rts[i]);
		vmdef_free(&l.defs[i]);
	}
	free(l.defs);
	free(l.rts);
	return r;
}

static int sq_save_vm(struct store *st_, const struct vmdef *d)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_save_vm_u(st_, d);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_delete_vm(struct store *st_, const char *uuid)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_delete_vm_u(st_, uuid);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_save_runtime(struct store *st_, const char *uuid, const struct store_runtime *rt)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_save_runtime_u(st_, uuid, rt);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_get_meta(struct store *st_, const char *key, char *value, size_t len)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_get_meta_u(st_, key, value, len);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_set_meta(struct store *st_, const char *key, const char *value)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_set_meta_u(st_, key, value);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static json_t *sq_cp_list(struct store *st_, const char *uuid)
{
	struct db *db = DB(st_);
	json_t *r;

	pthread_mutex_lock(&db->mu);
	r = sq_cp_list_u(st_, uuid);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_cp_put(struct store *st_, const char *uuid, json_t *cp)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_cp_put_u(st_, uuid, cp);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_cp_delete(struct store *st_, const char *uuid, const char *name)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_cp_delete_u(st_, uuid, name);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static json_t *sq_host_list(struct store *st_, bool with_token)
{
	struct db *db = DB(st_);
	json_t *r;

	pthread_mutex_lock(&db->mu);
	r = sq_host_list_u(st_, with_token);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_host_put(struct store *st_, const char *name, const char *url, const char *token, const char *tls_name)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_host_put_u(st_, name, url, token, tls_name);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_host_delete(struct store *st_, const char *name)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_host_delete_u(st_, name);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_job_put(struct store *st_, const struct store_job *job)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_job_put_u(st_, job);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_job_delete(struct store *st_, const char *id)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_job_delete_u(st_, id);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_job_list(struct store *st_, struct store_job **out, unsigned *n)
{
	struct db *db = DB(st_);
	int r;

	pthread_mutex_lock(&db->mu);
	r = sq_job_list_u(st_, out, n);
	pthread_mutex_unlock(&db->mu);
	return r;
}

static int sq_begin(struct store *st_)
{
	struct db *db = DB(st_);
	int ret;

	pthread_mutex_lock(&db->mu); /* held until sq_end */
	ret = db_exec(db, "BEGIN IMMEDIATE");
	if (ret)
		pthread_mutex_unlock(&db->mu);
	return ret;
}

static int sq_end(struct store *st_, int ret)
{
	struct db *db = DB(st_);

	if (db_exec(db, ret ? "ROLLBACK" : "COMMIT") && !ret)
		ret = -EIO;
	pthread_mutex_unlock(&db->mu);
	return ret;
}

static const struct store_ops sqlite_ops = {
	.name = "sqlite",
	.close = sq_close,
	.load = sq_load,
	.vm_put = sq_save_vm,
	.vm_delete = sq_delete_vm,
	.runtime_put = sq_save_runtime,
	.meta_get = sq_get_meta,
	.meta_set = sq_set_meta,
	.begin = sq_begin,
	.end = sq_end,
	.cp_list = sq_cp_list,
	.cp_put = sq_cp_put,
	.cp_delete = sq_cp_delete,
	.host_list = sq_host_list,
	.host_put = sq_host_put,
	.host_delete = sq_host_delete,
	.job_put = sq_job_put,
	.job_delete = sq_job_delete,
	.job_list = sq_job_list,
	.watch = sq_watch,
};

int store_sqlite_open(struct store **out, const char *path, char *err, size_t errlen)
{
	struct db *db = calloc(1, sizeof(*db));

	if (!db)
		return -ENOMEM;
	db->base.ops = &sqlite_ops;
	{
		pthread_mutexattr_t a;

		pthread_mutexattr_init(&a);
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&db->mu, &a);
		pthread_mutexattr_destroy(&a);
	}
	if (sqlite3_open_v2(path, &db->h,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
		         db->h ? sqlite3_errmsg(db->h) : "cannot open");
		sq_close(&db->base);
		return -EIO;
	}
	sqlite3_busy_timeout(db->h, 5000);
	if (db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
	                "PRAGMA synchronous=NORMAL;") ||
	    db_exec(db, schema) || db_migrate(db)) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db->h));
		sq_close(&db->base);
		return -EIO;
	}
	db->base.ops = &sqlite_ops;
	*out = &db->base;
	return 0;
}
