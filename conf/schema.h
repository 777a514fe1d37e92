/* schema.h: declarative configuration keys and the one parser for them, for
 * "k=v,..." option strings and for JSON objects (jansson), and JSON out.
 *
 * A schema is a table of keys, each with its type, limits and where its
 * value lives in a C struct. cella-vm (flags and JSON file), cellad (VM
 * definitions) and the cella CLI parse the same specification with the
 * same table, so a limit or a spelling is written once (conf/limits.h).
 *
 * Errors name the field and the reason separately (cellad's API returns
 * them in two members); conf_err_text() joins them as "field: reason".
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"

enum conf_type {
	CONF_BOOL,   /* bool; "on|off|true|false" in option strings */
	CONF_UINT,   /* uint64_t, unsigned or uint32_t (size) in [min, max] */
	CONF_STRING, /* char[size] (at most size-1 bytes) or, size 0, a strdup'ed char * */
	CONF_ENUM,   /* char[size] holding one of choices */
	CONF_OBJECT, /* a nested schema: a JSON object; flat keys in option strings */
};

/* Key flags. */
#define CONF_REQUIRED   (1u << 0) /* must be given */
#define CONF_POSITIONAL (1u << 1) /* the first word of an option string ("PATH,...") */
#define CONF_NAME_CHARS (1u << 2) /* 1..max of A-Z a-z 0-9 . _ - */

struct conf_schema;

struct conf_key {
	const char *name;      /* JSON member, and "name=" in option strings */
	enum conf_type type;
	size_t offset;         /* of the value in the struct the schema fills */
	size_t size;           /* of that value (strings: the array, 0 = char *) */
	uint64_t min, max;     /* CONF_UINT range; CONF_STRING: max length in bytes */
	const char *const *choices;      /* CONF_ENUM, NULL-terminated */
	const struct conf_schema *sub;   /* CONF_OBJECT */
	const char *syntax;    /* how usage texts show it: "id=ID" */
	unsigned flags;
};

/* A bare word of an option string that sets a boolean key ("ro"). */
struct conf_word {
	const char *word;
	const char *key;
	bool value;
};

struct conf_schema {
	const char *name;                 /* "disk": option-string errors start with it */
	const struct conf_key *keys;
	unsigned nr_keys;
	const struct conf_word *words;    /* NULL-terminated by word, or NULL */
	bool list_keys;                   /* unknown JSON members: name the known ones */
};

#define CONF_KEY_SIZE(type, member) sizeof(((type *)0)->member)

/* Which words a program's messages use (cellad's API has always said
 * "field", cella-vm's configuration "key"). */
struct conf_dialect {
	const char *unknown;  /* "unknown key" / "unknown field" */
	const char *missing;  /* "missing" / "required" */
};
extern const struct conf_dialect conf_worker_dialect, conf_api_dialect;

struct conf_err {
	char field[96];   /* "disks[0].qos.iops"; "" for option strings */
	char reason[320];
};
int conf_error(struct conf_err *e, const char *field, const char *fmt, ...) __printf(3, 4);
/* "field: reason" (or the reason alone) into buf. */
void conf_err_text(const struct conf_err *e, char *buf, size_t len);

/* Parse the JSON object o into obj (keys absent keep their value). `field`
 * names o in errors ("disks[0]"); "" at the top level. Returns 0, or -EINVAL
 * with e filled (obj may then hold some of the new values: parse into a copy
 * when that matters; strings the schema strdup'ed are owned by obj). */
int conf_from_json(const struct conf_schema *s, void *obj, json_t *o, const char *field,
		   const struct conf_dialect *d, struct conf_err *e) __must_check;

/* Parse an option string "[POSITIONAL,]key=value,word,..." into obj.
 * Errors read "NAME: reason" in e->reason ("disk: iops='x' is not a
 * number"). Returns 0, -EINVAL or -ENOMEM. */
int conf_from_string(const struct conf_schema *s, void *obj, const char *spec,
		     struct conf_err *e) __must_check;

/* The option string as a JSON object in the schema's JSON shape, values
 * typed by the table but not checked (the CLI sends it to cellad, which
 * names what is wrong): a number that does not parse stays a string, an
 * unknown word becomes "word": true. NULL on allocation failure. */
json_t *conf_string_to_json(const struct conf_schema *s, const char *spec);

/* obj as a JSON object: every key (char * strings only when set). */
json_t *conf_to_json(const struct conf_schema *s, const void *obj);

/* Free the strdup'ed strings of obj (and of its nested objects). */
void conf_free(const struct conf_schema *s, void *obj);

/* "ro, rw, id=ID, format=raw|qcow2, ... or cbt=on|off": the words and keys
 * an option string takes, for usage texts and errors. */
void conf_usage(const struct conf_schema *s, char *buf, size_t len);

/* A JSON integer in [min, max] (the uint check of the tables, for callers'
 * own fields). 0 or -EINVAL with e filled. */
int conf_json_uint(json_t *v, const char *field, uint64_t min, uint64_t max, uint64_t *out,
		   struct conf_err *e) __must_check;
/* A JSON string of at most max bytes without NUL. 0 or -EINVAL. */
int conf_json_string(json_t *v, const char *field, size_t max, const char **out,
		     struct conf_err *e) __must_check;
/* 1-max of A-Z a-z 0-9 . _ -, starting with a letter or digit. */
bool conf_name_valid(const char *s, size_t max);
