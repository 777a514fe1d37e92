/* config.c: VM configuration from JSON (jansson) and option strings, with
 * validation that names the offending key and the reason. */
#include "config.h"
#include "mem_backing.h"
#include "conf/net.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <jansson.h>

#include "backend/tap.h"
#include "devtype.h"
#include "fdspec.h"
#include "log.h"

#define CONFIG_MIN_MEM_MIB CONF_MIN_MEM_MIB

static int config_error(char *err, size_t errlen, const char *fmt, ...) __printf(3, 4);
static int config_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void config_init(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->cpus = 1;
	c->mem_mib = 128;
	c->console = CONSOLE_STDIO;
	c->emulation_fallback = true;
	c->acpi = true;
}

static void replace_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? strdup(src) : NULL;
}

unsigned config_cpus_possible(const struct vm_config *c)
{
	return c->cpus_max > c->cpus ? c->cpus_max : c->cpus;
}

void config_free(struct vm_config *c)
{
	free(c->kvm);
	free(c->userfaultfd);
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->console_path);
	for (unsigned i = 0; i < c->nr_disks; i++) {
		free(c->disks[i].path);
		free(c->disks[i].cbt_file);
		for (unsigned k = 0; c->disks[i].backing && k < c->disks[i].backing->nr; k++)
			free(c->disks[i].backing->name[k]);
		free(c->disks[i].backing);
	}
	for (unsigned i = 0; i < c->nr_nets; i++) {
		free(c->nets[i].tap);
		free(c->nets[i].tap_fd);
		free(c->nets[i].passt_fd);
	}
	for (unsigned i = 0; i < c->nr_devices; i++) {
		conf_free(c->devices[i].type->config_schema, c->devices[i].cfg);
		free(c->devices[i].cfg);
	}
	memset(c, 0, sizeof(*c));
}

int config_disk_qos_set(struct disk_qos_config *q, const char *key, uint64_t v)
{
	return conf_qos_set(q, key, v);
}

/* The disk schema (conf/disk.h) parses; the count is the VM's business. */
static void disk_files_free(struct disk_config *disk)
{
	free(disk->cbt_file);
	disk->cbt_file = NULL;
	for (unsigned k = 0; disk->backing && k < disk->backing->nr; k++)
		free(disk->backing->name[k]);
	free(disk->backing);
	disk->backing = NULL;
}

/* The option string's own form of the members cellad puts in the JSON
 * (conf/disk.h): "backing=fd:N[:NAME]" (repeatable, in chain order) and
 * "cbt_file=FILE". They are taken out of spec (rest gets the others). */
static int disk_files_from_string(struct disk_config *d, const char *spec, char *rest,
				  size_t restlen, char *err, size_t errlen)
{
	char *copy = strdup(spec), *next = copy, *tok;
	bool first = true;
	size_t n = 0;
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	rest[0] = 0;
	/* strsep keeps empty words: ",ro" still lacks its path. */
	while (!ret && (tok = strsep(&next, ","))) {
		if (!strncmp(tok, "backing=", 8)) {
			const char *v = tok + 8, *colon;
			char num[16];
			int fd;

			colon = strchr(v + (strncmp(v, "fd:", 3) ? 0 : 3), ':');
			snprintf(num, sizeof(num), "%.*s", colon ? (int)(colon - v) : (int)strlen(v), v);
			if (!fdspec_is_fd(num, &fd) || fd < 0) {
				ret = config_error(err, errlen, "disk: backing=%s: expected fd:N[:NAME]", v);
				break;
			}
			if (!d->backing && !(d->backing = calloc(1, sizeof(*d->backing)))) {
				ret = -ENOMEM;
				break;
			}
			if (d->backing->nr >= CONF_MAX_BACKING) {
				ret = config_error(err, errlen, "disk: more than %d backing files",
						   CONF_MAX_BACKING);
				break;
			}
			d->backing->fd[d->backing->nr] = fd;
			d->backing->name[d->backing->nr] = colon ? strdup(colon + 1) : NULL;
			if (colon && !d->backing->name[d->backing->nr]) {
				ret = -ENOMEM;
				break;
			}
			d->backing->nr++;
		} else if (!strncmp(tok, "cbt_file=", 9)) {
			free(d->cbt_file);
			d->cbt_file = strdup(tok + 9);
			if (!d->cbt_file)
				ret = -ENOMEM;
		} else {
			if (n < restlen)
				n += (size_t)snprintf(rest + n, restlen - n, "%s%s", first ? "" : ",",
						      tok);
			else
				n += strlen(tok) + 1;
			first = false;
		}
	}
	free(copy);
	if (!ret && n >= restlen)
		ret = config_error(err, errlen, "disk: option string too long");
	return ret;
}

