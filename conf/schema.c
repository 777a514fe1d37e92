/* schema.c: the one parser of configuration keys (option strings and JSON)
 * and their JSON form; see schema.h. */
#include "schema.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct conf_dialect conf_worker_dialect = { "unknown key", "missing" };
const struct conf_dialect conf_api_dialect = { "unknown field", "required" };

int conf_error(struct conf_err *e, const char *field, const char *fmt, ...)
{
	va_list ap;

	snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void conf_err_text(const struct conf_err *e, char *buf, size_t len)
{
	if (e->field[0])
		snprintf(buf, len, "%s: %s", e->field, e->reason);
	else
		snprintf(buf, len, "%s", e->reason);
}

bool conf_name_valid(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n < 1 || n > max || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

static const struct conf_key *conf_find(const struct conf_schema *s, const char *name,
					size_t len)
{
	for (unsigned i = 0; i < s->nr_keys; i++)
		if (strlen(s->keys[i].name) == len && !strncmp(s->keys[i].name, name, len))
			return &s->keys[i];
	return NULL;
}

static void *at(void *obj, const struct conf_key *k)
{
	return (char *)obj + k->offset;
}

static void store_uint(void *obj, const struct conf_key *k, uint64_t v)
{
	void *p = at(obj, k);

	if (k->size == sizeof(uint64_t))
		*(uint64_t *)p = v;
	else if (k->size == sizeof(uint32_t))
		*(uint32_t *)p = (uint32_t)v;
	else
		*(uint16_t *)p = (uint16_t)v;
}

static uint64_t load_uint(const void *obj, const struct conf_key *k)
{
	const void *p = (const char *)obj + k->offset;

	if (k->size == sizeof(uint64_t))
		return *(const uint64_t *)p;
	if (k->size == sizeof(uint32_t))
		return *(const uint32_t *)p;
	return *(const uint16_t *)p;
}

static int store_string(void *obj, const struct conf_key *k, const char *v)
{
	if (k->size) {
		snprintf(at(obj, k), k->size, "%s", v);
		return 0;
	}
	char **dst = at(obj, k), *dup = strdup(v);

	if (!dup)
		return -ENOMEM;
	free(*dst);
	*dst = dup;
	return 0;
}

/* "\"raw\" or \"qcow2\"" (quoted) or "raw or qcow2". */
static void choices_text(const struct conf_key *k, bool quoted, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = 0;
	for (unsigned i = 0; k->choices[i] && n < len; i++) {
		const char *sep = !i ? "" : k->choices[i + 1] ? ", " : " or ";

		n += (size_t)snprintf(buf + n, len - n, quoted ? "%s\"%s\"" : "%s%s", sep,
				      k->choices[i]);
	}
}

static bool enum_valid(const struct conf_key *k, const char *v)
{
	for (unsigned i = 0; k->choices[i]; i++)
		if (!strcmp(k->choices[i], v))
			return true;
	return false;
}

static void key_names(const struct conf_schema *s, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = 0;
	for (unsigned i = 0; i < s->nr_keys && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", s->keys[i].name);
}

int conf_json_uint(json_t *v, const char *field, uint64_t min, uint64_t max, uint64_t *out,
		   struct conf_err *e)
{
	json_int_t n;

	if (!json_is_integer(v))
		return conf_error(e, field, "expected an integer from %llu to %llu",
				  (unsigned long long)min, (unsigned long long)max);
	n = json_integer_value(v);
	if (n < 0 || (uint64_t)n < min || (uint64_t)n > max)
		return conf_error(e, field, "%lld is out of range (%llu to %llu)", (long long)n,
				  (unsigned long long)min, (unsigned long long)max);
	*out = (uint64_t)n;
	return 0;
}

int conf_json_string(json_t *v, const char *field, size_t max, const char **out,
		     struct conf_err *e)
{
	if (!json_is_string(v))
		return conf_error(e, field, "expected a string");
	if (json_string_length(v) > max)
		return conf_error(e, field, "longer than %zu bytes", max);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return conf_error(e, field, "contains a NUL byte");
	*out = json_string_value(v);
	return 0;
}

static int name_chars_error(struct conf_err *e, const char *field, const struct conf_key *k)
{
	return conf_error(e, field, "expected 1-%llu of A-Z a-z 0-9 . _ -",
			  (unsigned long long)k->max);
}

static int key_from_json(const struct conf_key *k, void *obj, json_t *v, const char *field,
			 const struct conf_dialect *d, struct conf_err *e)
{
	const char *s;
	uint64_t u;
	char buf[128];

	switch (k->type) {
	case CONF_BOOL:
		if (!json_is_boolean(v))
			return conf_error(e, field, "expected true or false");
		*(bool *)at(obj, k) = json_is_true(v);
		return 0;
	case CONF_UINT:
		if (conf_json_uint(v, field, k->min, k->max, &u, e))
			return -EINVAL;
		store_uint(obj, k, u);
		return 0;
	case CONF_STRING:
		if (conf_json_string(v, field, k->max, &s, e))
			return -EINVAL;
		if ((k->flags & CONF_NAME_CHARS) && !conf_name_valid(s, k->max))
			return name_chars_error(e, field, k);
		if (store_string(obj, k, s))
			return conf_error(e, field, "out of memory");
		return 0;
	case CONF_ENUM:
		if (!json_is_string(v))
			return conf_error(e, field, "expected a string");
		if (!enum_valid(k, json_string_value(v))) {
			choices_text(k, true, buf, sizeof(buf));
			return conf_error(e, field, "expected %s", buf);
		}
		snprintf(at(obj, k), k->size, "%s", json_string_value(v));
		return 0;
	case CONF_OBJECT:
		return conf_from_json(k->sub, at(obj, k), v, field, d, e);
	}
	return conf_error(e, field, "unsupported key type");
}

int conf_from_json(const struct conf_schema *s, void *obj, json_t *o, const char *field,
		   const struct conf_dialect *d, struct conf_err *e)
{
	const char *name;
	json_t *v;
	char f[sizeof(e->field)], keys[160];

	if (!json_is_object(o)) {
		key_names(s, keys, sizeof(keys));
		return conf_error(e, field, "expected an object {%s}", keys);
	}
	json_object_foreach(o, name, v) {
		const struct conf_key *k = conf_find(s, name, strlen(name));

		snprintf(f, sizeof(f), "%s%s%.40s", field, field[0] ? "." : "", name);
		if (!k) {
			if (!s->list_keys)
				return conf_error(e, f, "%s", d->unknown);
			key_names(s, keys, sizeof(keys));
			return conf_error(e, f, "%s (%s)", d->unknown, keys);
		}
		if (key_from_json(k, obj, v, f, d, e))
			return -EINVAL;
	}
	for (unsigned i = 0; i < s->nr_keys; i++) {
		if ((s->keys[i].flags & CONF_REQUIRED) && !json_object_get(o, s->keys[i].name)) {
			snprintf(f, sizeof(f), "%s%s%s", field, field[0] ? "." : "", s->keys[i].name);
			return conf_error(e, f, "%s", d->missing);
		}
	}
	return 0;
}

/* Option strings ---------------------------------------------------------- */

void conf_usage(const struct conf_schema *s, char *buf, size_t len)
{
	const char *items[48];
	unsigned n = 0;
	size_t off = 0;

	for (const struct conf_word *w = s->words; w && w->word && n < ARRAY_SIZE(items); w++)
		items[n++] = w->word;
	for (unsigned i = 0; i < s->nr_keys && n < ARRAY_SIZE(items); i++) {
		const struct conf_key *k = &s->keys[i];

		if (k->flags & CONF_POSITIONAL)
			continue;
		if (k->type == CONF_OBJECT) {
			for (unsigned j = 0; j < k->sub->nr_keys && n < ARRAY_SIZE(items); j++)
				items[n++] = k->sub->keys[j].syntax;
			continue;
		}
		items[n++] = k->syntax;
	}
	buf[0] = 0;
	for (unsigned i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s",
					!i ? "" : i + 1 == n ? " or " : ", ", items[i]);
}

static const struct conf_key *conf_positional(const struct conf_schema *s)
{
	for (unsigned i = 0; i < s->nr_keys; i++)
		if (s->keys[i].flags & CONF_POSITIONAL)
			return &s->keys[i];
	return NULL;
}

/* The key for "name" in s or, flattened, in one of its nested schemas;
 * *objp moves to the nested struct. */
static const struct conf_key *conf_find_flat(const struct conf_schema *s, const char *name,
					     size_t len, void **objp)
{
	const struct conf_key *k = conf_find(s, name, len);

	if (k && k->type != CONF_OBJECT)
		return k;
	for (unsigned i = 0; i < s->nr_keys; i++) {
		const struct conf_key *o = &s->keys[i];

		if (o->type == CONF_OBJECT && (k = conf_find(o->sub, name, len))) {
			if (objp)
				*objp = (char *)*objp + o->offset;
			return k;
		}
	}
	return NULL;
}

static int parse_bool_word(const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "true")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "off") || !strcmp(v, "false")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

static int key_from_string(const struct conf_schema *s, const struct conf_key *k, void *obj,
			   const char *v, struct conf_err *e)
{
	char buf[128];
	char *end;
	unsigned long long u;
	bool b;

	switch (k->type) {
	case CONF_BOOL:
		if (parse_bool_word(v, &b))
			return conf_error(e, NULL, "%s: %s='%s' is not on or off", s->name, k->name, v);
		*(bool *)at(obj, k) = b;
		return 0;
	case CONF_UINT:
		errno = 0;
		u = strtoull(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end || errno)
			return conf_error(e, NULL, "%s: %s='%s' is not a number", s->name, k->name, v);
		if (u < k->min || u > k->max)
			return conf_error(e, NULL, "%s: %s=%llu is out of range (%llu to %llu)",
					  s->name, k->name, u, (unsigned long long)k->min,
					  (unsigned long long)k->max);
		store_uint(obj, k, u);
		return 0;
	case CONF_STRING:
		if (strlen(v) > k->max)
			return conf_error(e, NULL, "%s: %s '%s' longer than %llu bytes", s->name,
					  k->name, v, (unsigned long long)k->max);
		if ((k->flags & CONF_NAME_CHARS) && !conf_name_valid(v, k->max))
			return conf_error(e, NULL, "%s: %s '%s': expected 1-%llu of A-Z a-z 0-9 . _ -",
					  s->name, k->name, v, (unsigned long long)k->max);
		if (!v[0])
			return conf_error(e, NULL, "%s: %s must not be empty", s->name, k->name);
		return store_string(obj, k, v);
	case CONF_ENUM:
		if (!enum_valid(k, v)) {
			choices_text(k, false, buf, sizeof(buf));
			return conf_error(e, NULL, "%s: %s '%s' is not %s", s->name, k->name, v, buf);
		}
		snprintf(at(obj, k), k->size, "%s", v);
		return 0;
	case CONF_OBJECT:
		break;
	}
	return conf_error(e, NULL, "%s: %s: not an option-string key", s->name, k->name);
}

int conf_from_string(const struct conf_schema *s, void *obj, const char *spec,
		     struct conf_err *e)
{
	const struct conf_key *pos = conf_positional(s);
	char *copy, *tok, *save = NULL, usage[320];
	bool first = true;
	int ret = 0;

	if (pos && (spec[0] == ',' || spec[0] == '\0'))
		return conf_error(e, NULL, "%s: empty %s in '%s'", s->name, pos->name, spec);
	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		const char *eq = strchr(tok, '=');
		const struct conf_key *k = NULL;
		void *o = obj;

		if (first && pos) {
			first = false;
			ret = key_from_string(s, pos, obj, tok, e);
			continue;
		}
		first = false;
		for (const struct conf_word *w = s->words; !eq && w && w->word; w++) {
			if (!strcmp(w->word, tok)) {
				k = conf_find_flat(s, w->key, strlen(w->key), &o);
				*(bool *)at(o, k) = w->value;
				break;
			}
		}
		if (k)
			continue;
		if (eq)
			k = conf_find_flat(s, tok, (size_t)(eq - tok), &o);
		if (!k || (k->flags & CONF_POSITIONAL)) {
			conf_usage(s, usage, sizeof(usage));
			ret = conf_error(e, NULL, "%s: unknown option '%s' (expected %s)", s->name, tok,
					 usage);
			break;
		}
		ret = key_from_string(s, k, o, eq + 1, e);
	}
	for (unsigned i = 0; i < s->nr_keys && !ret; i++) {
		const struct conf_key *k = &s->keys[i];

		if (!(k->flags & CONF_REQUIRED) || (k->flags & CONF_POSITIONAL))
			continue;
		if (k->type == CONF_STRING && (k->size ? !*(char *)at(obj, k)
						      : !*(char **)at(obj, k)))
			ret = conf_error(e, NULL, "%s: '%s' has no %s", s->name, spec, k->syntax);
	}
	free(copy);
	return ret;
}

static json_t *json_typed(const struct conf_key *k, const char *v)
{
	char *end;
	long long n;
	bool b;

	switch (k->type) {
	case CONF_UINT:
		n = strtoll(v, &end, 10);
		return *end || end == v ? json_string(v) : json_integer(n);
	case CONF_BOOL:
		return parse_bool_word(v, &b) ? json_string(v) : json_boolean(b);
	default:
		return json_string(v);
	}
}

json_t *conf_string_to_json(const struct conf_schema *s, const char *spec)
{
	const struct conf_key *pos = conf_positional(s);
	char *copy = strdup(spec), *tok, *save = NULL;
	json_t *o = json_object();
	bool first = true;

	if (!copy || !o) {
		free(copy);
		json_decref(o);
		return NULL;
	}
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const struct conf_key *k = NULL;
		const char *eq = strchr(tok, '=');
		json_t *dst = o;

		if (first && pos) {
			first = false;
			json_object_set_new(o, pos->name, json_string(tok));
			continue;
		}
		first = false;
		for (const struct conf_word *w = s->words; !eq && w && w->word; w++)
			if (!strcmp(w->word, tok))
				k = conf_find_flat(s, w->key, strlen(w->key), NULL);
		if (!eq && !k) {
			/* a bare boolean key ("cbt") means on; anything else, cellad names */
			k = conf_find_flat(s, tok, strlen(tok), NULL);
			if (!k || k->type != CONF_BOOL)
				k = NULL;
		}
		if (!eq && !k) {
			json_object_set_new(o, tok, json_true());
			continue;
		}
		if (!k)
			k = conf_find_flat(s, tok, (size_t)(eq - tok), NULL);
		if (!k) {
			char key[64];

			snprintf(key, sizeof(key), "%.*s", (int)MIN((size_t)(eq - tok), 63), tok);
			json_object_set_new(o, key, json_string(eq + 1));
			continue;
		}
		for (unsigned i = 0; i < s->nr_keys; i++) {
			const struct conf_key *ok = &s->keys[i];

			if (ok->type == CONF_OBJECT && k >= ok->sub->keys &&
			    k < ok->sub->keys + ok->sub->nr_keys) {
				dst = json_object_get(o, ok->name);
				if (!dst)
					json_object_set_new(o, ok->name, dst = json_object());
			}
		}
		if (eq) {
			json_object_set_new(dst, k->name, json_typed(k, eq + 1));
		} else {
			bool value = true;

			for (const struct conf_word *w = s->words; w && w->word; w++)
				if (!strcmp(w->word, tok))
					value = w->value;
			json_object_set_new(dst, k->name, json_boolean(value));
		}
	}
	free(copy);
	return o;
}

