/* role.h: what a caller may do (docs/security.md). The API layer finds the
 * caller's role (identity); the core checks it where an operation's effect
 * depends on it: host paths outside storage locations, block devices. */
#pragma once

/* Each role may do what the ones below it may. */
enum role { ROLE_NONE, ROLE_VIEWER, ROLE_OPERATOR, ROLE_ADMIN };

/* "viewer", "operator", "admin" ("none"). */
const char *role_name(enum role r);