int config_add_disk(struct vm_config *c, const char *spec, char *err, size_t errlen)
{
	struct disk_config d = { 0 };
	struct conf_err e;
	char rest[8192];
	int ret;

	if (c->nr_disks >= CONFIG_MAX_DISKS)
		return config_error(err, errlen, "disks: at most %d disks", CONFIG_MAX_DISKS);
	if (errlen)
		err[0] = 0;
	ret = disk_files_from_string(&d, spec, rest, sizeof(rest), err, errlen);
	if (!ret)
		ret = conf_from_string(&conf_disk_schema, &d, rest, &e);
	if (ret) {
		disk_files_free(&d);
		conf_free(&conf_disk_schema, &d);
		if (ret == -EINVAL && !err[0])
			conf_err_text(&e, err, errlen);
		return ret;
	}
	c->disks[c->nr_disks++] = d;
	return 0;
}

/* Exactly one back end: a tap, or passt's stream (fd:N). */
static int config_check_net_backend(const struct net_config *n, const char *what, char *err,
				    size_t errlen)
{
	int fd;

	if (n->passt_fd) {
		if (n->tap || n->tap_fd)
			return config_error(err, errlen, "%s: passt and tap are exclusive", what);
		if (n->queues > 1)
			return config_error(err, errlen, "%s: passt's stream is one queue pair "
					    "(queues=%u)", what, n->queues);
		if (!fdspec_is_fd(n->passt_fd, &fd) || fd < 0)
			return config_error(err, errlen, "%s: passt '%s' is not fd:N", what,
					    n->passt_fd);
		return 0;
	}
	if (!n->tap)
		return config_error(err, errlen, "%s: no tap=NAME (or passt=fd:N)", what);
	return 0;
}

int config_add_net(struct vm_config *c, const char *spec, char *err, size_t errlen)
{
	char *copy, *tok, *save = NULL;
	struct net_config n = { 0 };
	int ret = 0;

	if (c->nr_nets >= CONFIG_MAX_NETS)
		return config_error(err, errlen, "nets: at most %d NICs", CONFIG_MAX_NETS);
	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "tap=", 4)) {
			if (!conf_tap_valid(tok + 4)) {
				ret = config_error(err, errlen, "net: tap '%s' is not " CONF_TAP_SYNTAX,
						   tok + 4);
				goto out;
			}
			replace_str(&n.tap, tok + 4);
		} else if (!strncmp(tok, "tap_fd=", 7)) {
			replace_str(&n.tap_fd, tok + 7);
		} else if (!strncmp(tok, "passt=", 6)) {
			replace_str(&n.passt_fd, tok + 6);
		} else if (!strncmp(tok, "mac=", 4)) {
			if (!conf_mac_parse(tok + 4, n.mac)) {
				ret = config_error(err, errlen, "net: mac '%s' is not " CONF_MAC_SYNTAX,
						   tok + 4);
				goto out;
			}
			n.has_mac = true;
		} else if (!strncmp(tok, "vlan=", 5)) {
			if (!conf_vlan_parse(tok + 5, &n.vlan, &n.vlan_trunk)) {
				ret = config_error(err, errlen, "net: vlan '%s' is not " CONF_VLAN_SYNTAX,
						   tok + 5);
				goto out;
			}
		} else if (!strncmp(tok, "queues=", 7)) {
			if (!conf_queues_parse(tok + 7, &n.queues)) {
				ret = config_error(err, errlen, "net: queues '%s' is not "
						   CONF_QUEUES_SYNTAX, tok + 7);
				goto out;
			}
		} else if (!strncmp(tok, "mtu=", 4)) {
			if (!conf_mtu_parse(tok + 4, &n.mtu)) {
				ret = config_error(err, errlen, "net: mtu '%s' is not " CONF_MTU_SYNTAX,
						   tok + 4);
				goto out;
			}
		} else {
			ret = config_error(err, errlen,
					   "net: unknown option '%s' (expected tap=NAME, tap_fd=fd:N, "
					   "passt=fd:N, mac=MAC, vlan=N|trunk, mtu=N or queues=N)",
					   tok);
			goto out;
		}
	}
	ret = config_check_net_backend(&n, "net", err, errlen);
	if (ret)
		goto out;
	c->nets[c->nr_nets++] = n;
	n.tap = n.tap_fd = n.passt_fd = NULL;
