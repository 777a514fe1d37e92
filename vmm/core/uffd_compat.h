/* uffd_compat.h: <linux/userfaultfd.h> with what Linux 6.8 added
 * (UFFDIO_MOVE), which Debian 12's headers lack. */
#pragma once
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

/* Linux 6.8's additions, absent from older headers. */
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef UFFDIO_MOVE
#define _UFFDIO_MOVE 0x05
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
