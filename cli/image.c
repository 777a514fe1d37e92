/* image.c: `cella image list|create|resize|convert|backup|delete`: the
 * images of cellad's storage locations through its API (docs/disks.md,
 * "Images in cellad"), where `cella disk` works on local files. An image
 * is NAME, or LOCATION/NAME when several locations have one by that name
 * (create always names its location). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "commands.h"

struct img_arg {
	char loc[128], name[128];
};

static int split(const char *s, struct img_arg *a, bool need_loc)
{
	const char *slash = strchr(s, '/');

	if (slash && (strchr(slash + 1, '/') || slash == s || (size_t)(slash - s) >= sizeof(a->loc)))
		return usage_error("expected NAME or LOCATION/NAME, got '%s'", s);
	if (!slash && need_loc)
		return usage_error("expected LOCATION/NAME, got '%s'", s);
	snprintf(a->loc, sizeof(a->loc), "%.*s", slash ? (int)(slash - s) : 0, s);
	snprintf(a->name, sizeof(a->name), "%s", slash ? slash + 1 : s);
	return 0;
}

/* /v1/images/NAME<suffix>[?location=LOC] */
static void img_path(char *out, size_t len, const struct img_arg *a, const char *suffix)
{
	api_path(out, len, "/v1/images/", a->name, suffix);
	if (a->loc[0])
		api_path(out + strlen(out), len - strlen(out), "?location=", a->loc, "");
}

static json_t *size_json(const char *s)
{
	return strspn(s, "0123456789") == strlen(s) && *s ? json_integer(strtoll(s, NULL, 10))
							   : json_string(s);
}

int cmd_image_list(struct client *c, int argc, char **argv)
{
	char path[256] = "/v1/images";
	json_t *out = NULL, *l, *i;
	size_t k, m;
	int ret;

	if (argc > 2)
		return usage_error("unexpected argument '%s'", argv[2]);
	if (argc == 2)
		api_path(path, sizeof(path), "/v1/images?location=", argv[1], "");
	ret = list_call(c, path, &out);
	if (ret || c->json)
		return ret;
	printf("%-12s %-28s %-6s %12s %12s  %-24s %s\n", "LOCATION", "NAME", "FORMAT", "SIZE",
	       "ALLOCATED", "BACKING", "USED BY");
	json_array_foreach(json_object_get(out, "locations"), k, l)
		json_array_foreach(json_object_get(l, "images"), m, i) {
			json_t *b = json_object_get(i, "backing"), *u, *job = json_object_get(i, "job");
			char users[256] = "";
			size_t n;

			json_array_foreach(json_object_get(i, "used_by"), n, u)
				snprintf(users + strlen(users), sizeof(users) - strlen(users), "%s%s:%s",
					 n ? "," : "", json_string_value(json_object_get(u, "vm")),
					 json_string_value(json_object_get(u, "layer")));
			printf("%-12s %-28s %-6s %12lld %12lld  %-24s %s", json_string_value(
				       json_object_get(i, "location")),
			       json_string_value(json_object_get(i, "name")),
			       json_string_value(json_object_get(i, "format")) ?:
			       json_string_value(json_object_get(i, "kind")),
			       json_integer_value(json_object_get(i, "virtual_size")),
			       json_integer_value(json_object_get(i, "allocated")),
			       json_string_value(json_object_get(b, "name")) ?:
			       json_string_value(json_object_get(b, "path")) ?: "-",
			       users[0] ? users : "-");
			if (job && json_is_true(json_object_get(job, "running")))
				printf("  [%s %s %lld%%]", json_string_value(json_object_get(job, "kind")),
				       json_string_value(json_object_get(job, "phase")),
				       json_integer_value(json_object_get(job, "percent")));
			printf("\n");
		}
	json_decref(out);
	return EXIT_OK;
}

int cmd_image_create(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = { { "format", required_argument, NULL, 'f' },
					      { "backing", required_argument, NULL, 'b' },
					      { NULL, 0, NULL, 0 } };
	const char *fmt = NULL, *backing = NULL;
	struct img_arg a;
	json_t *body, *out = NULL;
	int opt, ret;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "f:b:", opts, NULL)) != -1) {
		if (opt == 'f')
			fmt = optarg;
		else if (opt == 'b')
			backing = optarg;
		else
			return EXIT_USAGE;
	}
	if (argc - optind < 1 || argc - optind > 2)
		return usage_error("expected LOCATION/NAME [SIZE]%s", "");
	if ((ret = split(argv[optind], &a, true)))
		return ret;
	body = json_pack("{s:s, s:s}", "location", a.loc, "name", a.name);
	if (fmt)
		json_object_set_new(body, "format", json_string(fmt));
	if (backing)
		json_object_set_new(body, "backing", json_string(backing));
	if (argc - optind == 2)
		json_object_set_new(body, "size", size_json(argv[optind + 1]));
	ret = client_send(c, "POST", "/v1/images", body, &out);
	if (ret)
		return ret;
	return print_reply(c, out, "image %s/%s created (%s, %lld bytes)", a.loc, a.name,
			   json_string_value(json_object_get(out, "format")),
			   json_integer_value(json_object_get(out, "virtual_size")));
}