out:
	free(n.tap);
	free(n.tap_fd);
	free(n.passt_fd);
	free(copy);
	return ret;
}

int config_set_console(struct vm_config *c, const char *spec, char *err, size_t errlen)
{
	if (!strcmp(spec, "stdio")) {
		c->console = CONSOLE_STDIO;
	} else if (!strcmp(spec, "none")) {
		c->console = CONSOLE_NONE;
	} else if (!strncmp(spec, "file:", 5) && spec[5]) {
		c->console = CONSOLE_FILE;
		replace_str(&c->console_path, spec + 5);
	} else if (!strncmp(spec, "unix:", 5) && spec[5]) {
		c->console = CONSOLE_UNIX;
		replace_str(&c->console_path, spec + 5);
	} else {
		return config_error(err, errlen,
				    "console: '%s' is not stdio, none, file:PATH or unix:PATH",
				    spec);
	}
	return 0;
}

/* The generic device list: a registered type with a configuration schema. */
static int config_new_device(struct vm_config *c, const char *type, struct device_config **out,
			     char *err, size_t errlen, const char *where)
{
	const struct device_type *t = devtype_find(type);
	unsigned have = 0;
	char names[256];

	if (!t || !t->config_schema) {
		devtype_config_names(names, sizeof(names));
		return config_error(err, errlen, "%s: unknown device type '%.64s' (expected %s)",
				    where, type, names);
	}
	for (unsigned i = 0; i < c->nr_devices; i++)
		have += c->devices[i].type == t;
	if (have >= t->max_instances)
		return config_error(err, errlen, "%s: at most %u %s devices", where,
				    t->max_instances, t->name);
	if (c->nr_devices >= CONF_MAX_DEVICES)
		return config_error(err, errlen, "%s: at most %d devices", where, CONF_MAX_DEVICES);
	*out = &c->devices[c->nr_devices];
	(*out)->type = t;
	(*out)->cfg = calloc(1, t->config_size);
	return (*out)->cfg ? 0 : -ENOMEM;
}

/* The entry config_new_device opened is kept when its keys parsed (ret 0),
 * else dropped with the parser's reason in err. Returns ret. */
static int config_end_device(struct vm_config *c, int ret, const struct conf_err *e,
			     char *err, size_t errlen)
{
	struct device_config *d = &c->devices[c->nr_devices];

	if (!ret) {
		c->nr_devices++;
		return 0;
	}
	conf_free(d->type->config_schema, d->cfg);
	free(d->cfg);
	memset(d, 0, sizeof(*d));
	if (ret == -EINVAL)
		conf_err_text(e, err, errlen);
	return ret;
}

int config_add_device(struct vm_config *c, const char *spec, char *err, size_t errlen)
{
	const char *comma = strchr(spec, ',');
	struct device_config *d;
	struct conf_err e;
	char type[64];
	int ret;

	snprintf(type, sizeof(type), "%.*s", comma ? (int)MIN((size_t)(comma - spec), 63) : 63,
		 spec);
	ret = config_new_device(c, type, &d, err, errlen, "device");
	if (ret)
		return ret;
	ret = conf_from_string(d->type->config_schema, d->cfg, comma ? comma + 1 : "", &e);
	return config_end_device(c, ret, &e, err, errlen);
}

