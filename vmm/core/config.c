/* config.c: VM configuration from JSON (jansson) and option strings, with
 * validation that names the offending key and the reason. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"

#define CONFIG_MIN_MEM_MIB 8

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
}

static void replace_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? strdup(src) : NULL;
}

void config_free(struct vm_config *c)
{
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->console_path);
	for (unsigned i = 0; i < c->nr_disks; i++)
		free(c->disks[i].path);
	for (unsigned i = 0; i < c->nr_nets; i++)
		free(c->nets[i].tap);
	memset(c, 0, sizeof(*c));
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	if (mac[0] & 1)
		return -EINVAL; /* multicast addresses cannot be a NIC's */
	return 0;
}

int config_disk_qos_set(struct disk_qos_config *q, const char *key, uint64_t v)
{
	uint64_t *dst;

	if (!strcmp(key, "iops"))
		dst = &q->iops;
	else if (!strcmp(key, "iops_burst"))
		dst = &q->iops_burst;
	else if (!strcmp(key, "bps"))
		dst = &q->bps;
	else if (!strcmp(key, "bps_burst"))
		dst = &q->bps_burst;
	else
		return -ENOENT;
	if (v > CONFIG_QOS_MAX)
		return -EINVAL;
	*dst = v;
	return 0;
}

/* "key=value" disk options beyond ro/rw/id: format, QoS, cbt. */
static int config_disk_option(struct disk_config *d, const char *tok, char *err, size_t errlen)
{
	const char *eq = strchr(tok, '=');
	char key[16];
	char *end;
	unsigned long long v;

	if (!eq || (size_t)(eq - tok) >= sizeof(key))
		goto unknown;
	memcpy(key, tok, (size_t)(eq - tok));
	key[eq - tok] = 0;
	if (!strcmp(key, "format")) {
		if (strcmp(eq + 1, "raw") && strcmp(eq + 1, "qcow2"))
			return config_error(err, errlen, "disk: format '%s' is not raw or qcow2",
					    eq + 1);
		snprintf(d->format, sizeof(d->format), "%s", eq + 1);
		return 0;
	}
	if (!strcmp(key, "cbt")) {
		if (strcmp(eq + 1, "on") && strcmp(eq + 1, "off"))
			return config_error(err, errlen, "disk: cbt='%s' is not on or off", eq + 1);
		d->cbt = !strcmp(eq + 1, "on");
		return 0;
	}
	errno = 0;
	v = strtoull(eq + 1, &end, 10);
	if (eq[1] < '0' || eq[1] > '9' || *end || errno) {
		if (strcmp(key, "iops") && strcmp(key, "iops_burst") && strcmp(key, "bps") &&
		    strcmp(key, "bps_burst"))
			goto unknown;
		return config_error(err, errlen, "disk: %s='%s' is not a number", key, eq + 1);
	}
	switch (config_disk_qos_set(&d->qos, key, v)) {
	case 0:
		return 0;
	case -EINVAL:
		return config_error(err, errlen, "disk: %s=%llu is out of range (0 to %llu)", key,
				    v, (unsigned long long)CONFIG_QOS_MAX);
	default:
		break;
	}
unknown:
	return config_error(err, errlen,
			    "disk: unknown option '%s' (expected ro, rw, id=ID, format=raw|qcow2, "
			    "iops=N, iops_burst=N, bps=N, bps_burst=N or cbt=on|off)",
			    tok);
}

int config_add_disk(struct vm_config *c, const char *spec, char *err, size_t errlen)
{
	char *copy, *tok, *save = NULL;
	struct disk_config d = { 0 };
	int ret = 0;

	if (c->nr_disks >= CONFIG_MAX_DISKS)
		return config_error(err, errlen, "disks: at most %d disks", CONFIG_MAX_DISKS);
	if (spec[0] == ',' || spec[0] == '\0')
		return config_error(err, errlen, "disk: empty path in '%s'", spec);
	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	tok = strtok_r(copy, ",", &save);
	if (!tok || !*tok) {
		ret = config_error(err, errlen, "disk: empty path in '%s'", spec);
		goto out;
	}
	d.path = strdup(tok);
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "ro")) {
			d.readonly = true;
		} else if (!strcmp(tok, "rw")) {
			d.readonly = false;
		} else if (!strncmp(tok, "id=", 3)) {
			if (strlen(tok + 3) > 20) {
				ret = config_error(err, errlen, "disk: id '%s' longer than 20 bytes",
						   tok + 3);
				goto out;
			}
			snprintf(d.id, sizeof(d.id), "%s", tok + 3);
		} else if ((ret = config_disk_option(&d, tok, err, errlen))) {
			goto out;
		}
	}
	c->disks[c->nr_disks++] = d;
	d.path = NULL;
