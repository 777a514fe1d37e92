/* vmdef.h: a VM definition (what SQLite stores): validation of API input
 * field by field, JSON views, and the cella-vm configuration it becomes. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"
#include "conf/limits.h"
#include "conf/memory.h"
#include "cerr.h"

/* The limits of a VM's configuration are the shared schema's
 * (conf/limits.h): cella-vm and the CLI check the same ones. */
#define VMDEF_NAME_MAX   63
#define VMDEF_MAX_DISKS  CONF_MAX_DISKS
#define VMDEF_MAX_NICS   CONF_MAX_NICS
#define VMDEF_MAX_CPUS   CONF_MAX_CPUS
#define VMDEF_MIN_MEM    CONF_MIN_MEM_MIB
#define VMDEF_MAX_MEM    CONF_MAX_MEM_MIB
#define VMDEF_CMDLINE_MAX CONF_CMDLINE_MAX

enum restart_policy { RESTART_NEVER, RESTART_ON_CRASH, RESTART_ALWAYS };

/* Per-disk I/O limits (0 = unlimited); IOPS are normalised to 8 KiB by the
 * worker. */
struct vmdef_qos {
	uint64_t iops, iops_burst, bps, bps_burst;
};

#define VMDEF_QOS_MAX CONF_QOS_MAX

enum vmdef_disk_format { VMDEF_FMT_RAW, VMDEF_FMT_QCOW2 };

struct vmdef_disk {
	char *path;       /* the image the worker opens (the top layer) */
	bool readonly;
	char id[CONF_DISK_ID_MAX + 1]; /* always set: given, or "diskN" */
	enum vmdef_disk_format format; /* pinned when defined (probed if not given) */
	struct vmdef_qos qos;
	bool cbt;         /* changed-block tracking */
};

#define VMDEF_SWITCH_MAX 32   /* a switch's name (daemon/net/switch.h) */
#define VMDEF_POLICY_MAX 2048 /* a port policy, compact JSON */
#define VMDEF_FORWARDS_MAX 32 /* port forwards of one user NIC */
#define VMDEF_FORWARD_MAX (VMDEF_FORWARDS_MAX * 16) /* their text */

/* A NIC is a tap the administrator made ("tap"), or a port on one of
 * cellad's switches ("switch"), whose tap cellad makes at each start
 * (vmdef_nic_tap) with the port's policy (daemon/net/portpol.h). */
struct vmdef_nic {
	char tap[CONF_TAP_NAME_MAX + 1];
	char mac[18]; /* "" = derived by cella-vm (tap) or vmdef_nic_mac (switch) */
	char sw[VMDEF_SWITCH_MAX + 1]; /* "" = a tap NIC */
	unsigned vlan;                 /* 1..4094: the port's access VLAN; 0 none */
	/* Queue pairs (docs/networking.md, "Multiqueue"): cellad opens the
	 * tap with IFF_MULTI_QUEUE and hands the worker this many queues;
	 * 0 or 1: one queue, as before. At most CONF_NET_MAX_QUEUES and cpus. */
	unsigned queues;
	char policy[VMDEF_POLICY_MAX]; /* the "policy" object as compact JSON; "" none */
	/* User-mode networking through passt (daemon/core/sup_usernet.c): no tap. */
	bool user;
	char forward[VMDEF_FORWARD_MAX]; /* "tcp:HOST:GUEST,udp:..."; "" none */
};

#define VMDEF_HA_PRIORITY_MAX 1000

/* Dynamic memory with Hyper-V's semantics (docs/memory.md): memory_mib is
 * the startup memory; cellad's balancer (features/dynmem.c) moves the
 * guest between minimum_mib and maximum_mib by its balloon (and by
 * virtio-mem above the startup memory). */
#define VMDEF_DYNMEM_BUFFER_MIN 5
#define VMDEF_DYNMEM_BUFFER_MAX 2000
#define VMDEF_DYNMEM_WEIGHT_MAX 10000
struct vmdef_dynmem {
	bool enabled;
	uint64_t minimum_mib, maximum_mib; /* 0: not given (the startup memory) */
	unsigned buffer_pct;               /* 5..2000, default 20 */
	unsigned weight;                   /* 1..10000, default 5000 */
};