static int config_json_device(struct vm_config *c, json_t *o, unsigned idx, char *err,
			      size_t errlen)
{
	const char *type = json_string_value(json_object_get(o, "type"));
	struct device_config *d;
	struct conf_err e;
	char name[32];
	json_t *keys;
	int ret;

	snprintf(name, sizeof(name), "devices[%u]", idx);
	if (!json_is_object(o))
		return config_error(err, errlen, "%s: expected an object", name);
	if (!type)
		return config_error(err, errlen, "%s.type: expected a string", name);
	ret = config_new_device(c, type, &d, err, errlen, name);
	if (ret)
		return ret;
	keys = json_copy(o);
	json_object_del(keys, "type");
	ret = keys ? conf_from_json(d->type->config_schema, d->cfg, keys, name,
				    &conf_worker_dialect, &e) : -ENOMEM;
	json_decref(keys);
	return config_end_device(c, ret, &e, err, errlen);
}

/* Resolve a path from the config file relative to the file's directory. */
static char *config_path(const char *base_dir, const char *p)
{
	char *out;

	int fd;

	if (p[0] == '/' || !base_dir || fdspec_is_fd(p, &fd))
		return strdup(p);
	if (asprintf(&out, "%s/%s", base_dir, p) < 0)
		return NULL;
	return out;
}

static int json_want_string(json_t *v, const char *key, char *err, size_t errlen)
{
	if (!json_is_string(v))
		return config_error(err, errlen, "%s: expected a string", key);
	if (!json_string_value(v)[0])
		return config_error(err, errlen, "%s: must not be empty", key);
	return 0;
}

static int json_want_uint(json_t *v, const char *key, uint64_t min, uint64_t max,
			  uint64_t *out, char *err, size_t errlen)
{
	struct conf_err e;

	if (conf_json_uint(v, key, min, max, out, &e)) {
		conf_err_text(&e, err, errlen);
		return -EINVAL;
	}
	return 0;
}


/* The members cellad adds for a disk given as "fd:N" (conf/disk.h): the
 * backing chain [{"fd": N, "name": S}, ...] and "cbt_file". */
static int config_json_disk_files(struct disk_config *disk, json_t *backing, json_t *cbt_file,
				  const char *name, char *err, size_t errlen)
{
	size_t i;
	json_t *l;

	if (cbt_file) {
		if (!json_is_string(cbt_file) || !(disk->cbt_file = strdup(json_string_value(cbt_file))))
			return config_error(err, errlen, "%s.cbt_file: expected a string", name);
	}
	if (!backing)
		return 0;
	if (!json_is_array(backing) || json_array_size(backing) > CONF_MAX_BACKING)
		return config_error(err, errlen, "%s.backing: expected an array of at most %d "
				    "{\"fd\", \"name\"} objects", name, CONF_MAX_BACKING);
	disk->backing = calloc(1, sizeof(*disk->backing));
	if (!disk->backing)
		return -ENOMEM;
	json_array_foreach(backing, i, l) {
		json_t *fd = json_object_get(l, "fd"), *nm = json_object_get(l, "name");

		if (!json_is_integer(fd) || json_integer_value(fd) < 0 ||
		    json_integer_value(fd) > 65535 || !json_is_string(nm) || json_object_size(l) != 2)
			return config_error(err, errlen, "%s.backing[%zu]: expected {\"fd\": N, "
					    "\"name\": S}", name, i);
		disk->backing->fd[i] = (int)json_integer_value(fd);
		disk->backing->name[i] = strdup(json_string_value(nm));
		disk->backing->nr++;
		if (!disk->backing->name[i])
			return -ENOMEM;
	}
	return 0;
}