json_t *conf_to_json(const struct conf_schema *s, const void *obj)
{
	json_t *o = json_object();

	for (unsigned i = 0; i < s->nr_keys; i++) {
		const struct conf_key *k = &s->keys[i];
		const void *p = (const char *)obj + k->offset;

		switch (k->type) {
		case CONF_BOOL:
			json_object_set_new(o, k->name, json_boolean(*(const bool *)p));
			break;
		case CONF_UINT:
			json_object_set_new(o, k->name, json_integer((json_int_t)load_uint(obj, k)));
			break;
		case CONF_STRING:
		case CONF_ENUM:
			if (k->size)
				json_object_set_new(o, k->name, json_string((const char *)p));
			else if (*(char *const *)p)
				json_object_set_new(o, k->name, json_string(*(char *const *)p));
			break;
		case CONF_OBJECT:
			json_object_set_new(o, k->name, conf_to_json(k->sub, p));
			break;
		}
	}
	return o;
}

void conf_free(const struct conf_schema *s, void *obj)
{
	for (unsigned i = 0; i < s->nr_keys; i++) {
		const struct conf_key *k = &s->keys[i];

		if (k->type == CONF_STRING && !k->size) {
			free(*(char **)at(obj, k));
			*(char **)at(obj, k) = NULL;
		} else if (k->type == CONF_OBJECT) {
			conf_free(k->sub, at(obj, k));
		}
	}
}
