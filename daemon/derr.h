/* derr.h: the error an API request ends with: HTTP status, the field at
 * fault (or ""), the reason, and for state conflicts the VM's state. */
#pragma once
#include "compiler.h"

struct derr {
	int http;           /* 400, 404, 409, ... */
	char field[64];     /* "" when no single field is at fault */
	char reason[384];
	char state[16];     /* the VM's state, for 409 refusals; "" otherwise */
};

/* Fill e and return -1 (so handlers can `return derr_set(...)`). */
int derr_set(struct derr *e, int http, const char *field, const char *fmt, ...) __printf(4, 5);