static int config_json_disk(struct vm_config *c, json_t *d, unsigned idx, const char *base_dir,
			    char *err, size_t errlen)
{
	struct disk_config disk = { 0 };
	struct conf_err e;
	json_t *rest;
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "disks[%u]", idx);
	if (!json_is_object(d))
		return config_error(err, errlen, "%s: expected an object", name);
	if (c->nr_disks >= CONFIG_MAX_DISKS)
		return config_error(err, errlen, "disks: at most %d disks", CONFIG_MAX_DISKS);
	rest = json_copy(d);
	if (!rest)
		return -ENOMEM;
	json_object_del(rest, "backing");
	json_object_del(rest, "cbt_file");
	ret = conf_from_json(&conf_disk_schema, &disk, rest, name, &conf_worker_dialect, &e);
	json_decref(rest);
	if (ret) {
		conf_err_text(&e, err, errlen);
		goto fail;
	}
	ret = config_json_disk_files(&disk, json_object_get(d, "backing"),
				     json_object_get(d, "cbt_file"), name, err, errlen);
	if (ret) {
		disk_files_free(&disk);
		conf_free(&conf_disk_schema, &disk);
		return ret;
	}
	if (!disk.path[0]) {
		config_error(err, errlen, "%s.path: must not be empty", name);
		goto fail;
	}
	if (base_dir && disk.path[0] != '/') {
		char *p = config_path(base_dir, disk.path);

		free(disk.path);
		disk.path = p;
		if (!p) {
			disk_files_free(&disk);
			return -ENOMEM;
		}
	}
	c->disks[c->nr_disks++] = disk;
	return 0;
fail:
	disk_files_free(&disk);
	conf_free(&conf_disk_schema, &disk);
	return -EINVAL;
}

static int config_json_net(struct vm_config *c, json_t *n, unsigned idx, char *err,
			   size_t errlen)
{
	const char *key;
	json_t *v;
	struct net_config net = { 0 };
	bool passt = false;
	char name[64];

	if (!json_is_object(n))
		return config_error(err, errlen, "nets[%u]: expected an object", idx);
	if (c->nr_nets >= CONFIG_MAX_NETS)
		return config_error(err, errlen, "nets: at most %d NICs", CONFIG_MAX_NETS);
	json_object_foreach(n, key, v) {
		snprintf(name, sizeof(name), "nets[%u].%s", idx, key);
		if (!strcmp(key, "tap")) {
			if (json_want_string(v, name, err, errlen))
				goto fail;
			if (!conf_tap_valid(json_string_value(v))) {
				config_error(err, errlen, "%s: not " CONF_TAP_SYNTAX, name);
				goto fail;
			}
			replace_str(&net.tap, json_string_value(v));
		} else if (!strcmp(key, "tap_fd")) {
			if (json_want_string(v, name, err, errlen))
				goto fail;
			replace_str(&net.tap_fd, json_string_value(v));
		} else if (!strcmp(key, "backend")) {
			if (json_want_string(v, name, err, errlen))
				goto fail;
			if (strcmp(json_string_value(v), "passt") && strcmp(json_string_value(v), "tap")) {
				config_error(err, errlen, "%s: not tap or passt", name);
				goto fail;
			}
			passt = !strcmp(json_string_value(v), "passt");
		} else if (!strcmp(key, "fd")) {
			char buf[32];

			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 1 << 20) {
				config_error(err, errlen, "%s: expected a file descriptor number", name);
				goto fail;
			}
			snprintf(buf, sizeof(buf), "fd:%lld", (long long)json_integer_value(v));
			replace_str(&net.passt_fd, buf);
		} else if (!strcmp(key, "mac")) {
			if (json_want_string(v, name, err, errlen))
				goto fail;
			if (!conf_mac_parse(json_string_value(v), net.mac)) {
				config_error(err, errlen, "%s: not " CONF_MAC_SYNTAX, name);
				goto fail;
			}
			net.has_mac = true;
		} else if (!strcmp(key, "vlan")) {
			char buf[32];

			if (json_is_integer(v))
				snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
			else
				snprintf(buf, sizeof(buf), "%s", json_is_string(v) ? json_string_value(v) : "");
			if (!conf_vlan_parse(buf, &net.vlan, &net.vlan_trunk)) {
				config_error(err, errlen, "%s: not " CONF_VLAN_SYNTAX, name);
				goto fail;
			}
		} else if (!strcmp(key, "queues")) {
			char buf[32];

			snprintf(buf, sizeof(buf), "%lld",
				 json_is_integer(v) ? (long long)json_integer_value(v) : -1LL);
			if (!conf_queues_parse(buf, &net.queues)) {
				config_error(err, errlen, "%s: not " CONF_QUEUES_SYNTAX, name);
				goto fail;
			}
		} else if (!strcmp(key, "mtu")) {
			char buf[32];

			snprintf(buf, sizeof(buf), "%lld",
				 json_is_integer(v) ? (long long)json_integer_value(v) : -1LL);
			if (!conf_mtu_parse(buf, &net.mtu)) {
				config_error(err, errlen, "%s: not " CONF_MTU_SYNTAX, name);
				goto fail;
			}
		} else {
			config_error(err, errlen, "%s: unknown key", name);
			goto fail;
		}
	}
	if (!net.tap && !passt && !net.passt_fd) {
		config_error(err, errlen, "nets[%u].tap: missing", idx);
		goto fail;
	}
	snprintf(name, sizeof(name), "nets[%u]", idx);
	if (passt != !!net.passt_fd) {
		config_error(err, errlen, "%s: \"backend\": \"passt\" goes with \"fd\": N", name);
		goto fail;
	}
	if (config_check_net_backend(&net, name, err, errlen))
		goto fail;
	c->nets[c->nr_nets++] = net;
	return 0;
