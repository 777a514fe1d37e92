/* sup_switch.c: the switches of this host and the ports of its VMs
 * (docs/networking.md): definitions kept in the store (the host's metadata
 * key "switches", so the SQLite and the etcd store both keep them), bridges
 * and taps made by the switch layer (daemon/net/switch.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "portpol.h"
#include "store.h"
#include "sup_priv.h"
#include "switch.h"

#define SW_META_KEY "switches"
#define SW_META_MAX (256 * 1024)

/* The stored object (a new reference; {} when there is none yet). */
static json_t *sw_read(struct sup *s)
{
	char *buf = malloc(SW_META_MAX);
	json_t *j = NULL;

	if (buf && store_meta_get(s->db, SW_META_KEY, buf, SW_META_MAX) == 0)
		j = json_loads(buf, 0, NULL);
	free(buf);
	if (!json_is_object(j)) {
		json_decref(j);
		j = json_object();
	}
	return j;
}

static int sw_write(struct sup *s, json_t *all, struct cerr *e)
{
	char *text = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
	int ret;

	if (!text)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	if (strlen(text) >= SW_META_MAX - 1) {
		free(text);
		return cerr_set(e, CERR_TOO_LARGE, "", "the switches' record would pass %d bytes",
				SW_META_MAX);
	}
	ret = store_meta_set(s->db, SW_META_KEY, text);
	free(text);
	return ret ? sup_store_cerr(s, e, ret, "cannot store the switches") : 0;
}

/* Switch name's definition into d (sw_lock held): 0, or -1 when none. */
static int sw_find_locked(struct sup *s, const char *name, struct sw_def *d)
{
	struct cerr e;
	json_t *j = json_object_get(s->switches, name);

	return j && !sw_def_parse(j, d, &e) ? 0 : -1;
}

static int sw_find(struct sup *s, const char *name, struct sw_def *d)
{
	int ret;

	pthread_mutex_lock(&s->sw_lock);
	ret = sw_find_locked(s, name, d);
	pthread_mutex_unlock(&s->sw_lock);
	return ret;
}

void sup_switches_load(struct sup *s)
{
	const char *name;
	json_t *j;

	pthread_mutex_init(&s->sw_lock, NULL);
	s->switches = sw_read(s);
	s->ct_bridge = portpol_conntrack_bridge();
	json_object_foreach(s->switches, name, j) {
		struct sw_def d;
		struct cerr e = { 0 };

		if (sw_def_parse(j, &d, &e)) {
			log_warn("switch %s: bad record (%s: %s): skipped", name, e.field, e.reason);
			continue;
		}
		if (sw_host_ensure(&d, &e))
			log_warn("switch %s: cannot rebuild bridge %s: %s", name, d.bridge, e.reason);
	}
}

/* NIC n's policy: its "policy" object with "vlan" as the access VLAN, and
 * "stateful" as its switch's (sw) unless it says. */
static struct port_policy *nic_policy(const struct vmdef_nic *n, unsigned i,
				      const struct sw_def *sw, struct cerr *e)
{
	json_t *j = n->policy[0] ? json_loads(n->policy, 0, NULL) : json_object();
	struct port_policy *p;

	if (!j) {
		cerr_set(e, CERR_INTERNAL, "", "nics[%u].policy: unreadable", i);
		return NULL;
	}
	if (n->vlan && !json_object_get(j, "vlan"))
		json_object_set_new(j, "vlan", json_integer(n->vlan));
	if (sw && sw->stateful && !json_object_get(j, "stateful"))
		json_object_set_new(j, "stateful", json_true());
	p = portpol_parse(json_object_size(j) ? j : NULL, e);
	json_decref(j);
	if (!p) {
		char f[sizeof(e->field)];

		snprintf(f, sizeof(f), "nics[%u].%.40s", i, e->field[0] ? e->field : "policy");
		memcpy(e->field, f, sizeof(f));
	}
	return p;
}

