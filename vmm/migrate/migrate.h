/* migrate.h: live migration of a running VM to another cella-vm worker over
 * TLS (docs/migration.md).
 *
 * Source: the control command "migrate" starts migrate_start(); a thread
 * connects, pre-copies RAM in rounds while the guest runs (KVM dirty log +
 * the VMM's own marks), throttles the vCPUs when the guest dirties memory
 * faster than the link drains it, then pauses the VM, sends the last dirty
 * pages and the device/CPU state, and waits for the destination's ack. The
 * outcome reaches the I/O loop thread through done(); on success the worker
 * then exits with WORKER_EXIT_MIGRATED, on failure the VM runs on untouched.
 *
 * Destination: cella-vm --incoming: migrate_incoming_open() before any
 * sandbox, migrate_incoming_receive() into a VM built with vm_setup_restore,
 * migrate_incoming_ack() right before vm_run().
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"
#include "migrate/mig_tls.h"

struct vm;
struct migration;

/* Called on the VM's I/O loop thread when the migration is over. reply is
 * the control reply ({"ok":true,"total_ms","downtime_ms","rounds","bytes"}
 * or {"ok":false,"error"}); the callee owns it. */
typedef void (*migrate_done_fn)(void *opaque, json_t *reply, bool ok);

/* Start migrating per the control request req ({"host","port" | "fd"
 * (sock_fd >= 0: the socket passed with the request, taken over), "tls":
 * {"cert","key","ca","name"}, "downtime_ms", "max_bandwidth",
 * "max_rounds", "include_storage"}). 0 or -errno with err filled (nothing
 * started). */
int migrate_start(struct migration **out, struct vm *vm, json_t *req, int sock_fd,
		  migrate_done_fn done, void *opaque, char *err, size_t errlen) __must_check;
/* True until done() has been called. */
bool migrate_running(const struct migration *m);
/* Progress for the control "status" reply (new reference). */
json_t *migrate_progress(struct migration *m);
/* Cancel if running (the VM resumes on the source), join, free. NULL ok. */
void migrate_destroy(struct migration *m);

struct mig_incoming;

/* Parse "tcp:ADDR:PORT" (listen there) or "fd:N" (an inherited listening or
 * connected socket) and read the TLS files (cert, key, CA: the sandbox hides
 * them later). peer_name: the source's expected certificate name, or NULL.
 * 0 or -errno (err). */
int migrate_incoming_open(struct mig_incoming **out, const char *spec, const char *cert_file,
			  const char *key_file, const char *ca_file, const char *peer_name,
			  char *err, size_t errlen) __must_check;
/* Wait for the source (giving up when signal_fd becomes readable), check
 * its certificate, receive RAM, disks and state into vm (created with
 * vm_create + vm_setup_restore from the same configuration, vCPUs not yet
 * run). 0 or -errno (err; the source has been told). */
int migrate_incoming_receive(struct mig_incoming *in, struct vm *vm, int signal_fd, char *err,
			     size_t errlen) __must_check;
/* Tell the source the VM is about to run here (records the resume time
 * and logs the downtime); the caller then runs the VM. 0 or -errno: the
 * source may resume its copy, so this one must not run. */
int migrate_incoming_ack(struct mig_incoming *in) __must_check;
void migrate_incoming_close(struct mig_incoming *in);
