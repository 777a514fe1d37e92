/* commands.c: helpers shared by the cella CLI's command files: argument
 * checks, API paths, the token file and output. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "commands.h"

int parse_num(const char *opt, const char *s, json_int_t *v)
{
	char *end;

	errno = 0;
	*v = strtoll(s, &end, 10);
	if (!*s || *end || errno)
		return usage_error("expected a number after %s", opt);
	return 0;
}

int need_name(int argc, char **argv, int first_opt)
{
	(void)first_opt;
	if (argc < 2 || argv[1][0] == '-')
		return usage_error("%s", "a VM name is required");
	return 0;
}

int api_path(char *out, size_t len, const char *base, const char *name, const char *suffix)
{
	char *esc = curl_easy_escape(NULL, name, 0);

	snprintf(out, len, "%s%s%s", base, esc ? esc : name, suffix);
	curl_free(esc);
	return 0;
}

int vm_path(char *out, size_t len, const char *name, const char *suffix)
{
	return api_path(out, len, "/v1/vms/", name, suffix);
}

int read_token_file(const char *file, char *buf, size_t len)
{
	FILE *f = fopen(file, "re");

	if (!f || !fgets(buf, (int)len, f)) {
		if (f)
			fclose(f);
		fprintf(stderr, "cella: cannot read the token from %s\n", file);
		return EXIT_USAGE;
	}
	fclose(f);
	buf[strcspn(buf, "\r\n")] = 0;
	return 0;
}

void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));

	if (s)
		puts(s);
	free(s);
}

int print_reply(struct client *c, json_t *out, const char *fmt, ...)
{
	va_list ap;

	if (c->json) {
		print_json(out);
	} else {
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	json_decref(out);
	return EXIT_OK;
}

int list_call(struct client *c, const char *path, json_t **out)
{
	int ret = client_call(c, "GET", path, NULL, out);

	if (ret || !c->json)
		return ret;
	print_json(*out);
	json_decref(*out);
	*out = NULL;
	return EXIT_OK;
}

static void print_kv(json_t *o, int indent)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v)
	{
		if (json_is_object(v)) {
			printf("%*s%s:\n", indent, "", k);
			print_kv(v, indent + 2);
		} else if (json_is_array(v)) {
			size_t i;
			json_t *it;

			printf("%*s%s:%s\n", indent, "", k, json_array_size(v) ? "" : " (none)");
			json_array_foreach(v, i, it)
			{
				char *s = json_dumps(it, JSON_COMPACT | JSON_ENCODE_ANY);

				printf("%*s- %s\n", indent + 2, "", s ? s : "?");
				free(s);
			}
		} else {
			char *s = json_is_string(v) ? strdup(json_string_value(v))
			                            : json_dumps(v, JSON_ENCODE_ANY);

			printf("%*s%-16s %s\n", indent, "", k, s ? s : "");
			free(s);
		}
	}
}

void show_json(struct client *c, json_t *j)
{
	if (c->json)
		print_json(j);
	else
		print_kv(j, 0);
}

int vm_call(struct client *c, int argc, char **argv, const char *method, const char *suffix,
            json_t **out)
{
	char path[512];

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	if (argc > 2)
		return usage_error("unexpected argument '%s'", argv[2]);
	vm_path(path, sizeof(path), argv[1], suffix);
	return client_call(c, method, path, NULL, out);
}

int vm_verb(struct client *c, int argc, char **argv, const char *method, const char *suffix,
            const char *done)
{
	json_t *out = NULL;
	int ret = vm_call(c, argc, argv, method, suffix, &out);

	if (ret)
		return ret;
	return print_reply(c, out, "%s %s (state: %s)\n", argv[1], done,
	                   json_string_value(json_object_get(out, "state")) ?: "?");
}
