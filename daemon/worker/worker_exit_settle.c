/* worker_exit_settle.c: a worker that is gone: how it ended (its wait
 * status, its exit record, the last line it logged), the VM's state settled
 * from that, and the restart policy. */
#include "sup_priv.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "worker_exit.h"

/* The last line the worker logged (its own account of a failure). */
static void last_log_line(struct sup *s, struct vmrt *vm, char *out, size_t len)
{
	char path[600], buf[1024];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/logs/%s.log", s->conf.state_dir, vm->def.name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	out[0] = 0;
	if (fd < 0)
		return;
	n = pread(fd, buf, sizeof(buf) - 1, MAX((off_t)0, lseek(fd, 0, SEEK_END) - 1023));
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
	{
		const char *last = strrchr(buf, '\n') ? strrchr(buf, '\n') + 1 : buf;
		size_t l = MIN(strlen(last), len - 1);

		memcpy(out, last, l);
		out[l] = 0;
	}
}

/* Read the worker's exit record. Returns the status or -1. */
static int read_exit_record(struct sup *s, struct vmrt *vm, char *reason, size_t len)
{
	char path[512];
	json_error_t jerr;
	json_t *rec;
	int status = -1;

	sup_paths(s, vm, ".exit", path, sizeof(path));
	rec = json_load_file(path, 0, &jerr);
	if (rec && json_is_integer(json_object_get(rec, "status"))) {
		status = (int)json_integer_value(json_object_get(rec, "status"));
		snprintf(reason, len, "%s", json_string_value(json_object_get(rec, "reason")) ?: "");
	}
	json_decref(rec);
	return status;
}

static bool restart_allowed(struct sup *s, struct vmrt *vm)
{
	int64_t now = sup_now_wall();

	if (s->shutting_down)
		return false;
	if (now - vm->burst_start > SUP_RESTART_WINDOW) {
		vm->burst_start = now;
		vm->burst = 0;
	}
	if (vm->burst >= SUP_RESTART_BURST) {
		log_warn("vm %s: %u restarts within %d s: giving up", vm->def.name, vm->burst,
			 SUP_RESTART_WINDOW);
		return false;
	}
	vm->burst++;
	return true;
}

/* The worker is gone (lock held): find out how it ended and settle the
 * state: reset -> start again; asked-for exits and guest power-off ->
 * stopped; the rest -> crashed, restarted if the policy says so. */
