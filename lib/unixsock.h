/* unixsock.h: stream sockets on Unix paths, for cellad (worker control,
 * API) and the tools. Both return a CLOEXEC descriptor or -errno. */
#pragma once

/* Connect to the socket at path. */
int unix_connect(const char *path);
/* Bind and listen at path (an old socket file there is replaced), then
 * chmod it to mode. */
int unix_listen(const char *path, int backlog, unsigned mode);