out:
	free(d.path);
	free(copy);
	return ret;
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
			if (!tok[4] || strlen(tok + 4) >= 16) {
				ret = config_error(err, errlen,
						   "net: tap name '%s' must be 1-15 characters",
						   tok + 4);
				goto out;
			}
			replace_str(&n.tap, tok + 4);
		} else if (!strncmp(tok, "mac=", 4)) {
			if (parse_mac(tok + 4, n.mac)) {
				ret = config_error(err, errlen,
						   "net: mac '%s' is not a unicast aa:bb:cc:dd:ee:ff",
						   tok + 4);
				goto out;
			}
			n.has_mac = true;
		} else {
			ret = config_error(err, errlen,
					   "net: unknown option '%s' (expected tap=NAME or mac=MAC)",
					   tok);
			goto out;
		}
	}
	if (!n.tap) {
		ret = config_error(err, errlen, "net: '%s' has no tap=NAME", spec);
		goto out;
	}
	c->nets[c->nr_nets++] = n;
	n.tap = NULL;
out:
	free(n.tap);
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

/* Resolve a path from the config file relative to the file's directory. */
static char *config_path(const char *base_dir, const char *p)
{
	char *out;

	if (p[0] == '/' || !base_dir)
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
	json_int_t i;

	if (!json_is_integer(v))
		return config_error(err, errlen, "%s: expected an integer", key);
	i = json_integer_value(v);
	if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
		return config_error(err, errlen, "%s: %lld is out of range (%llu to %llu)", key,
				    (long long)i, (unsigned long long)min,
				    (unsigned long long)max);
	*out = (uint64_t)i;
	return 0;
}

static int config_json_qos(struct disk_qos_config *q, json_t *o, const char *where, char *err,
			   size_t errlen)
{
	const char *key;
	json_t *v;
	char name[96];
	uint64_t u;

	if (!json_is_object(o))
		return config_error(err, errlen, "%s: expected an object", where);
	json_object_foreach(o, key, v) {
		snprintf(name, sizeof(name), "%s.%s", where, key);
		if (json_want_uint(v, name, 0, CONFIG_QOS_MAX, &u, err, errlen))
			return -EINVAL;
		if (config_disk_qos_set(q, key, u))
			return config_error(err, errlen,
					    "%s: unknown key (expected iops, iops_burst, bps, "
					    "bps_burst)", name);
	}
	return 0;
}

static int config_json_disk(struct vm_config *c, json_t *d, unsigned idx, const char *base_dir,
			    char *err, size_t errlen)
{
	const char *key;
	json_t *v;
	struct disk_config disk = { 0 };
	char name[64];

	if (!json_is_object(d))
		return config_error(err, errlen, "disks[%u]: expected an object", idx);
	if (c->nr_disks >= CONFIG_MAX_DISKS)
		return config_error(err, errlen, "disks: at most %d disks", CONFIG_MAX_DISKS);
	json_object_foreach(d, key, v) {
		snprintf(name, sizeof(name), "disks[%u].%s", idx, key);
		if (!strcmp(key, "path")) {
			if (json_want_string(v, name, err, errlen))
				goto fail;
			free(disk.path);
			disk.path = config_path(base_dir, json_string_value(v));
		} else if (!strcmp(key, "readonly")) {
			if (!json_is_boolean(v)) {
				config_error(err, errlen, "%s: expected true or false", name);
				goto fail;
			}
			disk.readonly = json_is_true(v);
		} else if (!strcmp(key, "id")) {
			if (json_want_string(v, name, err, errlen))
				goto fail;
			if (strlen(json_string_value(v)) > 20) {
				config_error(err, errlen, "%s: longer than 20 bytes", name);
				goto fail;
			}
			snprintf(disk.id, sizeof(disk.id), "%s", json_string_value(v));
		} else if (!strcmp(key, "format")) {
			if (!json_is_string(v) || (strcmp(json_string_value(v), "raw") &&
						   strcmp(json_string_value(v), "qcow2"))) {
				config_error(err, errlen, "%s: expected \"raw\" or \"qcow2\"", name);
				goto fail;
			}
			snprintf(disk.format, sizeof(disk.format), "%s", json_string_value(v));
		} else if (!strcmp(key, "cbt")) {
			if (!json_is_boolean(v)) {
				config_error(err, errlen, "%s: expected true or false", name);
				goto fail;
			}
			disk.cbt = json_is_true(v);
		} else if (!strcmp(key, "qos")) {
			if (config_json_qos(&disk.qos, v, name, err, errlen))
				goto fail;
		} else {
			config_error(err, errlen, "%s: unknown key", name);
			goto fail;
		}
	}
	if (!disk.path) {
		config_error(err, errlen, "disks[%u].path: missing", idx);
		goto fail;
	}
	c->disks[c->nr_disks++] = disk;
	return 0;
fail:
	free(disk.path);
	return -EINVAL;
}

