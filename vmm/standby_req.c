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

/* The request line as argv (argv0 first, the words, then --kvm kvm_spec
 * unless a word names the device). 0, or -1 with err set. */
int standby_parse_request(const char *line, size_t len, const char *argv0, const char *kvm_spec,
			  struct standby *sb, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loadb(line, len, 0, &jerr);
	size_t n, i;
	bool own_kvm = false;
	int ret = -1;

	if (!root) {
		snprintf(err, errlen, "the request is not JSON: column %d: %s", jerr.column,
			 jerr.text);
		return -1;
	}
	if (!json_is_array(root) || !(n = json_array_size(root)) || n > STANDBY_WORDS_MAX) {
		snprintf(err, errlen, "the request must be a JSON array of 1 to %d strings, the "
			 "arguments of cella-vm --restore FILE ...", STANDBY_WORDS_MAX);
		goto out;
	}
	sb->argv = calloc(n + 4, sizeof(*sb->argv));
	if (!sb->argv || !(sb->argv[0] = strdup(argv0))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	sb->argc = 1;
	for (i = 0; i < n; i++) {
		const char *w = json_string_value(json_array_get(root, i));

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
	free(sb->cpuid);
	sb->cpuid = NULL;
	sb->argc = 0;
}