fail:
	free(net.tap);
	free(net.tap_fd);
	free(net.passt_fd);
	return -EINVAL;
}

static int config_from_json(struct vm_config *c, json_t *root, const char *base_dir, char *err,
			    size_t errlen)
{
	const char *key;
	json_t *v;
	uint64_t u;

	if (!json_is_object(root))
		return config_error(err, errlen, "(top level): expected a JSON object");
	json_object_foreach(root, key, v) {
		if (!strcmp(key, "kernel") || !strcmp(key, "initrd")) {
			char **dst = !strcmp(key, "kernel") ? &c->kernel : &c->initrd;

			if (json_want_string(v, key, err, errlen))
				return -EINVAL;
			free(*dst);
			*dst = config_path(base_dir, json_string_value(v));
		} else if (!strcmp(key, "cmdline")) {
			if (!json_is_string(v))
				return config_error(err, errlen, "cmdline: expected a string");
			replace_str(&c->cmdline, json_string_value(v));
		} else if (!strcmp(key, "cpus")) {
			if (json_want_uint(v, key, 1, CONFIG_MAX_CPUS, &u, err, errlen))
				return -EINVAL;
			c->cpus = (unsigned)u;
		} else if (!strcmp(key, "cpus_max")) {
			if (json_want_uint(v, key, 0, CONFIG_MAX_CPUS, &u, err, errlen))
				return -EINVAL;
			c->cpus_max = (unsigned)u;
		} else if (!strcmp(key, "memory_mib")) {
			if (json_want_uint(v, key, CONFIG_MIN_MEM_MIB, CONF_MAX_MEM_MIB, &u, err, errlen))
				return -EINVAL;
			c->mem_mib = u;
		} else if (!strcmp(key, "memory")) {
			if (config_json_memory(c, v, err, errlen))
				return -EINVAL;
		} else if (!strcmp(key, "rng") || !strcmp(key, "emulation_fallback") ||
			   !strcmp(key, "acpi")) {
			if (!json_is_boolean(v))
				return config_error(err, errlen, "%s: expected true or false", key);
			*(key[0] == 'r' ? &c->rng : key[0] == 'a' ? &c->acpi
					: &c->emulation_fallback) = json_is_true(v);
		} else if (!strcmp(key, "console")) {
			if (!json_is_string(v))
				return config_error(err, errlen, "console: expected a string");
			if (config_set_console(c, json_string_value(v), err, errlen))
				return -EINVAL;
		} else if (!strcmp(key, "devices")) {
			size_t i;
			json_t *e;

			if (!json_is_array(v))
				return config_error(err, errlen, "devices: expected an array");
			json_array_foreach(v, i, e) {
				int ret = config_json_device(c, e, (unsigned)i, err, errlen);

				if (ret)
					return ret;
			}
		} else if (!strcmp(key, "disks") || !strcmp(key, "nets")) {
			size_t i;
			json_t *e;

			if (!json_is_array(v))
				return config_error(err, errlen, "%s: expected an array", key);
			json_array_foreach(v, i, e) {
				int ret = key[0] == 'd'
						  ? config_json_disk(c, e, (unsigned)i, base_dir,
								     err, errlen)
						  : config_json_net(c, e, (unsigned)i, err, errlen);
				if (ret)
					return ret;
			}
		} else {
			return config_error(err, errlen, "%s: unknown key", key);
		}
	}
	return 0;
}

