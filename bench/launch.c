/* launch.c: run a command RUNS times and measure, per run, the wall time from
 * spawn to its first byte on stdout (the guest's first serial byte), to its
 * exit, its CPU time and peak RSS. Prints one line per run:
 *   first_byte_ms exit_ms cpu_ms maxrss_kib status
 * Usage: bench-launch RUNS -- CMD [ARGS...] */
#include <errno.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	int runs, cmd = 3;

	if (argc < 4 || strcmp(argv[2], "--")) {
		fprintf(stderr, "usage: bench-launch RUNS -- CMD [ARGS...]\n");
		return 2;
	}
	runs = atoi(argv[1]);
	for (int r = 0; r < runs; r++) {
		posix_spawn_file_actions_t fa;
		int pipefd[2], status = 0;
		pid_t pid;
		double t0, first = -1, end;
		struct rusage ru;
		char buf[4096];

		if (pipe(pipefd) < 0)
			return 1;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
		posix_spawn_file_actions_addclose(&fa, pipefd[0]);
		posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", 0, 0);
		t0 = now_ms();
		if (posix_spawnp(&pid, argv[cmd], &fa, NULL, &argv[cmd], environ)) {
			perror("posix_spawn");
			return 1;
		}
		close(pipefd[1]);
		for (;;) {
			ssize_t n = read(pipefd[0], buf, sizeof(buf));

			if (n > 0 && first < 0)
				first = now_ms() - t0;
			if (n == 0 || (n < 0 && errno != EINTR))
				break;
		}
		if (wait4(pid, &status, 0, &ru) < 0)
			return 1;
		end = now_ms() - t0;
		close(pipefd[0]);
		posix_spawn_file_actions_destroy(&fa);
		printf("%.3f %.3f %.3f %ld %d\n", first, end,
		       (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
			       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3,
		       ru.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		fflush(stdout);
	}
	return 0;
}