int sup_nics_check(struct sup *s, const struct vmdef *d, struct cerr *e)
{
	if (sup_usernet_check(s, d, e)) /* user NICs: core/sup_usernet.c */
		return -1;
	for (unsigned i = 0; i < d->nr_nics; i++) {
		const struct vmdef_nic *n = &d->nics[i];
		struct port_policy *p;
		struct sw_def sw;
		char field[48];

		if (!n->sw[0])
			continue;
		snprintf(field, sizeof(field), "nics[%u].switch", i);
		if (sw_find(s, n->sw, &sw))
			return cerr_set(e, CERR_INVALID, field, "no switch %s on this host (cella "
					"switch list)", n->sw);
		p = nic_policy(n, i, &sw, e);
		if (!p)
			return -1;
		portpol_free(p);
	}
	return 0;
}

int sup_port_open(struct sup *s, struct vmrt *vm, unsigned i, int *worker_vlan, int *fds,
		  struct cerr *e)
{
	const struct vmdef_nic *n = &vm->def.nics[i];
	unsigned queues = n->queues > 1 ? n->queues : 1;
	struct port_policy *p;
	struct sw_def sw;
	char tap[16], mac[18];
	int ret;

	if (sw_find(s, n->sw, &sw))
		return cerr_set(e, CERR_INVALID, "nics", "the VM failed to start: nics[%u]: no "
				"switch %s on this host", i, n->sw);
	p = nic_policy(n, i, &sw, e);
	if (!p)
		return -1;
	*worker_vlan = portpol_worker_vlan(p);
	vmdef_nic_tap(&vm->def, i, tap);
	vmdef_nic_mac(&vm->def, i, mac);
	ret = port_open(&sw, tap, mac, p, queues, fds, e);
	portpol_free(p);
	if (ret)
		return -1;
	memcpy(vm->port_sw[i], n->sw, sizeof(vm->port_sw[i]));
	return (int)queues;
}

/* The switch of a port, or (deleted meanwhile) enough of one to remove it. */
static void port_switch(struct sup *s, const char *name, struct sw_def *sw)
{
	if (!sw_find(s, name, sw))
		return;
	memset(sw, 0, sizeof(*sw));
	snprintf(sw->name, sizeof(sw->name), "%s", name);
	sw->type = SW_PRIVATE;
	sw_bridge_name(name, sw->bridge);
}

void sup_ports_remove(struct sup *s, struct vmrt *vm)
{
	for (unsigned i = 0; i < VMDEF_MAX_NICS; i++) {
		struct sw_def sw;
		char tap[16], mac[18];

		if (!vm->port_sw[i][0])
			continue;
		port_switch(s, vm->port_sw[i], &sw);
		vmdef_nic_tap(&vm->def, i, tap);
		vmdef_nic_mac(&vm->def, i, mac);
		port_remove(&sw, tap, mac);
		vm->port_sw[i][0] = 0;
	}
}

void sup_ports_mark(struct vmrt *vm)
{
	for (unsigned i = 0; i < vm->def.nr_nics; i++)
		memcpy(vm->port_sw[i], vm->def.nics[i].sw, sizeof(vm->port_sw[i]));
}

void sup_ports_reattach(struct sup *s, struct vmrt *vm)
{
	for (unsigned i = 0; i < vm->def.nr_nics; i++) {
		const struct vmdef_nic *n = &vm->def.nics[i];
		struct port_policy *p;
		struct cerr e = { 0 };
		struct sw_def sw;
		char tap[16], mac[18];

		if (!n->sw[0])
			continue;
		if (sw_find(s, n->sw, &sw)) {
			log_warn("vm %s: nics[%u]: switch %s is gone", vm->def.name, i, n->sw);
			continue;
		}
		p = nic_policy(n, i, &sw, &e);
		vmdef_nic_tap(&vm->def, i, tap);
		vmdef_nic_mac(&vm->def, i, mac);
		if (!p || port_reattach(&sw, tap, mac, p, &e))
			log_warn("vm %s: nics[%u]: port %s on switch %s: %s", vm->def.name, i, tap,
				 n->sw, e.reason);
		else
			log_info("vm %s: port %s on switch %s (bridge %s) again", vm->def.name, tap,
				 n->sw, sw.bridge);
		portpol_free(p);
	}
}