int config_load_json_text(struct vm_config *c, const char *text, size_t len, char *err,
			  size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	int ret;

	if (!root)
		return config_error(err, errlen, "(json) line %d column %d: %s", jerr.line,
				    jerr.column, jerr.text);
	ret = config_from_json(c, root, NULL, err, errlen);
	json_decref(root);
	return ret;
}

int config_load_json(struct vm_config *c, const char *path, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	char *dir, *slash;
	int ret, fd;

	if (fdspec_is_fd(path, &fd)) {
		/* cellad's file in its run_dir, which the worker cannot reach. */
		char why[256];

		fd = fdspec_open(path, O_RDONLY, 0, FDSPEC_REG, why, sizeof(why));
		if (fd < 0)
			return config_error(err, errlen, "%s", why);
		root = json_loadfd(fd, JSON_REJECT_DUPLICATES, &jerr);
		close(fd);
		if (!root)
			return config_error(err, errlen, "%s: line %d column %d: %s", path,
					    jerr.line, jerr.column, jerr.text);
		ret = config_from_json(c, root, NULL, err, errlen);
		json_decref(root);
		return ret;
	}
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return config_error(err, errlen, "%s: line %d column %d: %s", path, jerr.line,
				    jerr.column, jerr.text);
	dir = strdup(path);
	slash = dir ? strrchr(dir, '/') : NULL;
	if (slash)
		*slash = '\0';
	ret = config_from_json(c, root, slash ? dir : NULL, err, errlen);
	free(dir);
	json_decref(root);
	return ret;
}