struct vmdef {
	char name[VMDEF_NAME_MAX + 1];
	char uuid[37];
	unsigned cpus;
	/* vCPU hot-plug ceiling (docs/guests.md): 0 = none; else the most vCPUs
	 * a running VM may be given (cella vm set --cpus); cpus <= cpus_max. */
	unsigned cpus_max;
	uint64_t memory_mib;
	struct mem_backing_config memory; /* "memory": merge, hugepages, prealloc (docs/memory.md) */
	struct vmdef_dynmem dynmem;       /* "dynamic_memory" (docs/memory.md, "Dynamic memory") */
	char *kernel, *initrd, *cmdline;
	struct vmdef_disk disks[VMDEF_MAX_DISKS];
	unsigned nr_disks;
	struct vmdef_nic nics[VMDEF_MAX_NICS];
	unsigned nr_nics;
	bool rng;
	bool balloon;     /* virtio-balloon with statistics, free page reporting and
			   * deflate-on-OOM (docs/memory.md) */
	/* Hot-plug ceiling (virtio-mem, docs/memory.md): 0 = none; else the
	 * most memory a running VM may be given (cella vm set --memory). */
	uint64_t memory_max_mib;
	uint32_t vsock_cid; /* virtio-vsock's guest CID (>= 3); 0: no vsock (docs/virtio.md) */
	bool autostart;
	enum restart_policy restart;
	unsigned cpu_weight; /* 1..10000, like Set-VMProcessor -RelativeWeight */
	unsigned cpu_max;    /* 1..100 % of the VM's vCPUs; 100 = no cap (-Maximum) */
	/* High availability (docs/pool.md, "High availability"): restarted on a
	 * surviving host of the pool when its host fails; higher ha_priority
	 * first. Needs a pool, and every disk on pool storage (sup_check_paths). */
	bool ha;
	unsigned ha_priority; /* 0..VMDEF_HA_PRIORITY_MAX */
	/* Anti-affinity group (docs/pool.md, "Placement on start"): placement
	 * keeps the VMs of one group on different hosts; "" none. Soft unless
	 * anti_affinity_hard (then a host with a member is refused). */
	char anti_affinity[VMDEF_NAME_MAX + 1];
	bool anti_affinity_hard;
	char checkpoint[VMDEF_NAME_MAX + 1]; /* the current checkpoint ("" none): not an
					      * API field; checkpoints set it */
	/* A replica of another host's VM kept here (docs/replica.md, "The
	 * replica as a VM definition"): set by replication only (POST
	 * /v1/vms refuses it); such a VM is never started, changed or deleted
	 * here until a failover clears the mark. */
	struct vmdef_replica {
		bool on;
		char source[256];    /* the source host ("" unknown) */
		char last_point[32]; /* the latest point every disk has ("" none yet) */
	} replica;
};

void vmdef_init(struct vmdef *d);
void vmdef_free(struct vmdef *d);
/* A switch NIC's tap: "ct" + 10 hex digits of the UUID + "." + index. */
void vmdef_nic_tap(const struct vmdef *d, unsigned i, char out[16]);
/* A switch NIC's MAC: its own, or one derived from the UUID and index. */
void vmdef_nic_mac(const struct vmdef *d, unsigned i, char out[18]);
/* One port forward of a user NIC ("tcp:H:G"): 0, -1 malformed, -2 a port
 * outside 1..65535. */
int vmdef_forward_parse(const char *s, bool *udp, unsigned *host, unsigned *guest);
/* Walk a user NIC's forward text: the next entry after parsing p's first,
 * or NULL at the end. */
const char *vmdef_forward_next(const char *p, bool *udp, unsigned *host, unsigned *guest);
/* Deep copy; returns 0 or -ENOMEM. */
int vmdef_copy(struct vmdef *dst, const struct vmdef *src) __must_check;

/* Build a definition from a create request. Unknown fields, wrong types
 * and out-of-range values fail with 400 naming the field. Returns 0 or -1. */
int vmdef_from_json(struct vmdef *d, json_t *body, struct cerr *e) __must_check;

/* Apply a change request to d. When `running`, only the fields in
 * vmdef_live_fields may change (409 otherwise, naming the field).
 * *live_changed is set when cgroup limits must be re-applied. 0 or -1. */
int vmdef_patch(struct vmdef *d, json_t *body, bool running, bool *limits_changed,
		struct cerr *e) __must_check;