/* The VMs with a NIC on switch name: a new array of names. */
static json_t *switch_users(struct sup *s, const char *name, bool ports)
{
	json_t *out = json_array();
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);

	for (size_t k = 0; k < n; k++) {
		struct vmrt *vm = all[k];

		pthread_mutex_lock(&vm->lock);
		for (unsigned i = 0; !vm->deleted && i < vm->def.nr_nics; i++) {
			char tap[16];

			if (strcmp(vm->def.nics[i].sw, name))
				continue;
			if (!ports) {
				json_array_append_new(out, json_string(vm->def.name));
				break;
			}
			if (strcmp(vm->port_sw[i], name))
				continue;
			vmdef_nic_tap(&vm->def, i, tap);
			json_array_append_new(out, json_pack("{s:s, s:i, s:s}", "vm", vm->def.name,
							     "nic", (int)i, "tap", tap));
		}
		pthread_mutex_unlock(&vm->lock);
	}
	sup_vm_unpin_all(s, all, n);
	return out;
}

static json_t *switch_json(struct sup *s, const struct sw_def *d, bool detail)
{
	json_t *o = sw_def_json(d);

	json_object_set_new(o, "host", sw_host_status(d));
	/* How its ports' stateful ACLs work here (docs/networking.md). */
	json_object_set_new(o, "stateful_acl", json_pack("{s:s, s:b}", "mechanism",
							 "flow sets (nftables, per port)",
							 "conntrack_bridge", s->ct_bridge));
	if (detail) {
		json_object_set_new(o, "vms", switch_users(s, d->name, false));
		json_object_set_new(o, "ports", switch_users(s, d->name, true));
	}
	return o;
}

json_t *sup_switch_list(struct sup *s)
{
	json_t *out = json_array();
	const char *name;
	json_t *j;

	pthread_mutex_lock(&s->sw_lock);
	json_t *all = json_deep_copy(s->switches);
	pthread_mutex_unlock(&s->sw_lock);
	json_object_foreach(all, name, j) {
		struct sw_def d;
		struct cerr e;

		if (!sw_def_parse(j, &d, &e))
			json_array_append_new(out, switch_json(s, &d, false));
	}
	json_decref(all);
	return out;
}

int sup_switch_get(struct sup *s, const char *name, json_t **out, struct cerr *e)
{
	struct sw_def d;

	if (sw_find(s, name, &d))
		return cerr_set(e, CERR_NOT_FOUND, "name", "no switch %s", name);
	*out = switch_json(s, &d, true);
	return 0;
}

int sup_switch_create(struct sup *s, json_t *body, json_t **out, struct cerr *e)
{
	const char *name;
	struct sw_def d;
	json_t *next, *j;

	if (json_object_get(body, "bridge"))
		return cerr_set(e, CERR_INVALID, "bridge", "chosen by cellad from the name");
	if (sw_def_parse(body, &d, e))
		return -1;
	pthread_mutex_lock(&s->sw_lock);
	if (json_object_get(s->switches, d.name)) {
		pthread_mutex_unlock(&s->sw_lock);
		return cerr_set(e, CERR_EXISTS, "name", "switch %s exists", d.name);
	}
	if (json_object_size(s->switches) >= SW_MAX) {
		pthread_mutex_unlock(&s->sw_lock);
		return cerr_set(e, CERR_INVALID, "name", "at most %d switches on a host", SW_MAX);
	}
	json_object_foreach(s->switches, name, j) {
		struct sw_def o;
		struct cerr ign;

		if (sw_def_parse(j, &o, &ign))
			continue;
		if (!strcmp(o.bridge, d.bridge)) {
			pthread_mutex_unlock(&s->sw_lock);
			return cerr_set(e, CERR_EXISTS, "name", "switch %s has bridge %s already: "
					"choose another name", o.name, d.bridge);
		}
		if (d.uplink[0] && !strcmp(o.uplink, d.uplink)) {
			pthread_mutex_unlock(&s->sw_lock);
			return cerr_set(e, CERR_CONFLICT, "uplink", "%s is the uplink of switch %s",
					d.uplink, o.name);
		}
	}
	if (sw_host_create(&d, e)) {
		pthread_mutex_unlock(&s->sw_lock);
		return -1;
	}
	next = json_deep_copy(s->switches);
	json_object_set_new(next, d.name, sw_def_json(&d));
	if (sw_write(s, next, e)) {
		sw_host_delete(&d); /* nothing half-created */
		json_decref(next);
		pthread_mutex_unlock(&s->sw_lock);
		return -1;
	}
	json_decref(s->switches);
	s->switches = next;
	pthread_mutex_unlock(&s->sw_lock);
	log_info("switch %s (%s) created: bridge %s", d.name, sw_type_name(d.type), d.bridge);
	if (sw_host_br_netfilter())
		log_warn("switch %s: net.bridge.bridge-nf-call-iptables is 1: bridged frames go "
			 "through iptables' FORWARD chain, whose DROP rules would cut VMs off from "
			 "each other (docs/networking.md, \"Netfilter on bridges\")", d.name);
	*out = switch_json(s, &d, false);
	return 0;
}

