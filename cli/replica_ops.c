/* replica_ops.c: `cella replica pause|resume` (a VM replicated from this
 * host), `cella replica points` (a replica kept here: each point's cut
 * time, size and consistency), and the durations of `replica enable`
 * (--interval, --keep-for). docs/replica.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"

int replica_parse_duration(const char *opt, const char *s, bool bare_ms, json_int_t min_ms,
			   json_int_t max_ms, json_int_t *ms)
{
	static const struct {
		const char *unit;
		double ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		      { "d", 86400000 } };
	char *end;
	double v, k = 0;

	v = strtod(s, &end);
	if (end == s || !isfinite(v) || v <= 0 || s[0] == '+' || s[0] == ' ')
		goto bad;
	if (!*end && bare_ms)
		k = 1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && *end; i++)
		if (!strcmp(end, units[i].unit))
			k = units[i].ms;
	if (!k)
		goto bad;
	v *= k;
	if (v < (double)min_ms || v > (double)max_ms) {
		fprintf(stderr, "cella: %s: '%s' is out of range: from %lld s to %lld h\n", opt, s,
			(long long)min_ms / 1000, (long long)max_ms / 3600000);
		return EXIT_USAGE;
	}
	*ms = (json_int_t)(v + 0.5); /* v > 0 */
	return 0;
bad:
	fprintf(stderr, "cella: %s: a duration such as 5s, 30s, 5m, 15m, 24h or 2d, not '%s'\n",
		opt, s);
	return EXIT_USAGE;
}

static int pause_call(struct client *c, int argc, char **argv, bool pause)
{
	json_t *out = NULL;
	int ret = vm_call(c, argc, argv, "POST", pause ? "/replica/pause" : "/replica/resume",
			  &out);

	if (ret)
		return ret;
	return print_reply(c, out, "%s: replication %s (last point %s)\n", argv[1],
			   pause ? "paused: nothing is sent until `cella replica resume`"
				 : "resumed from the last point",
			   json_string_value(json_object_get(out, "last_point")) ?: "-");
}

int cmd_replica_pause(struct client *c, int argc, char **argv)
{
	return pause_call(c, argc, argv, true);
}

int cmd_replica_resume(struct client *c, int argc, char **argv)
{
	return pause_call(c, argc, argv, false);
}

/* The entry of point name among disk d's points (NULL: none). */
static json_t *disk_point(json_t *d, const char *name)
{
	json_t *p;
	size_t i;

	json_array_foreach(json_object_get(d, "points"), i, p)
		if (!strcmp(json_string_value(json_object_get(p, "name")) ?: "", name))
			return p;
	return NULL;
}

int cmd_replica_points(struct client *c, int argc, char **argv)
{
	json_t *out = NULL, *pt, *d;
	char path[512];
	size_t i, j;
	int ret;

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	if (argc > 2)
		return usage_error("unexpected argument '%s'", argv[2]);
	api_path(path, sizeof(path), "/v1/replicas/", argv[1], "");
	ret = client_call(c, "GET", path, NULL, &out);
	if (ret)
		return ret;
	if (c->json) {
		print_json(out);
		json_decref(out);
		return EXIT_OK;
	}
	/* The points every disk has: the ones a failover can start from. */
	printf("%-10s %-24s %12s  %s\n", "POINT", "CUT (UTC)", "SIZE", "CONSISTENCY");
	json_array_foreach(json_object_get(out, "points"), i, pt) {
		const char *name = json_string_value(pt) ?: "?";
		json_int_t bytes = 0, cut = 0;
		const char *cons = "crash";
		char when[32] = "-";

		json_array_foreach(json_object_get(out, "disks"), j, d) {
			json_t *p = disk_point(d, name);

			bytes += json_integer_value(json_object_get(p, "file_bytes"));
			if (p && !cut) {
				cut = json_integer_value(json_object_get(p, "cut_at"));
				cons = json_string_value(json_object_get(p, "consistency")) ?: cons;
			}
		}
		if (cut) {
			time_t t = (time_t)(cut / 1000);
			struct tm tm;

			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
			snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03lld",
				 (long long)(cut % 1000));
		}
		printf("%-10s %-24s %12lld  %s\n", name, when, (long long)bytes,
		       !strcmp(cons, "flushed") ? "flushed (disks flushed before the cut)"
						: "crash-consistent");
	}
	json_decref(out);
	return EXIT_OK;
}
