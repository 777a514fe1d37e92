/* console.c: `cella vm console` (output streamed from cellad, input posted
 * back; Ctrl-] detaches on a terminal) and `cella events`. */
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <curl/curl.h>

#include "commands.h"

enum { OPT_HISTORY = 400, OPT_NO_FOLLOW, OPT_VM, OPT_SINCE };

struct console_io {
	struct client *c;
	char path[512];
	volatile bool stop;
	bool tty;
};

static bool console_out(void *opaque, const char *data, size_t len)
{
	(void)opaque;
	return fwrite(data, 1, len, stdout) == len && fflush(stdout) == 0;
}

static void *console_in(void *opaque)
{
	struct console_io *io = opaque;
	char buf[1024];

	while (!io->stop) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

		if (n <= 0)
			break;
		if (io->tty) {
			char *esc = memchr(buf, 0x1d, (size_t)n); /* Ctrl-] detaches */

			if (esc) {
				n = esc - buf;
				io->stop = true;
			}
		}
		if (n > 0 && client_post_raw(io->c, io->path, buf, (size_t)n))
			break;
	}
	return NULL;
}

int cmd_console(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "history", required_argument, NULL, OPT_HISTORY },
		{ "no-follow", no_argument, NULL, OPT_NO_FOLLOW },
		{ NULL, 0, NULL, 0 },
	};
	struct console_io io = { .c = c };
	json_int_t history = 65536;
	bool follow = true;
	struct termios saved, raw;
	char path[600];
	pthread_t t;
	int o, ret;

	if (need_name(argc, argv, 2))
		return EXIT_USAGE;
	optind = 2;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == OPT_HISTORY) {
			if (parse_num("--history", optarg, &history))
				return EXIT_USAGE;
		} else if (o == OPT_NO_FOLLOW) {
			follow = false;
		} else {
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	vm_path(io.path, sizeof(io.path), argv[1], "/console");
	snprintf(path, sizeof(path), "%s?history=%lld&follow=%s", io.path, (long long)history,
		 follow ? "true" : "false");
	io.tty = isatty(STDIN_FILENO);
	if (io.tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
		raw = saved;
		cfmakeraw(&raw);
		raw.c_oflag |= OPOST;
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
		fprintf(stderr, "[console of %s; Ctrl-] to detach]\r\n", argv[1]);
	}
	if (follow)
		pthread_create(&t, NULL, console_in, &io);
	ret = client_stream(c, path, console_out, NULL, &io.stop);
	io.stop = true;
	if (io.tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	/* The input thread may sit in read(): leave it; the process ends. */
	return ret;
}

static bool events_out(void *opaque, const char *data, size_t len)
{
	return console_out(opaque, data, len);
}

int cmd_events(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, OPT_VM },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ NULL, 0, NULL, 0 },
	};
	char path[512] = "/v1/events", *esc;
	json_int_t since = -1;
	const char *vm = NULL;
	int o;

	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == OPT_VM)
			vm = optarg;
		else if (o != OPT_SINCE || parse_num("--since", optarg, &since))
			return o == OPT_SINCE ? EXIT_USAGE
					    : usage_error("unknown option '%s'", argv[optind - 1]);
	}
	if (since >= 0)
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "?since=%lld",
			 (long long)since);
	if (vm) {
		esc = curl_easy_escape(NULL, vm, 0);
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "%svm=%s",
			 since >= 0 ? "&" : "?", esc);
		curl_free(esc);
	}
	return client_stream(c, path, events_out, NULL, NULL);
}