void worker_exited(struct sup *s, struct vmrt *vm)
{
	char reason[256] = "", detail[320];
	int status = -1, wst;
	bool was_starting = vm->state == VS_STARTING, crashed;

	if (vm->is_child && waitpid(vm->pid, &wst, WNOHANG) == vm->pid) {
		if (WIFEXITED(wst)) {
			status = WEXITSTATUS(wst);
		} else if (WIFSIGNALED(wst)) {
			status = 128 + WTERMSIG(wst);
			snprintf(reason, sizeof(reason), "worker killed by signal %s",
				 sigabbrev_np(WTERMSIG(wst)) ?: "?");
		}
	}
	if (status < 128) {
		char rec[256];
		int st = read_exit_record(s, vm, rec, sizeof(rec));

		if (st >= 0) {
			status = st;
			snprintf(reason, sizeof(reason), "%s", rec);
		}
	}
	if (status < 0) {
		status = 255;
		snprintf(reason, sizeof(reason), "worker exited without an exit record "
			 "(killed while cellad was not its parent?)");
	} else if (!reason[0]) {
		char line[200];

		last_log_line(s, vm, line, sizeof(line));
		snprintf(reason, sizeof(reason), "worker exited with status %d%s%s", status,
			 line[0] ? ": " : "", line);
	}
	/* What the guest printed last is still in the socket: keep it. */
	if (vm->console_fd >= 0)
		console_drain(s, vm);
	sup_unwatch(s, vm);
	vm->pid = 0;
	vm->pid_start = 0;
	sandbox_uid_put(s, vm);
	/* Stopped, crashed, killed or moved away: its switch ports go, and
	 * its passt processes. */
	sup_ports_remove(s, vm);
	sup_usernet_stop(s, vm);
	vm->exit_status = status;
	snprintf(vm->exit_reason, sizeof(vm->exit_reason), "%s", reason);
	snprintf(detail, sizeof(detail), "status %d: %s", status, reason);

	if (vm->state == VS_PAUSED && vm->pause_reason[0] && strcmp(vm->pause_reason, "api") &&
	    (status == WORKER_EXIT_POWEROFF || worker_exit_is_debug(status))) {
		/* The guest ended the VM itself, so the worker had resumed it (a
		 * storage pause) between two status polls: say so. */
		lifecycle_fire(s, vm, EV_RESUME, "by the worker (seen when the guest ended)");
	}
	if (vm->state == VS_INCOMING) {
		/* The VM never ran here: the move failed or was aborted. */
		vm->pause_reason[0] = 0;
		if (s->conf.hooks && s->conf.hooks->incoming_worker_ended)
			s->conf.hooks->incoming_worker_ended(s, vm, detail);
		else
			lifecycle_fire(s, vm, EV_INCOMING_FAILED, detail);
		return;
	}
	if (status == WORKER_EXIT_MIGRATED) {
		/* It runs on another host now (move.c removes it). */
		vm->restore = false;
		vm->pause_reason[0] = 0;
		lifecycle_fire(s, vm, EV_EXIT_MIGRATED, detail);
		return;
	}
	if (was_starting) {
		bool asked = vm->stop_requested; /* turned off while starting */

		if (vm->restore) {
			/* The saved state stays: start can try again, or delete-state. */
			vm->restore = false;
			lifecycle_fire(s, vm, asked ? EV_RESTORE_STOPPED : EV_RESTORE_CRASHED, detail);
			return;
		}
		lifecycle_fire(s, vm, asked ? EV_EXIT_STOPPED : EV_EXIT_CRASHED, detail);
		return;
	}
	vm->restore = false;
	vm->pause_reason[0] = 0;
	json_decref(vm->disk_status);
	vm->disk_status = NULL;
	if (status == WORKER_EXIT_SAVED) {
		/* The state file is complete (save replied first). */
		lifecycle_fire(s, vm, EV_EXIT_SAVED, detail);
		return;
	}
	if (!vm->stop_requested && (vm->reset_requested || status == WORKER_EXIT_RESET)) {
		vm->reset_requested = false;
		vm->start_ns = sup_mono_ns();
		vm->first_out_ns = 0;
		lifecycle_fire(s, vm, EV_RESET, detail);
		sup_launch_async(s, vm);
		return;
	}
	/* A worker cellad asked to stop counts as stopped even if it had to be
	 * killed; a guest crash during a graceful stop is still a crash. */
	crashed = !worker_exit_is_clean(status) &&
		  !(vm->stop_requested && status != WORKER_EXIT_CRASH);
	lifecycle_fire(s, vm, crashed ? EV_EXIT_CRASHED : EV_EXIT_STOPPED, detail);
	/* Fenced by its own HA deadline: this host's lease was not renewed in
	 * time, another host may take the VM over; never restarted here. */
	if (vm->stop_requested || vm->deleted || status == WORKER_EXIT_FENCED)
		return;
	if ((crashed && vm->def.restart != RESTART_NEVER) || vm->def.restart == RESTART_ALWAYS) {
		if (restart_allowed(s, vm)) {
			vm->restarts++;
			vm->start_ns = sup_mono_ns();
			vm->first_out_ns = 0;
			lifecycle_fire(s, vm, EV_RESTART,
				      crashed ? "restart policy after a crash" : "restart policy always");
			sup_launch_async(s, vm);
		}
	}
}