static int config_json_net(struct vm_config *c, json_t *n, unsigned idx, char *err,
			   size_t errlen)
{
	const char *key;
	json_t *v;
	struct net_config net = { 0 };
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
			if (strlen(json_string_value(v)) >= 16) {
				config_error(err, errlen, "%s: longer than 15 characters", name);
				goto fail;
			}
			replace_str(&net.tap, json_string_value(v));
		} else if (!strcmp(key, "mac")) {
			if (json_want_string(v, name, err, errlen))
				goto fail;
			if (parse_mac(json_string_value(v), net.mac)) {
				config_error(err, errlen, "%s: not a unicast aa:bb:cc:dd:ee:ff",
					     name);
				goto fail;
			}
			net.has_mac = true;
		} else {
			config_error(err, errlen, "%s: unknown key", name);
			goto fail;
		}
	}
	if (!net.tap) {
		config_error(err, errlen, "nets[%u].tap: missing", idx);
		goto fail;
	}
	c->nets[c->nr_nets++] = net;
	return 0;
fail:
	free(net.tap);
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
		} else if (!strcmp(key, "memory_mib")) {
			if (json_want_uint(v, key, CONFIG_MIN_MEM_MIB, 1ULL << 30, &u, err, errlen))
				return -EINVAL;
			c->mem_mib = u;
		} else if (!strcmp(key, "rng") || !strcmp(key, "emulation_fallback")) {
			if (!json_is_boolean(v))
				return config_error(err, errlen, "%s: expected true or false", key);
			*(key[0] == 'r' ? &c->rng : &c->emulation_fallback) = json_is_true(v);
		} else if (!strcmp(key, "console")) {
			if (!json_is_string(v))
				return config_error(err, errlen, "console: expected a string");
			if (config_set_console(c, json_string_value(v), err, errlen))
				return -EINVAL;
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
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	char *dir, *slash;
	int ret;

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

static int check_readable(const char *key, const char *path, bool need_write, char *err,
			  size_t errlen)
{
	struct stat st;

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
	if (check_readable("kernel", c->kernel, false, err, errlen))
		return -EINVAL;
	if (c->initrd && check_readable("initrd", c->initrd, false, err, errlen))
		return -EINVAL;
	if (c->cpus < 1 || c->cpus > CONFIG_MAX_CPUS)
		return config_error(err, errlen, "cpus: %u is out of range (1 to %d)", c->cpus,
				    CONFIG_MAX_CPUS);
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
	if (c->cmdline && strlen(c->cmdline) > 4096)
		return config_error(err, errlen, "cmdline: longer than 4096 bytes");
	for (unsigned i = 0; i < c->nr_disks; i++) {
		char key[32];

		snprintf(key, sizeof(key), "disks[%u].path", i);
		if (check_readable(key, c->disks[i].path, !c->disks[i].readonly, err, errlen))
			return -EINVAL;
		if ((c->disks[i].qos.iops_burst && !c->disks[i].qos.iops) ||
		    (c->disks[i].qos.bps_burst && !c->disks[i].qos.bps))
			return config_error(err, errlen, "disks[%u].qos: a burst needs its rate "
					    "(iops_burst with iops, bps_burst with bps)", i);
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(c->disks[i].path, c->disks[j].path))
				return config_error(err, errlen, "%s: %s is used twice", key,
						    c->disks[i].path);
	}
	for (unsigned i = 0; i < c->nr_nets; i++)
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(c->nets[i].tap, c->nets[j].tap))
				return config_error(err, errlen, "nets[%u].tap: %s is used twice",
						    i, c->nets[i].tap);
	if ((c->console == CONSOLE_FILE || c->console == CONSOLE_UNIX) && !c->console_path)
		return config_error(err, errlen, "console: a path is needed");
	return 0;
}
