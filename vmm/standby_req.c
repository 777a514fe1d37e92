/* standby_req.c: the standby worker's request line (standby.h), apart from
 * the worker so that a fuzz target can take it alone (fuzz-standby). */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "standby.h"

/* Whether word is --kvm, --kvm=X or an abbreviation getopt takes for it. */
bool standby_is_kvm_option(const char *w)
{
	size_t n = strcspn(w, "=");

	return n >= 4 && n <= 5 && !strncmp(w, "--kvm", n);
}

const char *standby_kvm_value(char *const *argv, int argc)
{
	const char *v = NULL;

	for (int i = 0; i < argc; i++) {
		if (!standby_is_kvm_option(argv[i]))
			continue;
		if (strchr(argv[i], '='))
			v = strchr(argv[i], '=') + 1;
		else if (i + 1 < argc)
			v = argv[++i];
	}
	return v;
}

/* A number from a request object: 0 to STANDBY_FD_TOP. */
static bool fd_number(json_t *v, int *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > STANDBY_FD_TOP)
		return false;
	*out = (int)json_integer_value(v);
	return true;
}

/* {"args": [...], "fds": [N...], "kvm_fd": N}: the descriptors' numbers
 * into sb, the args array into *args. 0, or -1 with err set. */
static int parse_object(json_t *root, struct standby *sb, json_t **args, char *err, size_t errlen)
{
	json_t *fds = json_object_get(root, "fds"), *kvm = json_object_get(root, "kvm_fd");
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach(root, key, v) {
		if (strcmp(key, "args") && strcmp(key, "fds") && strcmp(key, "kvm_fd")) {
			snprintf(err, errlen, "the request has an unknown member '%.40s' (args, fds, "
				 "kvm_fd)", key);
			return -1;
		}
	}
	*args = json_object_get(root, "args");
	if (kvm && !fd_number(kvm, &sb->kvm_to)) {
		snprintf(err, errlen, "the request's kvm_fd must be a number from 0 to %d",
			 STANDBY_FD_TOP);
		return -1;
	}
	if (!fds)
		return 0;
	if (!json_is_array(fds) || json_array_size(fds) > STANDBY_FDS_MAX) {
		snprintf(err, errlen, "the request's fds must be an array of at most %d numbers",
			 STANDBY_FDS_MAX);
		return -1;
	}
	sb->fd_to = calloc(json_array_size(fds) + 1, sizeof(*sb->fd_to));
	if (!sb->fd_to) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	json_array_foreach(fds, i, v) {
		int to;

		if (!fd_number(v, &to)) {
			snprintf(err, errlen, "the request's fds[%zu] must be a number from 0 to %d",
				 i, STANDBY_FD_TOP);
			return -1;
		}
		for (int k = 0; k < sb->nr_fds; k++) {
			if (sb->fd_to[k] == to) {
				snprintf(err, errlen, "the request's fds name %d twice", to);
				return -1;
			}
		}
		if (to == sb->kvm_to) {
			snprintf(err, errlen, "the request's fds name %d, its kvm_fd", to);
			return -1;
		}
		sb->fd_to[sb->nr_fds++] = to;
	}
	return 0;
}

/* The request line as argv (argv0 first, the words, then --kvm kvm_spec
 * unless a word names the device). 0, or -1 with err set. */
int standby_parse_request(const char *line, size_t len, const char *argv0, const char *kvm_spec,
			  struct standby *sb, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loadb(line, len, 0, &jerr), *args = root;
	size_t n, i;
	bool own_kvm = false;
	int ret = -1;

	sb->kvm_to = -1;
	if (!root) {
		snprintf(err, errlen, "the request is not JSON: column %d: %s", jerr.column,
			 jerr.text);
		return -1;
	}
	if (json_is_object(root) && parse_object(root, sb, &args, err, errlen))
		goto out;
	if (!json_is_array(args) || !(n = json_array_size(args)) || n > STANDBY_WORDS_MAX) {
		snprintf(err, errlen, "the request must be a JSON array of 1 to %d strings, the "
			 "arguments of cella-vm --restore FILE ... (or an object with it as "
			 "\"args\")", STANDBY_WORDS_MAX);
		goto out;
	}
	sb->argv = calloc(n + 4, sizeof(*sb->argv));
	if (!sb->argv || !(sb->argv[0] = strdup(argv0))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	sb->argc = 1;
	for (i = 0; i < n; i++) {
		const char *w = json_string_value(json_array_get(args, i));

		if (!w) {
			snprintf(err, errlen, "the request's word %zu is not a string", i);
			goto out;
		}
		if (!(sb->argv[sb->argc] = strdup(w))) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		sb->argc++;
		own_kvm |= standby_is_kvm_option(w);
	}
	if (kvm_spec && !own_kvm) {
		if (!(sb->argv[sb->argc] = strdup("--kvm")) ||
		    !(sb->argv[sb->argc + 1] = strdup(kvm_spec))) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		sb->argc += 2;
	}
	if (sb->kvm_to >= 0) {
		/* The standby's device goes there: the restore must use it. */
		char want[32];
		const char *v = standby_kvm_value(sb->argv, sb->argc);

		snprintf(want, sizeof(want), "fd:%d", sb->kvm_to);
		if (!v || strcmp(v, want)) {
			snprintf(err, errlen, "the request's kvm_fd %d needs --kvm %s among its args",
				 sb->kvm_to, want);
			goto out;
		}
	}
	ret = 0;
out:
	json_decref(root);
	return ret;
}

void standby_free(struct standby *sb)
{
	for (int i = 0; sb->argv && sb->argv[i]; i++)
		free(sb->argv[i]);
	free(sb->argv);
	sb->argv = NULL;
	free(sb->fd_to);
	sb->fd_to = NULL;
	sb->nr_fds = 0;
	free(sb->cpuid);
	sb->cpuid = NULL;
	sb->argc = 0;
}