json_t *vmdef_to_json(const struct vmdef *d);
json_t *vmdef_disk_json(const struct vmdef_disk *dk);
/* Index of the disk with this id, or -1. */
int vmdef_disk_find(const struct vmdef *d, const char *id);
/* Parse a QoS object into q (fields absent keep their value). field names
 * the object in errors ("qos", "disks[0].qos"). 0 or -1. */
int vmdef_qos_parse(struct vmdef_qos *q, json_t *v, const char *field, struct cerr *e) __must_check;
json_t *vmdef_qos_json(const struct vmdef_qos *q);
const char *vmdef_format_name(enum vmdef_disk_format f);
int vmdef_format_parse(const char *s, enum vmdef_disk_format *f) __must_check;
/* "qcow2" when the file starts with the qcow2 magic, else "raw". */
int vmdef_format_probe(const char *path, enum vmdef_disk_format *f) __must_check;
/* The cella-vm --config document (console and control are flags). */
json_t *vmdef_worker_config(const struct vmdef *d);

/* vmdef_cpus.c: the "cpus_max" field (0, null, or cpus..32) into
 * d->cpus_max (0, or -1 with e); the check against cpus and the command
 * line (acpi=off); whether the VM has room for more vCPUs; and its keys in
 * the worker's configuration (cpus_max, acpi: hot-plug goes through ACPI). */
int vmdef_cpus_max_parse(struct vmdef *d, json_t *v, struct cerr *e) __must_check;
int vmdef_cpus_check(const struct vmdef *d, struct cerr *e) __must_check;
bool vmdef_cpus_hotplug(const struct vmdef *d);
void vmdef_cpus_worker(const struct vmdef *d, json_t *cfg);

/* vmdef_vsock.c: the "vsock" field (true, {"cid": N}, false or null) into
 * d->vsock_cid (0, or -1 with e naming the key); its JSON (null or
 * {"cid": N}); and its device in the worker's configuration. */
#define VMDEF_VSOCK_CID_DEFAULT 3
int vmdef_vsock_parse(struct vmdef *d, json_t *v, struct cerr *e) __must_check;
json_t *vmdef_vsock_json(const struct vmdef *d);
void vmdef_vsock_worker(const struct vmdef *d, json_t *cfg);

/* vmdef_memory.c: the "memory" field ({merge, hugepages, prealloc}; null:
 * the defaults) parsed into d->memory (0, or -1 with e naming the key), its
 * view, and whether it is all defaults. */
int vmdef_memory_parse(struct vmdef *d, json_t *v, struct cerr *e) __must_check;
json_t *vmdef_memory_json(const struct vmdef *d);
bool vmdef_memory_default(const struct vmdef *d);

/* vmdef_dynmem.c: the "dynamic_memory" field ({enabled, minimum_mib,
 * maximum_mib, buffer_pct, weight}; absent members keep their value, null
 * turns it off with the defaults) parsed into d->dynmem (0, or -1 with e
 * naming the member); vmdef_dynmem_check tests it against the rest of the
 * definition (minimum <= memory_mib <= maximum, the balloon, the ceiling);
 * its view; the effective minimum and maximum (0 members resolved). */
int vmdef_dynmem_parse(struct vmdef *d, json_t *v, struct cerr *e) __must_check;
int vmdef_dynmem_check(const struct vmdef *d, struct cerr *e) __must_check;
json_t *vmdef_dynmem_json(const struct vmdef *d);
/* What the store keeps: defaults as null; and whether all are defaults. */
json_t *vmdef_dynmem_record(const struct vmdef *d);
bool vmdef_dynmem_default(const struct vmdef *d);
uint64_t vmdef_dynmem_min(const struct vmdef *d);
uint64_t vmdef_dynmem_max(const struct vmdef *d);
/* The most memory the guest can reach: memory_mib with a balloon only,
 * the virtio-mem maximum where the definition has one. */
uint64_t vmdef_dynmem_ceiling(const struct vmdef *d);

/* vmdef_replica.c: the "replica" field: {source, last_point} parsed into
 * d->replica (0, or -1 with e), and its view ({source, state, last_point}),
 * NULL when d is no replica. */
int vmdef_replica_parse(struct vmdef *d, json_t *v, struct cerr *e) __must_check;
json_t *vmdef_replica_json(const struct vmdef *d);

const char *restart_policy_name(enum restart_policy p);
int restart_policy_parse(const char *s, enum restart_policy *p) __must_check;
/* Names: 1-63 of [A-Za-z0-9._-], starting with a letter or digit. */
bool vmdef_name_valid(const char *s);
