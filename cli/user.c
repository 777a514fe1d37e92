/* user.c: `cella user add, list, delete`: the web console's users
 * (docs/web.md). Passwords come from stdin (a prompt without echo when it
 * is a terminal), never from the command line (other users see argv). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "client.h"
#include "commands.h"

/* One line of stdin, without its newline; 0 or -1. */
static int read_password(char *buf, size_t len)
{
	bool tty = isatty(STDIN_FILENO);
	struct termios old, quiet;
	int ret = 0;

	if (tty) {
		fputs("Password: ", stderr);
		fflush(stderr);
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (!fgets(buf, (int)len, stdin))
		ret = -1;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	buf[strcspn(buf, "\r\n")] = 0;
	return ret;
}

int cmd_user_add(struct client *c, int argc, char **argv)
{
	static const struct option opts[] = { { "role", required_argument, NULL, 'r' },
					      { NULL, 0, NULL, 0 } };
	const char *role = NULL;
	char password[1100];
	json_t *out = NULL;
	int opt, ret;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt != 'r')
			return EXIT_USAGE;
		role = optarg;
	}
	if (optind != argc - 1)
		return usage_error("expected one user NAME%s", "");
	if (!role)
		return usage_error("--role viewer|operator|admin is required%s", "");
	if (read_password(password, sizeof(password))) {
		fprintf(stderr, "cella: no password on stdin\n");
		return EXIT_USAGE;
	}
	ret = client_send(c, "POST", "/v1/users",
			  json_pack("{s:s, s:s, s:s}", "name", argv[optind], "role", role,
				    "password", password), &out);
	explicit_bzero(password, sizeof(password));
	if (ret)
		return ret;
	return print_reply(c, out, "user %s added (%s)", argv[optind], role);
}

int cmd_user_list(struct client *c, int argc, char **argv)
{
	json_t *out = NULL, *u;
	size_t i;
	int ret;

	if (argc > 1)
		return usage_error("unexpected argument '%s'", argv[1]);
	ret = list_call(c, "/v1/users", &out);
	if (ret || c->json)
		return ret;
	printf("%-32s %s\n", "NAME", "ROLE");
	json_array_foreach(json_object_get(out, "users"), i, u)
		printf("%-32s %s\n", json_string_value(json_object_get(u, "name")) ?: "?",
		       json_string_value(json_object_get(u, "role")) ?: "?");
	json_decref(out);
	return EXIT_OK;
}

int cmd_user_delete(struct client *c, int argc, char **argv)
{
	char path[512];
	int ret;

	if (argc != 2)
		return usage_error("expected one user NAME%s", "");
	api_path(path, sizeof(path), "/v1/users/", argv[1], "");
	ret = client_call(c, "DELETE", path, NULL, NULL);
	if (ret)
		return ret;
	printf("user %s deleted; their sessions ended\n", argv[1]);
	return EXIT_OK;
}
