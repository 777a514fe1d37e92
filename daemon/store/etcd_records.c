/* etcd_records.c: the etcd store's values to JSON and back (etcd_records.h). */
#include "etcd_records.h"
#include "conf/net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A string field into a fixed buffer: absent is "", too long is an error. */
static int rec_str(json_t *j, const char *field, char *dst, size_t len)
{
	json_t *v = json_object_get(j, field);
	const char *s = json_string_value(v);

	dst[0] = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!s || strlen(s) >= len)
		return -EINVAL;
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

/* A string field malloc'd (absent or null: NULL). */
static int rec_dup(json_t *j, const char *field, char **dst, bool required)
{
	json_t *v = json_object_get(j, field);

	*dst = NULL;
	if (!v || json_is_null(v))
		return required ? -EINVAL : 0;
	if (!json_is_string(v) || json_string_length(v) > 1u << 16 ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return -EINVAL;
	*dst = strdup(json_string_value(v));
	return *dst ? 0 : -ENOMEM;
}

static int rec_uint(json_t *j, const char *field, uint64_t max, uint64_t *dst)
{
	json_t *v = json_object_get(j, field);

	if (!v)
		return 0; /* the default the caller set */
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return -EINVAL;
	*dst = (uint64_t)json_integer_value(v);
	return 0;
}

static int rec_int(json_t *j, const char *field, int64_t min, int64_t max, int64_t *dst)
{
	json_t *v = json_object_get(j, field);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return -EINVAL;
	*dst = json_integer_value(v);
	return 0;
}

static int rec_bool(json_t *j, const char *field, bool *dst)
{
	json_t *v = json_object_get(j, field);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return -EINVAL;
	*dst = json_is_true(v);
	return 0;
}

static json_t *opt_string(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* The record with the placement fields (kept out of the pack above). */
static json_t *rec_vmdef_placement(json_t *j, const struct vmdef *d)
{
	if (j && d->anti_affinity[0]) {
		json_object_set_new(j, "anti_affinity", json_string(d->anti_affinity));
		json_object_set_new(j, "anti_affinity_hard", json_boolean(d->anti_affinity_hard));
	}
	if (j && d->replica.on)
		json_object_set_new(j, "replica", vmdef_replica_json(d));
	if (j && d->vsock_cid)
		json_object_set_new(j, "vsock", vmdef_vsock_json(d));
	if (j && d->cpus_max)
		json_object_set_new(j, "cpus_max", json_integer(d->cpus_max));
	return j;
}

json_t *etcd_rec_vmdef_json(const struct vmdef *d)
{
	json_t *disks = json_array(), *nics = json_array();

	for (unsigned i = 0; i < d->nr_disks; i++) {
		const struct vmdef_disk *k = &d->disks[i];

		json_array_append_new(
		    disks, json_pack("{s:s, s:b, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "path",
				     k->path ? k->path : "", "readonly", k->readonly, "id", k->id,
				     "format", vmdef_format_name(k->format), "iops",
				     (json_int_t)k->qos.iops, "iops_burst", (json_int_t)k->qos.iops_burst,
				     "bps", (json_int_t)k->qos.bps, "bps_burst",
				     (json_int_t)k->qos.bps_burst, "cbt", k->cbt));
	}
	for (unsigned i = 0; i < d->nr_nics; i++) {
		const struct vmdef_nic *n = &d->nics[i];
		json_t *o = json_pack("{s:s, s:s}", "tap", n->tap, "mac", n->mac);

		/* A switch port (docs/networking.md): policy as its compact JSON text. */
		if (n->sw[0])
			json_object_set_new(o, "switch", json_string(n->sw));
		if (n->vlan)
			json_object_set_new(o, "vlan", json_integer(n->vlan));
		if (n->policy[0])
			json_object_set_new(o, "policy", json_string(n->policy));
		if (n->user) /* user-mode networking: forwards as their text */
			json_object_set_new(o, "user", json_true());
		if (n->forward[0])
			json_object_set_new(o, "forward", json_string(n->forward));
		if (n->queues > 1)
			json_object_set_new(o, "queues", json_integer(n->queues));
		json_array_append_new(nics, o);
	}
	return rec_vmdef_placement(json_pack("{s:s, s:s, s:i, s:I, s:s, s:o, s:o, s:b, s:b, s:s, s:i, s:i, s:o, s:o,"
			 " s:o, s:b, s:i, s:b, s:o, s:o, s:I}",
			 "uuid", d->uuid, "name", d->name, "cpus", (int)d->cpus, "memory_mib",
			 (json_int_t)d->memory_mib, "kernel", d->kernel ? d->kernel : "", "initrd",
			 opt_string(d->initrd), "cmdline", opt_string(d->cmdline), "rng", d->rng,
			 "autostart", d->autostart, "restart_policy", restart_policy_name(d->restart),
			 "cpu_weight", (int)d->cpu_weight, "cpu_max", (int)d->cpu_max, "checkpoint",
			 d->checkpoint[0] ? json_string(d->checkpoint) : json_null(), "disks", disks,
			 "nics", nics, "ha", d->ha, "ha_priority", (int)d->ha_priority, "balloon",
			 d->balloon, "memory", vmdef_memory_json(d), "dynamic_memory",
			 vmdef_dynmem_record(d), "memory_max_mib", (json_int_t)d->memory_max_mib), d);
}


static int rec_disk(json_t *j, struct vmdef_disk *k, unsigned idx)
{
	char fmt[16];
	int ret;

	if (!json_is_object(j))
		return -EINVAL;
	ret = rec_dup(j, "path", &k->path, true) ?: rec_bool(j, "readonly", &k->readonly) ?:
	      rec_str(j, "id", k->id, sizeof(k->id)) ?: rec_str(j, "format", fmt, sizeof(fmt)) ?:
	      rec_uint(j, "iops", VMDEF_QOS_MAX, &k->qos.iops) ?:
	      rec_uint(j, "iops_burst", VMDEF_QOS_MAX, &k->qos.iops_burst) ?:
	      rec_uint(j, "bps", VMDEF_QOS_MAX, &k->qos.bps) ?:
	      rec_uint(j, "bps_burst", VMDEF_QOS_MAX, &k->qos.bps_burst) ?:
	      rec_bool(j, "cbt", &k->cbt);
	if (ret)
		return ret;
	if (!k->id[0])
		snprintf(k->id, sizeof(k->id), "disk%u", idx);
	if (fmt[0] && vmdef_format_parse(fmt, &k->format))
		return -EINVAL;
	return 0;
}

int etcd_rec_vmdef(json_t *j, struct vmdef *d)
{
	json_t *disks, *nics, *v;
	uint64_t n;
	char policy[16];
	size_t i;
	int ret;

	vmdef_init(d);
	if (!json_is_object(j))
		return -EINVAL;
	ret = rec_str(j, "uuid", d->uuid, sizeof(d->uuid)) ?:
	      rec_str(j, "name", d->name, sizeof(d->name)) ?:
	      rec_dup(j, "kernel", &d->kernel, false) ?: rec_dup(j, "initrd", &d->initrd, false) ?:
	      rec_dup(j, "cmdline", &d->cmdline, false) ?: rec_bool(j, "rng", &d->rng) ?:
	      rec_bool(j, "autostart", &d->autostart) ?: rec_bool(j, "ha", &d->ha) ?:
	      rec_str(j, "restart_policy", policy, sizeof(policy)) ?:
	      rec_str(j, "checkpoint", d->checkpoint, sizeof(d->checkpoint)) ?:
	      rec_str(j, "anti_affinity", d->anti_affinity, sizeof(d->anti_affinity)) ?:
	      rec_bool(j, "anti_affinity_hard", &d->anti_affinity_hard) ?:
	      rec_bool(j, "balloon", &d->balloon);
	if (ret)
		return ret;
	if (d->kernel && !d->kernel[0]) { /* "": boots the first disk's own kernel */
		free(d->kernel);
		d->kernel = NULL;
	}
	if (!d->uuid[0] || !d->name[0] || (policy[0] && restart_policy_parse(policy, &d->restart)))
		return -EINVAL;
	if (json_object_get(j, "replica")) {
		struct cerr re = { 0 };

		if (vmdef_replica_parse(d, json_object_get(j, "replica"), &re))
			return -EINVAL;
	}
	if (json_object_get(j, "vsock")) {
		struct cerr ve = { 0 };

		if (vmdef_vsock_parse(d, json_object_get(j, "vsock"), &ve))
			return -EINVAL;
	}
	if (json_object_get(j, "memory")) {
		struct cerr me = { 0 };

		if (vmdef_memory_parse(d, json_object_get(j, "memory"), &me))
			return -EINVAL;
	}
	if (json_object_get(j, "dynamic_memory")) {
		struct cerr me = { 0 };

		if (vmdef_dynmem_parse(d, json_object_get(j, "dynamic_memory"), &me))
			return -EINVAL;
	}
	n = d->cpus;
	if (rec_uint(j, "cpus", VMDEF_MAX_CPUS, &n) || n < 1)
		return -EINVAL;
	d->cpus = (unsigned)n;
	n = d->cpus_max;
	if (rec_uint(j, "cpus_max", VMDEF_MAX_CPUS, &n) || (n && n < d->cpus))
		return -EINVAL;
	d->cpus_max = (unsigned)n;
	if (rec_uint(j, "memory_mib", VMDEF_MAX_MEM, &d->memory_mib) ||
	    d->memory_mib < VMDEF_MIN_MEM ||
	    rec_uint(j, "memory_max_mib", VMDEF_MAX_MEM, &d->memory_max_mib))
		return -EINVAL;
	n = d->cpu_weight;
	if (rec_uint(j, "cpu_weight", 10000, &n) || n < 1)
		return -EINVAL;
	d->cpu_weight = (unsigned)n;
	n = d->cpu_max;
	if (rec_uint(j, "cpu_max", 100, &n) || n < 1)
		return -EINVAL;
	d->cpu_max = (unsigned)n;
	n = 0;
	if (rec_uint(j, "ha_priority", VMDEF_HA_PRIORITY_MAX, &n))
		return -EINVAL;
	d->ha_priority = (unsigned)n;
	disks = json_object_get(j, "disks");
	nics = json_object_get(j, "nics");
	if ((disks && !json_is_array(disks)) || json_array_size(disks) > VMDEF_MAX_DISKS ||
	    (nics && !json_is_array(nics)) || json_array_size(nics) > VMDEF_MAX_NICS)
		return -EINVAL;
	json_array_foreach(disks, i, v) {
		ret = rec_disk(v, &d->disks[d->nr_disks++], (unsigned)i);
		if (ret)
			return ret;
	}
	json_array_foreach(nics, i, v) {
		struct vmdef_nic *nic = &d->nics[d->nr_nics++];

		json_t *vlan;

		if (!json_is_object(v) || rec_str(v, "tap", nic->tap, sizeof(nic->tap)) ||
		    rec_str(v, "mac", nic->mac, sizeof(nic->mac)) ||
		    rec_str(v, "switch", nic->sw, sizeof(nic->sw)) ||
		    rec_str(v, "policy", nic->policy, sizeof(nic->policy)) ||
		    rec_str(v, "forward", nic->forward, sizeof(nic->forward)))
			return -EINVAL;
		nic->user = json_is_true(json_object_get(v, "user"));
		vlan = json_object_get(v, "vlan");
		if (vlan && (!json_is_integer(vlan) || json_integer_value(vlan) < 0 ||
			     json_integer_value(vlan) > 4094))
			return -EINVAL;
		nic->vlan = (unsigned)json_integer_value(vlan);
		vlan = json_object_get(v, "queues");
		if (vlan && (!json_is_integer(vlan) || json_integer_value(vlan) < 0 ||
			     json_integer_value(vlan) > CONF_NET_MAX_QUEUES))
			return -EINVAL;
		nic->queues = (unsigned)json_integer_value(vlan);
	}
	return 0;
}

json_t *etcd_rec_runtime_json(const struct store_runtime *rt)
{
	return json_pack("{s:s, s:i, s:I, s:I, s:i, s:s, s:i}", "state", rt->state, "pid", rt->pid,
			 "pid_start", (json_int_t)rt->pid_start, "started_at",
			 (json_int_t)rt->started_at, "exit_status", rt->exit_status, "exit_reason",
			 rt->exit_reason, "restarts", (int)rt->restarts);
}

int etcd_rec_runtime(json_t *j, struct store_runtime *rt)
{
	int64_t pid = 0, status = -1, restarts = 0, started = 0, pid_start = 0;
	int ret;

	if (!json_is_object(j))
		return -EINVAL;
	ret = rec_str(j, "state", rt->state, sizeof(rt->state)) ?:
	      rec_int(j, "pid", 0, INT32_MAX, &pid) ?:
	      rec_int(j, "pid_start", 0, INT64_MAX, &pid_start) ?:
	      rec_int(j, "started_at", INT64_MIN, INT64_MAX, &started) ?:
	      rec_int(j, "exit_status", -1, INT32_MAX, &status) ?:
	      rec_str(j, "exit_reason", rt->exit_reason, sizeof(rt->exit_reason)) ?:
	      rec_int(j, "restarts", 0, INT32_MAX, &restarts);
	if (ret || !rt->state[0])
		return -EINVAL;
	rt->pid = (int)pid;
	rt->pid_start = (uint64_t)pid_start;
	rt->started_at = started;
	rt->exit_status = (int)status;
	rt->restarts = (unsigned)restarts;
	return 0;
}

json_t *etcd_rec_checkpoint(json_t *cp)
{
	json_t *parent = json_object_get(cp, "parent"), *layers = json_object_get(cp, "layers");
	json_t *created = json_object_get(cp, "created_at");
	const char *name = json_string_value(json_object_get(cp, "name"));
	const char *kind = json_string_value(json_object_get(cp, "kind"));

	return json_pack("{s:s, s:o, s:s, s:I, s:b, s:o}", "name", name ? name : "", "parent",
			 json_is_string(parent) ? json_copy(parent) : json_null(), "kind",
			 kind ? kind : "", "created_at",
			 json_is_integer(created) ? json_integer_value(created) : (json_int_t)0,
			 "memory", json_is_true(json_object_get(cp, "memory")), "layers",
			 json_is_array(layers) ? json_deep_copy(layers) : json_array());
}

json_t *etcd_rec_host(json_t *j, bool with_token)
{
	const char *name = json_string_value(json_object_get(j, "name"));
	const char *url = json_string_value(json_object_get(j, "url"));
	const char *token = json_string_value(json_object_get(j, "token"));
	json_t *tn = json_object_get(j, "tls_name"), *h;

	if (!name || !url || !token || (tn && !json_is_string(tn) && !json_is_null(tn)))
		return NULL;
	h = json_pack("{s:s, s:s, s:o}", "name", name, "url", url, "tls_name",
		      json_is_string(tn) ? json_copy(tn) : json_null());
	if (h && with_token)
		json_object_set_new(h, "token", json_string(token));
	return h;
}

json_t *etcd_rec_job_json(const struct store_job *job)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:I}", "id", job->id, "vm_uuid", job->vm_uuid,
			 "kind", job->kind, "phase", job->phase, "data",
			 job->data ? json_incref(job->data) : json_object(), "created_at",
			 (json_int_t)job->created_at);
}

int etcd_rec_job(json_t *j, struct store_job *job)
{
	json_t *data = json_object_get(j, "data");
	int64_t created = 0;
	int ret;

	memset(job, 0, sizeof(*job));
	if (!json_is_object(j))
		return -EINVAL;
	ret = rec_str(j, "id", job->id, sizeof(job->id)) ?:
	      rec_str(j, "vm_uuid", job->vm_uuid, sizeof(job->vm_uuid)) ?:
	      rec_str(j, "kind", job->kind, sizeof(job->kind)) ?:
	      rec_str(j, "phase", job->phase, sizeof(job->phase)) ?:
	      rec_int(j, "created_at", INT64_MIN, INT64_MAX, &created);
	if (ret || !job->id[0])
		return -EINVAL;
	job->created_at = created;
	job->data = json_is_object(data) ? json_incref(data) : json_object();
	return 0;
}
