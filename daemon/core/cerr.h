/* cerr.h: the typed error every core, worker and feature operation ends
 * with: what kind of failure it is, the field at fault (or ""), the reason,
 * and for state conflicts the VM's state. No transport knows about it but
 * its own: the API layer maps kinds to HTTP statuses (api/errors.c), the
 * pool layer will map them to its own. */
#pragma once
#include "compiler.h"

enum cerr_kind {
	CERR_NONE = 0,
	CERR_INVALID,     /* a field of the request is wrong (field names it) */
	CERR_NOT_FOUND,   /* no such VM, checkpoint, host or disk */
	CERR_EXISTS,      /* the name or UUID is taken */
	CERR_STATE,       /* the VM's state (or an action in progress) forbids it */
	CERR_CONFLICT,    /* the request conflicts with the configuration or data */
	CERR_TOO_LARGE,   /* more data than the operation accepts */
	CERR_PEER,        /* another host failed or refused */
	CERR_UNAVAILABLE, /* the resource cannot take it now (closed console, ...) */
	CERR_NO_SPACE,    /* storage is full */
	CERR_CAPACITY,    /* the host lacks the memory (or another resource) for it */
	CERR_INTERNAL,    /* cellad or the worker failed */
	CERR_FORBIDDEN,   /* a credential of the request is wrong (a join token) */
	CERR_KIND_COUNT
};

struct cerr {
	enum cerr_kind kind;
	char field[64];     /* "" when no single field is at fault */
	char reason[384];
	char state[16];     /* the VM's state, for CERR_STATE; "" otherwise */
};

/* Fill e and return -1 (so operations can `return cerr_set(...)`). */
int cerr_set(struct cerr *e, enum cerr_kind kind, const char *field, const char *fmt, ...)
	__printf(4, 5);
/* The kind's name ("invalid", "not found", "state conflict", ...). */
const char *cerr_kind_name(enum cerr_kind kind);
