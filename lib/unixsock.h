/* unixsock.h: stream sockets on Unix paths, for cellad (worker control,
 * API) and the tools. Both return a CLOEXEC descriptor or -errno. */
#pragma once

/* Connect to the socket at path. */
int unix_connect(const char *path);
/* The same, waiting at most timeout_ms for room in the listener's backlog
 * (a listener that stopped accepting: -EAGAIN then, not a caller blocked
 * for good). */
int unix_connect_timeout(const char *path, unsigned timeout_ms);
/* Bind and listen at path (an old socket file there is replaced), then
 * chmod it to mode. */
int unix_listen(const char *path, int backlog, unsigned mode);