static int check_readable(const char *key, const char *path, bool need_write, unsigned kinds,
			  char *err, size_t errlen)
{
	struct stat st;
	char why[256];
	int fd;

	if (fdspec_is_fd(path, &fd)) {
		/* A descriptor from cellad: open, of a file's kind, and open for
		 * what the device needs. */
		fd = fdspec_open(path, need_write ? O_RDWR : O_RDONLY, 0, kinds, why, sizeof(why));
		if (fd < 0)
			return config_error(err, errlen, "%s: %s", key, why);
		close(fd);
		return 0;
	}

	if (stat(path, &st) < 0)
		return config_error(err, errlen, "%s: %s: %s", key, path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return config_error(err, errlen, "%s: %s: is a directory", key, path);
	if (access(path, need_write ? R_OK | W_OK : R_OK) < 0)
		return config_error(err, errlen, "%s: %s: %s", key, path, strerror(errno));
	return 0;
}

int config_validate(const struct vm_config *c, char *err, size_t errlen)
{
	struct sysinfo si;
	uint64_t host_mib;

	if (!c->kernel)
		return config_error(err, errlen, "kernel: missing (use --kernel FILE)");
	if (check_readable("kernel", c->kernel, false, FDSPEC_REG, err, errlen))
		return -EINVAL;
	if (c->initrd && check_readable("initrd", c->initrd, false, FDSPEC_REG, err, errlen))
		return -EINVAL;
	if (c->cpus < 1 || c->cpus > CONFIG_MAX_CPUS)
		return config_error(err, errlen, "cpus: %u is out of range (1 to %d)", c->cpus,
				    CONFIG_MAX_CPUS);
	if (c->cpus_max > CONFIG_MAX_CPUS || (c->cpus_max && c->cpus_max < c->cpus))
		return config_error(err, errlen, "cpus_max: %u is out of range (cpus, %u, to %d)",
				    c->cpus_max, c->cpus, CONFIG_MAX_CPUS);
	if (c->cpus_max > c->cpus && !c->acpi)
		return config_error(err, errlen, "cpus_max: vCPU hot-plug goes through ACPI: "
				    "it needs acpi (on by default; --no-acpi or \"acpi\": false turn it off)");
	if (c->mem_mib < CONFIG_MIN_MEM_MIB)
		return config_error(err, errlen, "memory: %llu MiB is below the minimum of %d MiB",
				    (unsigned long long)c->mem_mib, CONFIG_MIN_MEM_MIB);
	if (sysinfo(&si) == 0) {
		host_mib = (uint64_t)si.totalram * si.mem_unit >> 20;
		if (c->mem_mib > host_mib)
			return config_error(err, errlen,
					    "memory: %llu MiB is more than the host's %llu MiB",
					    (unsigned long long)c->mem_mib,
					    (unsigned long long)host_mib);
	}
	if (c->cmdline && strlen(c->cmdline) > CONF_CMDLINE_MAX)
		return config_error(err, errlen, "cmdline: longer than %d bytes", CONF_CMDLINE_MAX);
	if (devtypes_check(c, err, errlen))
		return -EINVAL;
	for (unsigned i = 0; i < c->nr_disks; i++) {
		char key[32], why[128];

		snprintf(key, sizeof(key), "disks[%u].path", i);
		if (check_readable(key, c->disks[i].path, !c->disks[i].readonly,
				   FDSPEC_REG | FDSPEC_BLK, err, errlen))
			return -EINVAL;
		if (c->disks[i].backing && !fdspec_is_fd(c->disks[i].path, &(int){ 0 }))
			return config_error(err, errlen, "disks[%u].backing: only for a disk given as "
					    "fd:N (by name, the image's own backing names are used)", i);
		if (!conf_qos_valid(&c->disks[i].qos, why, sizeof(why)))
			return config_error(err, errlen, "disks[%u].qos: %s", i, why);
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(c->disks[i].path, c->disks[j].path))
				return config_error(err, errlen, "%s: %s is used twice", key,
						    c->disks[i].path);
	}
	for (unsigned i = 0; i < c->nr_nets; i++) {
		int fd;

		unsigned nfd = c->nets[i].tap_fd ? tap_fd_count(c->nets[i].tap_fd) : 0;

		(void)fd;
		if (c->nets[i].tap_fd && !nfd)
			return config_error(err, errlen, "nets[%u].tap_fd: '%s' is not fd:N (or "
					    "fd:N+fd:M+..., one per queue)", i, c->nets[i].tap_fd);
		/* Several queues of a passed tap: one descriptor each. */
		if (nfd && nfd != (c->nets[i].queues > 1 ? c->nets[i].queues : 1))
			return config_error(err, errlen, "nets[%u].tap_fd: %u descriptor%s for "
					    "queues=%u (one per queue pair)", i, nfd,
					    nfd == 1 ? "" : "s", c->nets[i].queues ? c->nets[i].queues : 1);
	}
	{
		int fd;

		if (c->kvm && fdspec_is_fd(c->kvm, &fd) && fd < 0)
			return config_error(err, errlen, "kvm: '%s' is not fd:N", c->kvm);
		if (c->userfaultfd && fdspec_is_fd(c->userfaultfd, &fd) && fd < 0)
			return config_error(err, errlen, "userfaultfd: '%s' is not fd:N",
					    c->userfaultfd);
	}
	for (unsigned i = 0; i < c->nr_nets; i++)
		for (unsigned j = 0; j < i; j++)
			if (c->nets[i].tap && c->nets[j].tap && !strcmp(c->nets[i].tap, c->nets[j].tap))
				return config_error(err, errlen, "nets[%u].tap: %s is used twice",
						    i, c->nets[i].tap);
	if ((c->console == CONSOLE_FILE || c->console == CONSOLE_UNIX) && !c->console_path)
		return config_error(err, errlen, "console: a path is needed");
	return 0;
}