int cmd_image_resize(struct client *c, int argc, char **argv)
{
	char path[512];
	struct img_arg a;
	json_t *out = NULL;
	int ret;

	if (argc != 3)
		return usage_error("expected [LOCATION/]NAME SIZE%s", "");
	if ((ret = split(argv[1], &a, false)))
		return ret;
	img_path(path, sizeof(path), &a, "/resize");
	ret = client_send(c, "POST", path, json_pack("{s:o}", "size", size_json(argv[2])), &out);
	if (ret)
		return ret;
	return print_reply(c, out, "image %s/%s is %lld bytes now",
			   json_string_value(json_object_get(out, "location")), a.name,
			   json_integer_value(json_object_get(out, "virtual_size")));
}

/* Follow the target's job until it ends: 0 when done. */
static int wait_job(struct client *c, const struct img_arg *t)
{
	char path[512];

	img_path(path, sizeof(path), t, "");
	for (;;) {
		json_t *out = NULL, *job;
		int ret = client_call(c, "GET", path, NULL, &out);
		struct timespec ts = { 0, 200 * 1000 * 1000 };

		if (ret)
			return ret;
		job = json_object_get(out, "job");
		if (!job || json_is_false(json_object_get(job, "running"))) {
			const char *err = json_string_value(json_object_get(job, "error"));

			if (err)
				fprintf(stderr, "cella: %s\n", err);
			json_decref(out);
			return err ? EXIT_FAILURE : EXIT_OK;
		}
		fprintf(stderr, "\r%s %s %lld%%   ", json_string_value(json_object_get(job, "kind")),
			json_string_value(json_object_get(job, "phase")),
			json_integer_value(json_object_get(job, "percent")));
		json_decref(out);
		nanosleep(&ts, NULL); /* the CLI's own pace of polling, not a test's wait */
	}
}

static int copy_cmd(struct client *c, int argc, char **argv, const char *verb)
{
	static const struct option opts[] = { { "format", required_argument, NULL, 'O' },
					      { "point", required_argument, NULL, 'p' },
					      { "since", required_argument, NULL, 's' },
					      { "wait", no_argument, NULL, 'w' },
					      { NULL, 0, NULL, 0 } };
	const char *fmt = NULL, *point = NULL, *since = NULL;
	struct img_arg a, t;
	char path[512], sfx[32];
	bool wait = false;
	json_t *body, *out = NULL;
	int opt, ret;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "O:", opts, NULL)) != -1) {
		switch (opt) {
		case 'O': fmt = optarg; break;
		case 'p': point = optarg; break;
		case 's': since = optarg; break;
		case 'w': wait = true; break;
		default: return EXIT_USAGE;
		}
	}
	if (argc - optind != 2)
		return usage_error("expected [LOCATION/]NAME [LOCATION/]TARGET%s", "");
	if ((ret = split(argv[optind], &a, false)) || (ret = split(argv[optind + 1], &t, false)))
		return ret;
	body = json_pack("{s:s}", "target", t.name);
	if (t.loc[0])
		json_object_set_new(body, "location", json_string(t.loc));
	if (fmt)
		json_object_set_new(body, "format", json_string(fmt));
	if (point)
		json_object_set_new(body, "point", json_string(point));
	if (since)
		json_object_set_new(body, "since", json_string(since));
	snprintf(sfx, sizeof(sfx), "/%s", verb);
	img_path(path, sizeof(path), &a, sfx);
	ret = client_send(c, "POST", path, body, &out);
	if (ret)
		return ret;
	if (!t.loc[0])
		snprintf(t.loc, sizeof(t.loc), "%s",
			 json_string_value(json_object_get(json_object_get(out, "job"),
							   "target_location")) ?: "");
	if (!wait)
		return print_reply(c, out, "%s of %s to %s/%s started (job %s)", verb, a.name, t.loc,
				   t.name, json_string_value(json_object_get(json_object_get(out, "job"),
									     "id")));
	json_decref(out);
	ret = wait_job(c, &t);
	if (!ret)
		printf("\r%s of %s to %s/%s done\n", verb, a.name, t.loc, t.name);
	return ret;
}

int cmd_image_convert(struct client *c, int argc, char **argv)
{
	return copy_cmd(c, argc, argv, "convert");
}

int cmd_image_backup(struct client *c, int argc, char **argv)
{
	return copy_cmd(c, argc, argv, "backup");
}

int cmd_image_delete(struct client *c, int argc, char **argv)
{
	char path[512];
	struct img_arg a;
	int ret;

	if (argc != 2)
		return usage_error("expected [LOCATION/]NAME%s", "");
	if ((ret = split(argv[1], &a, false)))
		return ret;
	img_path(path, sizeof(path), &a, "");
	ret = client_call(c, "DELETE", path, NULL, NULL);
	if (ret)
		return ret;
	printf("image %s deleted\n", argv[1]);
	return EXIT_OK;
}