int sup_switch_delete(struct sup *s, const char *name, struct cerr *e)
{
	json_t *users, *next;
	struct sw_def d;

	if (sw_find(s, name, &d))
		return cerr_set(e, CERR_NOT_FOUND, "name", "no switch %s", name);
	users = switch_users(s, name, false);
	if (json_array_size(users)) {
		cerr_set(e, CERR_CONFLICT, "name", "switch %s is in use by VM %s%s: change or "
			 "delete its NICs first", name, json_string_value(json_array_get(users, 0)),
			 json_array_size(users) > 1 ? " and others" : "");
		json_decref(users);
		return -1;
	}
	json_decref(users);
	pthread_mutex_lock(&s->sw_lock);
	next = json_deep_copy(s->switches);
	json_object_del(next, name);
	if (sw_write(s, next, e)) {
		json_decref(next);
		pthread_mutex_unlock(&s->sw_lock);
		return -1;
	}
	json_decref(s->switches);
	s->switches = next;
	pthread_mutex_unlock(&s->sw_lock);
	sw_host_delete(&d);
	log_info("switch %s deleted (bridge %s)", name, d.bridge);
	return 0;
}

int sup_nic_set(struct sup *s, const char *name, unsigned idx, json_t *body, json_t **out,
		struct cerr *e)
{
	struct port_policy *p = NULL;
	struct vmdef next;
	struct vmdef_nic *n;
	const char *key;
	json_t *v;
	struct vmrt *vm = sup_vm_lock_name(s, name, e);
	int ret = -1;

	if (!vm)
		return -1;
	if (vmdef_copy(&next, &vm->def)) {
		sup_vm_unlock(s, vm);
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	}
	if (idx >= next.nr_nics) {
		cerr_set(e, CERR_NOT_FOUND, "nic", "VM %s has no NIC %u", name, idx);
		goto out;
	}
	n = &next.nics[idx];
	if (!n->sw[0]) {
		cerr_set(e, CERR_INVALID, "nic", "NIC %u is a tap, not a switch port: it has no "
			 "policy", idx);
		goto out;
	}
	if (!json_is_object(body)) {
		cerr_set(e, CERR_INVALID, "", "expected a JSON object");
		goto out;
	}
	json_object_foreach(body, key, v) {
		if (!strcmp(key, "policy")) {
			char *text;

			if (!json_is_object(v) && !json_is_null(v)) {
				cerr_set(e, CERR_INVALID, "policy", "expected an object");
				goto out;
			}
			text = json_is_null(v) ? strdup("") : json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
			if (!text || strlen(text) >= sizeof(n->policy)) {
				cerr_set(e, CERR_INVALID, "policy", "longer than %d bytes as compact "
					 "JSON", VMDEF_POLICY_MAX - 1);
				free(text);
				goto out;
			}
			snprintf(n->policy, sizeof(n->policy), "%s", !strcmp(text, "{}") ? "" : text);
			free(text);
		} else if (!strcmp(key, "vlan")) {
			if (json_is_null(v)) {
				n->vlan = 0;
			} else if (!json_is_integer(v) || json_integer_value(v) < 1 ||
				   json_integer_value(v) > 4094) {
				cerr_set(e, CERR_INVALID, "vlan", "expected a VLAN id from 1 to 4094");
				goto out;
			} else {
				n->vlan = (unsigned)json_integer_value(v);
			}
		} else {
			cerr_set(e, CERR_INVALID, key, "unknown field (policy, vlan)");
			goto out;
		}
	}
	{
		struct sw_def nsw;

		p = nic_policy(n, idx, sw_find(s, n->sw, &nsw) ? NULL : &nsw, e);
	}
	if (!p)
		goto out;
	if (vm->port_sw[idx][0]) {
		struct sw_def sw;
		char tap[16], mac[18];

		port_switch(s, vm->port_sw[idx], &sw);
		vmdef_nic_tap(&next, idx, tap);
		vmdef_nic_mac(&next, idx, mac);
		if (port_set_policy(&sw, tap, mac, p, e))
			goto out;
	}
	ret = store_vm_put(s->db, &next);
	if (ret) {
		sup_store_cerr(s, e, ret, "cannot store the definition");
		ret = -1;
		goto out;
	}
	vmdef_free(&vm->def);
	vm->def = next;
	memset(&next, 0, sizeof(next));
	sup_emit(s, vm, "changed", "port policy");
	*out = sup_vm_json(s, vm);
out:
	portpol_free(p);
	vmdef_free(&next);
	sup_vm_unlock(s, vm);
	return ret;
}

