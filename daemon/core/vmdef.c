/* vmdef.c: VM definitions: field-by-field validation of API input (each
 * error names the field and the reason), JSON views, worker configuration. */
#include "vmdef.h"
#include "conf/net.h"
#include "vmdef_priv.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const policy_names[] = { "never", "on-crash", "always" };

const char *restart_policy_name(enum restart_policy p)
{
	return (unsigned)p < ARRAY_SIZE(policy_names) ? policy_names[p] : "never";
}

int restart_policy_parse(const char *s, enum restart_policy *p)
{
	for (unsigned i = 0; i < ARRAY_SIZE(policy_names); i++) {
		if (!strcmp(s, policy_names[i])) {
			*p = (enum restart_policy)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool vmdef_name_valid(const char *s)
{
	return conf_name_valid(s, VMDEF_NAME_MAX);
}

/* A conf/ schema error as the API's (400, the field, the reason). */
int vmdef_conf_error(const struct conf_err *ce, struct cerr *e)
{
	return cerr_set(e, CERR_INVALID, ce->field, "%s", ce->reason);
}

void vmdef_init(struct vmdef *d)
{
	memset(d, 0, sizeof(*d));
	d->cpus = 1;
	d->memory_mib = 128;
	d->cpu_weight = 100;
	d->cpu_max = 100;
	d->restart = RESTART_NEVER;
	d->dynmem.buffer_pct = 20;
	d->dynmem.weight = 5000;
}

void vmdef_free(struct vmdef *d)
{
	free(d->kernel);
	free(d->initrd);
	free(d->cmdline);
	for (unsigned i = 0; i < d->nr_disks; i++)
		free(d->disks[i].path);
	memset(d, 0, sizeof(*d));
}

static int dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	if (src && !(*dst = strdup(src)))
		return -ENOMEM;
	return 0;
}

int vmdef_copy(struct vmdef *dst, const struct vmdef *src)
{
	*dst = *src;
	dst->kernel = dst->initrd = dst->cmdline = NULL;
	for (unsigned i = 0; i < src->nr_disks; i++)
		dst->disks[i].path = NULL;
	if (dup_opt(&dst->kernel, src->kernel) || dup_opt(&dst->initrd, src->initrd) ||
	    dup_opt(&dst->cmdline, src->cmdline))
		goto fail;
	for (unsigned i = 0; i < src->nr_disks; i++)
		if (dup_opt(&dst->disks[i].path, src->disks[i].path))
			goto fail;
	return 0;
fail:
	vmdef_free(dst);
	return -ENOMEM;
}

/* A host file the worker will open: absolute, no commas (cella-vm option
 * syntax), an existing regular file readable by cellad. */
int vmdef_check_file(const char *field, const char *path, struct cerr *e)
{
	struct stat st;

	if (path[0] != '/')
		return cerr_set(e, CERR_INVALID, field, "expected an absolute path");
	if (strlen(path) > 1024)
		return cerr_set(e, CERR_INVALID, field, "path longer than 1024 bytes");
	if (strchr(path, ','))
		return cerr_set(e, CERR_INVALID, field, "commas are not allowed in paths");
	if (stat(path, &st) < 0)
		return cerr_set(e, CERR_INVALID, field, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return cerr_set(e, CERR_INVALID, field, "%s: not a regular file or block device", path);
	if (access(path, R_OK) < 0)
		return cerr_set(e, CERR_INVALID, field, "%s: %s", path, strerror(errno));
	return 0;
}

int vmdef_get_string(json_t *v, const char *field, size_t max, const char **out, struct cerr *e)
{
	struct conf_err ce;

	return conf_json_string(v, field, max, out, &ce) ? vmdef_conf_error(&ce, e) : 0;
}

int vmdef_get_uint(json_t *v, const char *field, uint64_t min, uint64_t max, uint64_t *out,
		    struct cerr *e)
{
	struct conf_err ce;

	return conf_json_uint(v, field, min, max, out, &ce) ? vmdef_conf_error(&ce, e) : 0;
}

int vmdef_get_bool(json_t *v, const char *field, bool *out, struct cerr *e)
{
	if (!json_is_boolean(v))
		return cerr_set(e, CERR_INVALID, field, "expected true or false");
	*out = json_is_true(v);
	return 0;
}

/* The switch layer's naming rule (daemon/net/switch.c: sw_name_valid). */
static bool switch_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > VMDEF_SWITCH_MAX || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

void vmdef_nic_tap(const struct vmdef *d, unsigned i, char out[16])
{
	char hex[11];
	unsigned k = 0;

	for (const char *p = d->uuid; *p && k < 10; p++)
		if (*p != '-')
			hex[k++] = *p;
	hex[k] = 0;
	snprintf(out, 16, "ct%s.%u", hex, i % 10);
}

void vmdef_nic_mac(const struct vmdef *d, unsigned i, char out[18])
{
	uint32_t h = 2166136261u;

	if (d->nics[i].mac[0]) {
		snprintf(out, 18, "%s", d->nics[i].mac);
		return;
	}
	for (const char *p = d->uuid; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ (uint8_t)i) * 16777619u;
	/* Locally administered, unicast. */
	snprintf(out, 18, "02:ce:%02x:%02x:%02x:%02x", (h >> 24) & 0xff, (h >> 16) & 0xff,
		 (h >> 8) & 0xff, h & 0xff);
}

static int parse_nics(struct vmdef *d, json_t *arr, struct cerr *e)
{
	size_t i;
	json_t *it;

	if (!json_is_array(arr))
		return cerr_set(e, CERR_INVALID, "nics", "expected an array of NIC objects");
	if (json_array_size(arr) > VMDEF_MAX_NICS)
		return cerr_set(e, CERR_INVALID, "nics", "at most %d NICs", VMDEF_MAX_NICS);
	d->nr_nics = 0;
	json_array_foreach(arr, i, it) {
		struct vmdef_nic *n = &d->nics[i];
		char field[64];
		const char *key, *s;
		json_t *v;

		snprintf(field, sizeof(field), "nics[%zu]", i);
		if (!json_is_object(it))
			return cerr_set(e, CERR_INVALID, field, "expected an object");
		memset(n, 0, sizeof(*n));
		json_object_foreach(it, key, v) {
			snprintf(field, sizeof(field), "nics[%zu].%.20s", i, key);
			if (!strcmp(key, "tap")) {
				if (vmdef_get_string(v, field, CONF_TAP_NAME_MAX, &s, e))
					return -1;
				if (!conf_tap_valid(s))
					return cerr_set(e, CERR_INVALID, field, "expected " CONF_TAP_SYNTAX);
				snprintf(n->tap, sizeof(n->tap), "%s", s);
			} else if (!strcmp(key, "mac")) {
				if (vmdef_get_string(v, field, 17, &s, e))
					return -1;
				if (!conf_mac_parse(s, NULL))
					return cerr_set(e, CERR_INVALID, field, "expected " CONF_MAC_SYNTAX);
				snprintf(n->mac, sizeof(n->mac), "%s", s);
			} else if (!strcmp(key, "switch")) {
				if (vmdef_get_string(v, field, VMDEF_SWITCH_MAX, &s, e))
					return -1;
				if (!switch_name_valid(s))
					return cerr_set(e, CERR_INVALID, field, "expected a switch name "
							"(1-%d of A-Z a-z 0-9 . _ -)", VMDEF_SWITCH_MAX);
				snprintf(n->sw, sizeof(n->sw), "%s", s);
			} else if (!strcmp(key, "vlan")) {
				if (json_is_null(v))
					continue;
				if (!json_is_integer(v) || json_integer_value(v) < 1 ||
				    json_integer_value(v) > 4094)
					return cerr_set(e, CERR_INVALID, field, "expected a VLAN id "
							"from 1 to 4094");
				n->vlan = (unsigned)json_integer_value(v);
			} else if (!strcmp(key, "queues")) {
				if (json_is_null(v))
					continue;
				if (!json_is_integer(v) || json_integer_value(v) < 1 ||
				    json_integer_value(v) > CONF_NET_MAX_QUEUES)
					return cerr_set(e, CERR_INVALID, field, "expected "
							CONF_QUEUES_SYNTAX);
				n->queues = (unsigned)json_integer_value(v);
			} else if (!strcmp(key, "user")) {
				if (!json_is_boolean(v))
					return cerr_set(e, CERR_INVALID, field, "expected true or false");
				n->user = json_is_true(v);
			} else if (!strcmp(key, "forward")) {
				if (usernet_forwards_parse(v, n->forward, sizeof(n->forward), field, e))
					return -1;
			} else if (!strcmp(key, "policy")) {
				char *text;

				if (json_is_null(v))
					continue;
				if (!json_is_object(v))
					return cerr_set(e, CERR_INVALID, field, "expected an object");
				text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
				if (!text)
					return cerr_set(e, CERR_INTERNAL, field, "out of memory");
				if (strlen(text) >= sizeof(n->policy)) {
					free(text);
					return cerr_set(e, CERR_INVALID, field, "longer than %d bytes "
							"as compact JSON", VMDEF_POLICY_MAX - 1);
				}
				snprintf(n->policy, sizeof(n->policy), "%s", text);
				free(text);
			} else {
				return cerr_set(e, CERR_INVALID, field, "unknown field");
			}
		}
		if (n->user || n->forward[0]) {
			snprintf(field, sizeof(field), "nics[%zu].%s", i, n->user ? "user" : "forward");
			if (!n->user)
				return cerr_set(e, CERR_INVALID, field, "forwards are for a user NIC "
						"(\"user\": true)");
			if (n->tap[0] || n->sw[0] || n->vlan || n->policy[0])
				return cerr_set(e, CERR_INVALID, field, "a user NIC has no tap, switch, "
						"VLAN or port policy");
			if (n->queues > 1) {
				snprintf(field, sizeof(field), "nics[%zu].queues", i);
				return cerr_set(e, CERR_INVALID, field, "passt's stream is one queue "
						"pair: a user NIC has one queue");
			}
			d->nr_nics++;
			continue;
		}
		if (n->tap[0] && n->sw[0]) {
			snprintf(field, sizeof(field), "nics[%zu].switch", i);
			return cerr_set(e, CERR_INVALID, field, "a NIC names a tap or a switch, not both");
		}
		if (!n->tap[0] && !n->sw[0]) {
			snprintf(field, sizeof(field), "nics[%zu].tap", i);
			return cerr_set(e, CERR_INVALID, field, "required (or \"switch\", or \"user\": "
					"true)");
		}
		if (!n->sw[0] && (n->vlan || n->policy[0])) {
			snprintf(field, sizeof(field), "nics[%zu].%s", i, n->vlan ? "vlan" : "policy");
			return cerr_set(e, CERR_INVALID, field, "only a switch NIC has a VLAN or a "
					"port policy");
		}
		d->nr_nics++;
	}
	return 0;
}

static bool uuid_valid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-'
							    : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* Fields that may change while the VM runs (cgroup limits apply live). */
static bool field_live(const char *key)
{
	return !strcmp(key, "autostart") || !strcmp(key, "restart_policy") ||
	       !strcmp(key, "cpu_weight") || !strcmp(key, "cpu_max") || !strcmp(key, "ha") ||
	       !strcmp(key, "ha_priority") || !strcmp(key, "anti_affinity") ||
	       !strcmp(key, "anti_affinity_hard") || !strcmp(key, "dynamic_memory");
}

/* Apply one field. `creating` allows name and uuid. */
static int apply_field(struct vmdef *d, const char *key, json_t *v, bool creating, struct cerr *e)
{
	const char *s;
	uint64_t n;

	if (!strcmp(key, "name") || !strcmp(key, "uuid")) {
		if (!creating)
			return cerr_set(e, CERR_INVALID, key, "cannot be changed");
		if (vmdef_get_string(v, key, 64, &s, e))
			return -1;
		if (!strcmp(key, "name")) {
			if (!vmdef_name_valid(s))
				return cerr_set(e, CERR_INVALID, key, "expected 1-63 of A-Z a-z 0-9 . _ -, "
						"starting with a letter or digit");
			snprintf(d->name, sizeof(d->name), "%s", s);
		} else {
			if (!uuid_valid(s))
				return cerr_set(e, CERR_INVALID, key, "expected a UUID "
						"(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
			snprintf(d->uuid, sizeof(d->uuid), "%s", s);
			for (char *p = d->uuid; *p; p++)
				*p = (char)tolower((unsigned char)*p);
		}
	} else if (!strcmp(key, "cpus")) {
		if (vmdef_get_uint(v, key, 1, VMDEF_MAX_CPUS, &n, e))
			return -1;
		d->cpus = (unsigned)n;
	} else if (!strcmp(key, "memory_mib")) {
		if (vmdef_get_uint(v, key, VMDEF_MIN_MEM, VMDEF_MAX_MEM, &n, e))
			return -1;
		d->memory_mib = n;
	} else if (!strcmp(key, "memory")) {
		return vmdef_memory_parse(d, v, e);
	} else if (!strcmp(key, "dynamic_memory")) {
		return vmdef_dynmem_parse(d, v, e);
	} else if (!strcmp(key, "kernel")) {
		/* null, or "" as definitions show it (moves and replicas send it
		 * back): boot the first disk's own kernel (docs/boot.md). */
		if (json_is_null(v) || (json_is_string(v) && !json_string_length(v))) {
			free(d->kernel);
			d->kernel = NULL;
			return 0;
		}
		if (vmdef_get_string(v, key, 1024, &s, e) || vmdef_check_file(key, s, e))
			return -1;
		free(d->kernel);
		d->kernel = strdup(s);
	} else if (!strcmp(key, "initrd")) {
		free(d->initrd);
		d->initrd = NULL;
		if (json_is_null(v))
			return 0;
		if (vmdef_get_string(v, key, 1024, &s, e) || vmdef_check_file(key, s, e))
			return -1;
		d->initrd = strdup(s);
	} else if (!strcmp(key, "cmdline")) {
		if (json_is_null(v)) { /* back to cella-vm's default */
			free(d->cmdline);
			d->cmdline = NULL;
			return 0;
		}
		if (vmdef_get_string(v, key, VMDEF_CMDLINE_MAX, &s, e))
			return -1;
		free(d->cmdline);
		d->cmdline = strdup(s);
	} else if (!strcmp(key, "disks")) {
		return vmdef_parse_disks(d, v, e);
	} else if (!strcmp(key, "nics")) {
		return parse_nics(d, v, e);
	} else if (!strcmp(key, "rng")) {
		return vmdef_get_bool(v, key, &d->rng, e);
	} else if (!strcmp(key, "balloon")) {
		return vmdef_get_bool(v, key, &d->balloon, e);
	} else if (!strcmp(key, "memory_max_mib")) {
		if (json_is_null(v)) {
			d->memory_max_mib = 0;
			return 0;
		}
		if (vmdef_get_uint(v, key, 0, VMDEF_MAX_MEM, &n, e))
			return -1;
		d->memory_max_mib = n;
	} else if (!strcmp(key, "vsock")) {
		return vmdef_vsock_parse(d, v, e);
	} else if (!strcmp(key, "cpus_max")) {
		return vmdef_cpus_max_parse(d, v, e);
	} else if (!strcmp(key, "autostart")) {
		return vmdef_get_bool(v, key, &d->autostart, e);
	} else if (!strcmp(key, "restart_policy")) {
		if (vmdef_get_string(v, key, 16, &s, e))
			return -1;
		if (restart_policy_parse(s, &d->restart))
			return cerr_set(e, CERR_INVALID, key, "expected \"never\", \"on-crash\" or \"always\"");
	} else if (!strcmp(key, "cpu_weight")) {
		if (vmdef_get_uint(v, key, 1, 10000, &n, e))
			return -1;
		d->cpu_weight = (unsigned)n;
	} else if (!strcmp(key, "cpu_max")) {
		if (vmdef_get_uint(v, key, 1, 100, &n, e))
			return -1;
		d->cpu_max = (unsigned)n;
	} else if (!strcmp(key, "ha")) {
		return vmdef_get_bool(v, key, &d->ha, e);
	} else if (!strcmp(key, "ha_priority")) {
		if (vmdef_get_uint(v, key, 0, VMDEF_HA_PRIORITY_MAX, &n, e))
			return -1;
		d->ha_priority = (unsigned)n;
	} else if (!strcmp(key, "anti_affinity")) {
		d->anti_affinity[0] = 0;
		if (json_is_null(v))
			return 0;
		if (vmdef_get_string(v, key, VMDEF_NAME_MAX + 1, &s, e))
			return -1;
		if (*s && !vmdef_name_valid(s))
			return cerr_set(e, CERR_INVALID, key, "expected a group name: 1-63 of "
					"A-Z a-z 0-9 . _ -, starting with a letter or digit (or null)");
		snprintf(d->anti_affinity, sizeof(d->anti_affinity), "%s", s);
	} else if (!strcmp(key, "anti_affinity_hard")) {
		return vmdef_get_bool(v, key, &d->anti_affinity_hard, e);
	} else if (!strcmp(key, "replica")) {
		if (!creating)
			return cerr_set(e, CERR_INVALID, key, "cannot be changed: replication sets it");
		return vmdef_replica_parse(d, v, e);
	} else {
		return cerr_set(e, CERR_INVALID, key, "unknown field");
	}
	return 0;
}

static void gen_uuid(char out[37])
{
	int fd = open("/proc/sys/kernel/random/uuid", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, out, 36) : -1;

	if (fd >= 0)
		close(fd);
	out[n == 36 ? 36 : 0] = 0;
}

/* The worker's rule (vmm/core/devtype.c), said at definition time: every
 * virtio device (disks, NICs, rng) needs one of the interrupt lines. */
static int check_devices(const struct vmdef *d, struct cerr *e)
{
	unsigned n = d->nr_disks + d->nr_nics + (d->rng ? 1 : 0) + (d->balloon ? 1 : 0) +
		     (d->memory_max_mib ? 1 : 0) + (d->vsock_cid ? 1 : 0);

	if (!d->kernel && !d->nr_disks)
		return cerr_set(e, CERR_INVALID, "kernel", "required (or a first disk whose image "
				"holds the kernel in its /boot)");
	if (vmdef_cpus_check(d, e))
		return -1;

	if (n > CONF_VIRTIO_IRQS)
		return cerr_set(e, CERR_INVALID, d->nr_nics ? "nics" : "disks",
				"too many devices: %u need an interrupt line, %d are available "
				"(disks, NICs, rng, balloon, virtio-mem and vsock together)", n,
				CONF_VIRTIO_IRQS);
	/* A queue pair per vCPU at most: more would only share vCPUs. */
	for (unsigned i = 0; i < d->nr_nics; i++)
		if (d->nics[i].queues > 1 && d->nics[i].queues > d->cpus) {
			char field[32];

			snprintf(field, sizeof(field), "nics[%u].queues", i);
			return cerr_set(e, CERR_INVALID, field, "%u queues for %u vCPU%s: at most one "
					"queue pair per vCPU, and %d in all", d->nics[i].queues, d->cpus,
					d->cpus == 1 ? "" : "s", CONF_NET_MAX_QUEUES);
		}
	/* virtio-mem's region is max - memory in 2 MiB blocks (vmm/virtio/mem). */
	if (d->memory_max_mib && (d->memory_max_mib <= ALIGN_UP(d->memory_mib, 2) ||
				  d->memory_max_mib % 2))
		return cerr_set(e, CERR_INVALID, "memory_max_mib",
				"expected 0 (no hot-plug) or an even number of MiB above memory_mib "
				"(%llu)", (unsigned long long)d->memory_mib);
	return 0;
}

int vmdef_from_json(struct vmdef *d, json_t *body, struct cerr *e)
{
	const char *key;
	json_t *v;

	vmdef_init(d);
	if (!json_is_object(body))
		return cerr_set(e, CERR_INVALID, "", "expected a JSON object");
	/* The replica mark first: it changes what the disks must be. */
	if ((v = json_object_get(body, "replica")) && apply_field(d, "replica", v, true, e))
		return -1;
	json_object_foreach(body, key, v) {
		if (strcmp(key, "replica") && apply_field(d, key, v, true, e))
			return -1;
	}
	if (!d->name[0])
		return cerr_set(e, CERR_INVALID, "name", "required");
	if (!d->uuid[0])
		gen_uuid(d->uuid);
	if (!d->uuid[0])
		return cerr_set(e, CERR_INTERNAL, "uuid", "cannot generate a UUID");
	return check_devices(d, e) ?: vmdef_dynmem_check(d, e);
}

int vmdef_patch(struct vmdef *d, json_t *body, bool running, bool *limits_changed,
		struct cerr *e)
{
	const char *key;
	json_t *v;

	*limits_changed = false;
	if (!json_is_object(body))
		return cerr_set(e, CERR_INVALID, "", "expected a JSON object");
	if (json_object_size(body) == 0)
		return cerr_set(e, CERR_INVALID, "", "no field to change");
	/* Check everything before changing anything. */
	json_object_foreach(body, key, v) {
		struct vmdef scratch;
		int ret;

		if (vmdef_copy(&scratch, d))
			return cerr_set(e, CERR_INTERNAL, "", "out of memory");
		ret = apply_field(&scratch, key, v, false, e);
		vmdef_free(&scratch);
		if (ret)
			return -1;
		if (running && !field_live(key))
			return cerr_set(e, CERR_STATE, key, "cannot change while the VM is running; stop it "
					"first (live: autostart, restart_policy, cpu_weight, cpu_max, ha, "
					"ha_priority, anti_affinity, anti_affinity_hard, dynamic_memory)");
	}
	json_object_foreach(body, key, v) {
		if (apply_field(d, key, v, false, e))
			return -1;
		if (!strcmp(key, "cpu_weight") || !strcmp(key, "cpu_max") || !strcmp(key, "cpus"))
			*limits_changed = true;
	}
	return check_devices(d, e) ?: vmdef_dynmem_check(d, e);
}

/* The NICs of a definition: the same shape in the API and the worker's
 * configuration file. */
static json_t *vmdef_nics_json(const struct vmdef *d, bool worker)
{
	json_t *nics = json_array();

	for (unsigned i = 0; i < d->nr_nics; i++) {
		const struct vmdef_nic *n = &d->nics[i];
		json_t *o;

		if (n->user) {
			char mac[18];

			vmdef_nic_mac(d, i, mac);
			o = worker ? json_pack("{s:s, s:s}", "backend", "passt", "mac", mac)
				   : usernet_nic_json(n);
			json_array_append_new(nics, o);
			continue;
		}
		if (n->sw[0] && worker) {
			/* The worker sees the port's tap (cellad passes it open). */
			char tap[16], mac[18];

			vmdef_nic_tap(d, i, tap);
			vmdef_nic_mac(d, i, mac);
			o = json_pack("{s:s, s:s}", "tap", tap, "mac", mac);
			if (n->queues > 1)
				json_object_set_new(o, "queues", json_integer(n->queues));
			json_array_append_new(nics, o);
			continue;
		}
		o = n->sw[0] ? json_pack("{s:s}", "switch", n->sw) : json_pack("{s:s}", "tap", n->tap);
		if (n->mac[0])
			json_object_set_new(o, "mac", json_string(n->mac));
		if (n->queues > 1)
			json_object_set_new(o, "queues", json_integer(n->queues));
		if (n->vlan)
			json_object_set_new(o, "vlan", json_integer(n->vlan));
		if (n->policy[0])
			json_object_set_new(o, "policy", json_loads(n->policy, 0, NULL));
		json_array_append_new(nics, o);
	}
	return nics;
}

json_t *vmdef_to_json(const struct vmdef *d)
{
	json_t *disks = vmdef_disks_json(d, false), *nics = vmdef_nics_json(d, false), *j;

	j = json_pack("{s:s, s:s, s:i, s:I, s:s, s:o, s:o, s:o, s:o, s:b, s:b, s:s, s:i, s:i, "
			 "s:b, s:i}",
			 "name", d->name, "uuid", d->uuid, "cpus", (int)d->cpus, "memory_mib",
			 (json_int_t)d->memory_mib, "kernel", d->kernel ? d->kernel : "",
			 "initrd", d->initrd ? json_string(d->initrd) : json_null(),
			 "cmdline", d->cmdline ? json_string(d->cmdline) : json_null(), "disks", disks, "nics", nics,
			 "rng", d->rng, "autostart", d->autostart, "restart_policy",
			 restart_policy_name(d->restart), "cpu_weight", (int)d->cpu_weight,
			 "cpu_max", (int)d->cpu_max, "ha", d->ha, "ha_priority", (int)d->ha_priority);
	if (j) {
		json_object_set_new(j, "anti_affinity", d->anti_affinity[0] ?
				    json_string(d->anti_affinity) : json_null());
		json_object_set_new(j, "anti_affinity_hard", json_boolean(d->anti_affinity_hard));
		json_object_set_new(j, "balloon", json_boolean(d->balloon));
		json_object_set_new(j, "memory_max_mib", json_integer((json_int_t)d->memory_max_mib));
		json_object_set_new(j, "memory", vmdef_memory_json(d));
		json_object_set_new(j, "dynamic_memory", vmdef_dynmem_json(d));
		json_object_set_new(j, "vsock", vmdef_vsock_json(d));
		json_object_set_new(j, "cpus_max", json_integer(d->cpus_max));
		if (d->replica.on)
			json_object_set_new(j, "replica", vmdef_replica_json(d));
	}
	return j;
}

json_t *vmdef_worker_config(const struct vmdef *d)
{
	json_t *cfg = json_pack("{s:i, s:I, s:b}", "cpus", (int)d->cpus, "memory_mib",
				(json_int_t)d->memory_mib, "rng", d->rng);
	json_t *disks = vmdef_disks_json(d, true), *nets = vmdef_nics_json(d, true);

	/* No kernel: cellad reads the first disk's (worker/imageboot.c). */
	if (d->kernel)
		json_object_set_new(cfg, "kernel", json_string(d->kernel));
	if (d->initrd)
		json_object_set_new(cfg, "initrd", json_string(d->initrd));
	/* No cmdline: cella-vm's default (one for Linux) applies. */
	if (d->cmdline)
		json_object_set_new(cfg, "cmdline", json_string(d->cmdline));
	json_object_set_new(cfg, "disks", disks);
	json_object_set_new(cfg, "nets", nets);
	if (d->balloon)
		json_object_set_new(cfg, "devices",
				    json_pack("[{s:s, s:b, s:b, s:b}]", "type", "virtio-balloon", "stats",
					      1, "deflate_on_oom", 1, "free_page_reporting", 1));
	if (d->memory_max_mib) {
		json_t *devs = json_object_get(cfg, "devices");

		if (!devs) {
			devs = json_array();
			json_object_set_new(cfg, "devices", devs);
		}
		/* Starts with nothing plugged: the startup memory. */
		json_array_append_new(devs, json_pack("{s:s, s:I}", "type", "virtio-mem", "max_mib",
						      (json_int_t)d->memory_max_mib));
	}
	if (!vmdef_memory_default(d))
		json_object_set_new(cfg, "memory", vmdef_memory_json(d));
	vmdef_vsock_worker(d, cfg);
	vmdef_cpus_worker(d, cfg);
	return cfg;
}