/* One series of every port: family -> lines, so each family prints together. */
static void port_series(json_t *fams, const char *fam, const char *labels, json_int_t v)
{
	json_t *lines = json_object_get(fams, fam);
	char line[512];

	if (!lines) {
		lines = json_array();
		json_object_set_new(fams, fam, lines);
	}
	snprintf(line, sizeof(line), "%s{%s} %lld\n", fam, labels, (long long)v);
	json_array_append_new(lines, json_string(line));
}

char *sup_ports_prometheus(struct sup *s)
{
	json_t *fams = json_object(), *lines;
	size_t n, len = 0, cap = 0;
	struct vmrt **all = sup_vm_pin_all(s, &n);
	const char *fam;
	char *buf = NULL;

	for (size_t k = 0; k < n; k++) {
		struct vmrt *vm = all[k];

		pthread_mutex_lock(&vm->lock);
		for (unsigned i = 0; !vm->deleted && i < VMDEF_MAX_NICS; i++) {
			struct sw_def sw;
			char tap[16], mac[18], labels[256], f[96];
			const char *key;
			json_t *c, *v;

			if (!vm->port_sw[i][0])
				continue;
			port_switch(s, vm->port_sw[i], &sw);
			vmdef_nic_tap(&vm->def, i, tap);
			vmdef_nic_mac(&vm->def, i, mac);
			c = port_counters(&sw, tap, mac);
			snprintf(labels, sizeof(labels), "vm=\"%s\",switch=\"%s\",port=\"%s\"",
				 vm->def.name, sw.name, tap);
			json_object_foreach(c, key, v) {
				if (json_is_integer(v)) {
					snprintf(f, sizeof(f), "cella_port_%s_total", key);
					port_series(fams, f, labels, json_integer_value(v));
				} else if (json_is_object(v)) {
					const char *why;
					json_t *d;

					json_object_foreach(v, why, d) {
						char l2[384];

						snprintf(l2, sizeof(l2), "%s,reason=\"%s\"", labels, why);
						snprintf(f, sizeof(f), "cella_port_%s_total", key);
						port_series(fams, f, l2, json_integer_value(d));
					}
				}
			}
			json_decref(c);
		}
		pthread_mutex_unlock(&vm->lock);
	}
	sup_vm_unpin_all(s, all, n);
	json_object_foreach(fams, fam, lines) {
		size_t i;
		json_t *l;
		char head[256];

		snprintf(head, sizeof(head), "# TYPE %s counter\n", fam);
		for (int pass = 0; pass < 2; pass++) {
			json_array_foreach(lines, i, l) {
				const char *t = pass ? json_string_value(l) : head;
				size_t tl = strlen(t);

				if (len + tl + 1 > cap) {
					char *nb = realloc(buf, cap = (cap + tl + 1) * 2);

					if (!nb) {
						free(buf);
						json_decref(fams);
						return NULL;
					}
					buf = nb;
				}
				memcpy(buf + len, t, tl + 1);
				len += tl;
				if (!pass)
					break;
			}
		}
	}
	json_decref(fams);
	return buf;
}
